"""One flush of a hub's ordered events to its sockets: sockets that may see the same events
share one write, worked out once.

Most events change nothing about who sees what (a message, a reaction, an edit): whether a
socket sees one depends only on its conversation or its audience (the event's scope). For
a flush made only of such events, each socket is asked one question per distinct scope
(usually one: a busy channel), and the answer picks a run of frames joined once for every
socket that gave it. A flush holding an event that changes membership or access (a join,
a leave, a revoked token), or a socket whose cursor is inside the flush (it joined ahead
of the hub), takes the general path, event by event (delivery.frames_for).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from messaging.realtime.delivery import Socket, changes_viewers, frames_for, shared_frames
from messaging.realtime.wire import Frame, FrameRun

Scope = tuple[int | None, frozenset[int] | None]  # (conversation, audience)


def plain_scope(message: dict[str, Any]) -> Scope | None:
    """What decides who sees this event, or None when seeing it also changes the viewer."""
    if changes_viewers(message):
        return None
    audience = message.get("audience")
    return message.get("channel_id"), frozenset(audience) if audience else None


class Flush:
    """The frames each socket is sent for `messages` (ordered, contiguous event ids)."""

    __slots__ = ("_runs", "first_id", "last_id", "messages", "scope_of", "scopes")

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.first_id: int = messages[0]["event_id"]
        self.last_id: int = messages[-1]["event_id"]
        found = [plain_scope(message) for message in messages]
        self.scopes: list[Scope] | None = None
        self.scope_of: list[int] = []
        if all(scope is not None for scope in found):
            distinct = list(dict.fromkeys(found))
            self.scopes = distinct  # type: ignore[assignment]
            self.scope_of = [distinct.index(scope) for scope in found]
        self._runs: dict[tuple[bool, ...], tuple[list[Frame], int]] = {}

    def write_to(self, sockets: Iterable[Socket]) -> tuple[int, list[Socket]]:
        """Write every socket its frames: (events delivered, sockets whose grant ended).

        A flush whose events all have one scope that is a conversation (the common case:
        messages in one busy channel) is one question per socket, answered without a call,
        and one shared write: this loop runs for every socket of a team on every flush, so
        it does no more per socket than that."""
        scopes = self.scopes
        if scopes is None or len(scopes) != 1 or not scopes[0][0] or scopes[0][1] is not None:
            return self._write_each(sockets)
        channel_id = scopes[0][0]
        frames, count = self._run((True,))  # every event has a frame: never empty
        data = frames[0].wire
        first_id, last_id = self.first_id, self.last_id
        delivered = 0
        ahead = []
        for sock in sockets:
            if sock.cursor >= first_id:  # joined ahead of the hub: event by event
                ahead.append(sock)
                continue
            sock.cursor = last_id
            if channel_id in sock.viewer.channel_ids:
                sock.wire.write_joined(data, frames)
                delivered += count
        if not ahead:
            return delivered, []
        more, ended = self._write_each(ahead)
        return delivered + more, ended

    def _write_each(self, sockets: Iterable[Socket]) -> tuple[int, list[Socket]]:
        delivered = 0
        ended = []
        for sock in sockets:
            frames, count, grant_ended = self.frames_for(sock)
            delivered += count
            if frames:
                sock.write(frames)
            if grant_ended:
                ended.append(sock)
        return delivered, ended

    def frames_for(self, sock: Socket) -> tuple[list[Frame], int, bool]:
        """As delivery.frames_for: (frames, events delivered, whether the grant ended)."""
        if self.scopes is None or sock.cursor >= self.first_id:
            return frames_for(sock, self.messages)
        viewer = sock.viewer
        scopes = self.scopes
        if len(scopes) == 1:  # the common case (one busy conversation): no generator per socket
            sees: tuple[bool, ...] = (viewer.sees(*scopes[0]),)
        else:
            sees = tuple(viewer.sees(*scope) for scope in scopes)
        run = self._runs.get(sees)
        if run is None:
            run = self._runs[sees] = self._run(sees)
        sock.cursor = self.last_id
        return run[0], run[1], False

    def _run(self, sees: tuple[bool, ...]) -> tuple[list[Frame], int]:
        frames: list[Frame] = []
        count = 0
        for message, scope in zip(self.messages, self.scope_of, strict=True):
            if sees[scope]:
                frames += shared_frames(message)
                count += 1
        return ([FrameRun(frames)] if len(frames) > 1 else frames), count

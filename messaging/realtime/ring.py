"""A team hub's recent events, which a reconnecting socket is replayed from without the
log: contiguous, ending at the hub's head. With them, the ones that may change someone's
conversations (each reconnect checks those), and their replays as worked out for the
sockets that asked (a reconnect storm's sockets share one)."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from typing import Any

from messaging.realtime.delivery import MEMBERSHIP_KINDS
from messaging.realtime.fanout import Flush

RING_SIZE = 512  # recent events per team kept for replay (a few MB with their frames); older: the log
# Replays kept worked out, by (cursor, head): the sockets of a reconnect storm dropped
# together and come back with the same cursor.
REPLAYS_KEPT = 8


class Ring:
    def __init__(self) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=RING_SIZE)
        # Recent events that may change someone's conversations (every one in `events` at
        # least), so that a reconnect's check does not go through them all.
        self.membership_changes: deque[dict[str, Any]] = deque(maxlen=RING_SIZE)
        self.replays: dict[tuple[int, int], Flush] = {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def first_id(self, default: int) -> int:
        """The oldest event's id, or `default` when the ring is empty."""
        return self.events[0]["event_id"] if self.events else default

    def append(self, message: dict[str, Any]) -> None:
        """The event after the last (the hub's new head)."""
        self.events.append(message)
        if message["event"].get("type") in MEMBERSHIP_KINDS:
            self.membership_changes.append(message)
        self.replays.clear()  # worked out up to the old head: no cursor asks for those again

    def clear(self) -> None:
        self.events.clear()
        self.membership_changes.clear()
        self.replays.clear()

    def prune(self, upto: int) -> None:
        """The log no longer has events up to `upto`: nor does the ring."""
        while self.events and self.events[0]["event_id"] <= upto:
            self.events.popleft()
        while self.membership_changes and self.membership_changes[0]["event_id"] <= upto:
            self.membership_changes.popleft()
        self.replays.clear()

    def after(self, event_id: int) -> list[dict[str, Any]]:
        """The events after `event_id`."""
        if not self.events:
            return []
        skip = max(0, event_id - self.events[0]["event_id"] + 1)
        return list(itertools.islice(self.events, skip, None))

    def membership_changes_after(self, event_id: int) -> list[dict[str, Any]]:
        """The events after `event_id` that may change someone's conversations."""
        found = []
        for message in reversed(self.membership_changes):
            if message["event_id"] <= event_id:
                break
            found.append(message)
        return found[::-1]

    def replay(self, cursor: int, head: int) -> Flush:
        """The events after `cursor` (up to `head`, the last), worked out once for every
        socket that resumes from it: one question per socket, and one joined write for all
        that see the same."""
        key = (cursor, head)
        flush = self.replays.get(key)
        if flush is None:
            if len(self.replays) >= REPLAYS_KEPT:
                self.replays.pop(next(iter(self.replays)))
            flush = self.replays[key] = Flush(self.after(cursor))
        return flush

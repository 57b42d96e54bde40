"""Team messages a hub hands only to its live sockets, as they come: never logged, so never
replayed to a socket that joins later, and outside the ordered stream of events."""

from __future__ import annotations

import json
from typing import Any

from messaging.realtime.delivery import Socket
from messaging.realtime.wire import Frame, spawn
from teams.sessions import SESSION_ENDED


def hand_out(live: dict[Socket, None], message: dict[str, Any]) -> None:
    """Act on one such message (unknown kinds are ignored). `live` is the hub's: a socket
    shut out here leaves it at once."""
    kind = message.get("type")
    if kind == "team.typing":
        _typing(live, message)
    elif kind == "presence.change":
        _presence_to_everyone(live, message)
    elif kind == SESSION_ENDED:
        _end_session(live, message["session"])


def _typing(live: dict[Socket, None], message: dict[str, Any]) -> None:
    """Typing goes to the members of that conversation, other than the typist. Typing in a
    thread names it, as Slack's does; typing in the channel has no thread_ts key at all."""
    channel_id, user = message["channel_id"], message["user"]
    event = {"type": "user_typing", "channel": message["channel"], "user": user}
    # .get: a process of the previous release, mid-deploy, sends none
    if thread_ts := message.get("thread_ts"):
        event["thread_ts"] = thread_ts
    frame = Frame(json.dumps(event))
    for sock in live:
        if channel_id in sock.viewer.channel_ids and user != sock.viewer.slack_id:
            sock.write([frame])


def _end_session(live: dict[Socket, None], session: str) -> None:
    """A web session signed out (teams.sessions): its sockets close, as a revoked token's do."""
    for sock in [sock for sock in live if sock.caller.session == session]:
        live.pop(sock, None)
        spawn(sock.shut_out())


def _presence_to_everyone(live: dict[Socket, None], message: dict[str, Any]) -> None:
    """A presence change sent to the whole team instead of to its subscribers. The product
    never sends one (subscriptions scale with interest, this with team size squared);
    bench/presence.py does, as the baseline it measures subscriptions against."""
    for sock in live:
        spawn(sock.presence_change(message))

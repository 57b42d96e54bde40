"""The websocket gateway (Slack's RTM protocol) as a Channels consumer under daphne.

A socket is admitted by a one-time ticket, says hello, then joins its team's hub in this
process (hub.py), which replays what the socket missed after its cursor and hands it
every later event in order: nothing lost, nothing doubled. The hub writes each event's
frame, encoded once, straight to every socket that may see it (wire.py).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.db import OperationalError
from redis.exceptions import RedisError

from chatproject.dbrouter import on_shard
from messaging.actions.posting import post_message
from messaging.api.ratelimit import check_rate_limit
from messaging.api.registry import REGISTRY
from messaging.events import team_group
from messaging.realtime import shutdown
from messaging.realtime.admission import admit_connection, jittered_retry_after
from messaging.realtime.boot import socket_url
from messaging.realtime.delivery import AccessEnded, ResyncRequired, Viewer
from messaging.realtime.hub import HubClosed, TeamHub
from messaging.realtime.hubs import hub_for
from messaging.realtime.pool import blocking
from messaging.realtime.redis_batch import cache_get_many, redis_batch
from messaging.realtime.tickets import RECONNECT_TTL_SECS, Ticket, reconnect_ticket
from messaging.realtime.wire import Frame, Wire
from ops.metrics import OPEN_SOCKETS
from presence.gateway import PresenceLink
from teams import ids
from teams.auth import Caller
from teams.directory import TeamEntry
from teams.errors import ApiError
from teams.sessions import session_ended_cache_key

logger = logging.getLogger(__name__)

# Slack clients send typing every ~3 s while it lasts, and once more at once when typing
# resumes right after a send (receivers stop showing it when the message arrives): one a
# second per place typed in still bounds what a socket makes every member's client draw.
TYPING_THROTTLE_SECS = 1.0
# Typing in a thread and in its channel are separate indicators (Slack's user_typing names the
# thread), so each place has its own throttle: a member moving from a thread's box to the
# channel's is shown there at once, not a second late or not at all. Two places a period per
# conversation is all a person types in; the cap holds a client naming a new thread_ts in
# every frame to that.
TYPING_PLACES_PER_PERIOD = 2
CLOSE_BAD_TICKET = 4001
CLOSE_RESYNC = 4002
CLOSE_ACCESS_ENDED = 4003  # the token was revoked or the member deactivated: boot with a new token
CLOSE_BUSY = 4029
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN = 4503  # the service is unavailable: reconnect later (1013 is not allowed to servers here)
SERVICE_UNAVAILABLE_FRAME = {
    "type": "error",
    "error": {"code": "service_unavailable", "msg": "the team's data is unavailable; retry shortly"},
}


JOIN_TRIES = 3  # hubs stopped under a joining socket before it says goodbye instead
_connecting = 0  # sockets of this process between handshake and live


class RtmConsumer(AsyncWebsocketConsumer):
    caller: Caller
    viewer: Viewer
    cursor: int

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """AsyncConsumer's, without a channel-layer channel per socket: that costs a Redis
        SUBSCRIBE and UNSUBSCRIBE per socket (a reconnect storm's worth, serialized on the
        layer's one connection) and a receiving task, while everything a socket hears comes
        from this process's team hub or its presence subscriptions (presence/subscribers.py)."""
        self.scope = scope
        self.layer = get_channel_layer()
        self.channel_layer = None
        self.base_send = send
        try:
            await await_many_dispatch([receive], self.dispatch)
        except StopConsumer:
            pass
        finally:
            # daphne never calls disconnect for an application that raised or was cancelled:
            # whatever the way out, the socket leaves its hub, presence and gauges (once).
            await self.disconnect(CLOSE_INTERNAL_ERROR)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch first closes stale database connections of its one
        # thread-sensitive thread, a hop through that single thread per message (a
        # reconnect storm queues on it). This consumer's database work runs on pool threads.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        global _connecting
        self.hub: TeamHub | None = None
        # Made before the handshake: until accept opens the socket, its sends take the
        # consumer's own way (Wire.open), so every frame goes through it in one order.
        self.wire = Wire(self.base_send, self._send_text)
        # conversation id -> {thread_ts or None: when its typing was last passed on}
        self.typing_sent: dict[int, dict[str | None, float]] = {}
        if _connecting >= settings.SOCKETS_CONNECTING_MAX:
            await self._refuse(1.0, "too many sockets connecting to this server")
            return
        _connecting += 1
        try:
            await self._connect()
        finally:
            _connecting -= 1

    async def _refuse(self, wait: float, why: str) -> None:
        await self.accept()
        await self.send_json(
            {
                "type": "error",
                "error": {"code": "ratelimited", "msg": why, "retry_after": jittered_retry_after(wait)},
            }
        )
        await self.close(code=CLOSE_BUSY)

    async def _connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        admission = await admit_connection(query.get("ticket", [""])[0], _since(query))
        if admission.wait > 0:
            await self._refuse(admission.wait, "too many new sockets")
            return
        ticket, team = admission.ticket, admission.team
        if ticket is None or team is None:
            await self.close(code=CLOSE_BAD_TICKET)
            return
        if not team.is_open:
            # Moving (or closed) since the ticket was issued: come back through rtm.connect,
            # which answers with a retry until the team's new shard is in the directory.
            await self.accept()
            await self.say_goodbye()
            return
        self.caller = Caller(
            team, ticket.member_id, ticket.bot_id, ticket.kind, ticket.token_id, ticket.session
        )
        self.cursor = ticket.cursor  # the `since` it came with, else the boot's
        self.socket_key = admission.socket_key
        await self.accept()
        try:
            await self._go_live(team, ticket, admission.reconnect_ticket)
        except Exception:
            # daphne does not call disconnect for an application that raised: undo what
            # connecting registered (shutdown list, gauge, presence, hub) here.
            logger.exception("socket of team %s failed while connecting", team.id)
            await self.disconnect(CLOSE_INTERNAL_ERROR)
            await self.close(code=CLOSE_INTERNAL_ERROR)

    async def _go_live(self, team: TeamEntry, ticket: Ticket, reconnect_ticket: str) -> None:
        shutdown.register(self)
        OPEN_SOCKETS.inc()
        self.counted = True
        self.presence = PresenceLink(
            self.layer, self.send_json, team, ticket.member_id, ticket.batch_presence_aware
        )
        await self.presence.start()  # by hello, the member counts as online
        try:
            # hello, the replay and the reconnect_url leave as one write.
            with self.wire.corked():
                await self.send_json({"type": "hello"})
                hello_only = self.wire.held()
                joined = await self._join(team)
                if joined and await self._signed_out():
                    # Signed out meanwhile: the replay (events after the sign-out, perhaps) is
                    # not sent, and no event after this (as live_only._end_session).
                    self.wire.drop_held_after(hello_only)
                    self.hub.leave(self)
                    raise AccessEnded
                if joined:
                    await self.send_reconnect_url(ticket, reconnect_ticket)
            if not joined:
                await self.say_goodbye()
        except ResyncRequired:
            await self.resync()
        except AccessEnded:
            await self.shut_out()
        except OperationalError:
            # The team's shard is down: the client reconnects later from its cursor.
            await self.send_json(SERVICE_UNAVAILABLE_FRAME)
            await self.close(code=CLOSE_TRY_AGAIN)

    async def _join(self, team: TeamEntry) -> bool:
        """Join the team's hub; False when the team is moving (the client reconnects)."""
        for _ in range(JOIN_TRIES):
            self.hub = await hub_for(self.layer, team.id, team.shard)
            if not hasattr(self, "viewer"):
                member_id = self.caller.member_id
                self.viewer = await self.hub.members.viewer_for(member_id, self.cursor)
            try:
                await self.hub.join(self)
                return True
            except HubClosed as closed:  # the sweeper stopped it meanwhile: a new one starts
                if closed.moving:
                    return False
        return False

    async def _signed_out(self) -> bool:
        """Whether the socket's session signed out, asked once it is live. Admission read
        the marker too, but a sign-out between that read and the join was handed to the hub
        (session.ended) before this socket was live, and missed it. The marker is set before
        that message is published, so after the join one of the two always catches it. A
        token socket has no session: it skips the read."""
        session = self.caller.session
        if session is None:
            return False
        try:
            (ended,) = await cache_get_many([session_ended_cache_key(session)])
        except RedisError as exc:  # as teams.sessions tolerates an outage: the socket stays
            logger.warning("sign-out of a socket's session not checked: %s", exc)
            return False
        return ended is not None

    async def send_reconnect_url(self, ticket: Ticket | None = None, ticket_text: str = "") -> None:
        """Slack's reconnect_url: where this client may come back without rtm.connect.
        Renewed by the hub before it expires (the first one was issued at admission).

        The URL carries no `since`: only the client knows the last event_id it received
        (frames in flight when it dropped never arrived), so it appends `since=<that id>`,
        as Slack clients track it. Without one the socket resumes from the cursor at the
        URL's issue: events after it come again (never fewer)."""
        self.ticket = ticket or self.ticket
        self.reconnect_url_sent = time.monotonic()
        if not ticket_text:
            grant = replace(self.ticket, cursor=self.cursor)
            key, value, ticket_text = reconnect_ticket(grant, self.socket_key)
            await redis_batch().call("SET", key, value, "EX", RECONNECT_TTL_SECS)
        url = socket_url(self._ws_base_url(), ticket_text)
        await self.send_json({"type": "reconnect_url", "url": url})

    def _ws_base_url(self) -> str:
        headers = dict(self.scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1") or "{}:{}".format(*self.scope["server"])
        forwarded = headers.get(b"x-forwarded-proto", b"").decode("latin-1")
        scheme = self.scope.get("scheme") or ("wss" if forwarded in ("https", "wss") else "ws")
        return f"{scheme}://{host}/"

    async def disconnect(self, code: int) -> None:
        """Undo connecting (once: it runs again when a failed connect closes the socket)."""
        shutdown.unregister(self)
        if getattr(self, "counted", False):
            OPEN_SOCKETS.dec()
            self.counted = False
        if getattr(self, "hub", None) is not None:
            self.hub.leave(self)
        presence = self.__dict__.pop("presence", None)
        if presence is not None:
            await presence.stop()

    # --- events from the team's hub ----------------------------------------------------

    def write(self, frames: list[Frame]) -> None:
        self.wire.write(frames)

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def resync(self) -> None:
        await self.send_json(
            {
                "type": "error",
                "error": {"code": "resync_required", "msg": "cursor is older than the event log; boot again"},
            }
        )
        await self.close(code=CLOSE_RESYNC)

    async def shut_out(self) -> None:
        """The member's tokens were revoked or the member deactivated (the frame saying so
        has gone out): no more events, and no reconnect_url."""
        await self.close(code=CLOSE_ACCESS_ENDED)

    # --- frames from the client ----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = json.loads(text_data or "")
        except json.JSONDecodeError:
            await self.send_json(
                {"type": "error", "error": {"code": "invalid_json", "msg": "frames are JSON"}}
            )
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind != "ping":
            try:
                await self.presence.activity()
            except RedisError as exc:  # presence waits for Redis; the socket's frame does not
                logger.warning("activity of member %s not recorded: %s", self.caller.member_id, exc)
        if kind == "ping":
            await self.send_json(
                {
                    **{k: v for k, v in frame.items() if k not in ("type", "id")},
                    "type": "pong",
                    "reply_to": frame.get("id"),
                }
            )
        elif kind == "message":
            await self.send_json(await blocking(self._post)(frame))
        elif kind == "typing":
            await self._typing(frame)
        elif kind in ("presence_sub", "presence_query"):
            await self._presence_request(kind, frame)
        elif frame.get("id") is not None:
            await self.send_json(
                {
                    "ok": False,
                    "reply_to": frame.get("id"),
                    "error": {"code": "unknown_type", "msg": f"unsupported type {kind!r}"},
                }
            )

    async def _presence_request(self, kind: str, frame: dict[str, Any]) -> None:
        """A subscription or query that fails (Redis or the shard away) is answered with an
        error; the socket stays up and the client may ask again."""
        try:
            if kind == "presence_sub":
                await self.presence.subscribe(frame.get("ids"))
            else:
                await self.presence.query(frame.get("ids"))
        except Exception:
            logger.exception("%s failed for a socket of team %s", kind, self.caller.team.id)
            error = {"code": "presence_unavailable", "msg": "presence is unavailable; try again"}
            await self.send_json({"type": "error", "reply_to": frame.get("id"), "error": error})

    def _post(self, frame: dict[str, Any]) -> dict[str, Any]:
        """The same action chat.postMessage calls, answered in RTM's reply shape."""
        reply_to = frame.get("id")
        try:
            check_rate_limit(self.caller, REGISTRY["chat.postMessage"])
            text, channel = frame.get("text", ""), frame.get("channel")
            if not isinstance(text, str) or not isinstance(channel, str):
                raise ApiError("invalid_arguments", "channel and text are strings")
            with on_shard(self.caller.shard):
                posted = post_message(
                    self.caller,
                    channel,
                    text=text,
                    thread_ts=frame.get("thread_ts"),
                    client_msg_id=frame.get("client_msg_id"),
                )
        except ApiError as exc:
            return {
                "ok": False,
                "reply_to": reply_to,
                "error": {"code": exc.code, "msg": exc.detail or exc.code},
            }
        except OperationalError:
            return {"ok": False, "reply_to": reply_to, "error": SERVICE_UNAVAILABLE_FRAME["error"]}
        return {
            "ok": True,
            "reply_to": reply_to,
            "ts": ids.format_ts(posted.message.ts),
            "text": posted.message.text,
            "channel": posted.channel.slack_id,
        }

    async def _typing(self, frame: dict[str, Any]) -> None:
        try:
            channel_id = ids.decode(frame.get("channel"), ids.CHANNEL_PREFIXES)
        except ids.BadId:
            return
        if channel_id not in self.viewer.channel_ids:
            return
        thread_ts = _typing_thread(frame.get("thread_ts"))
        now = time.monotonic()
        sent = self.typing_sent.setdefault(channel_id, {})
        for place, at in list(sent.items()):
            if now - at >= TYPING_THROTTLE_SECS:
                del sent[place]
        if thread_ts in sent or len(sent) >= TYPING_PLACES_PER_PERIOD:
            return
        sent[thread_ts] = now
        try:
            await self.layer.group_send(
                team_group(self.caller.team_id),
                {
                    "type": "team.typing",
                    "channel_id": channel_id,
                    "channel": frame["channel"],
                    "thread_ts": thread_ts,
                    "user": self.caller.user_slack_id,
                },
            )
        except RedisError as exc:  # a typing indicator is not worth the socket
            logger.info("typing of member %s not sent: %s", self.caller.member_id, exc)

    async def presence_change(self, message: dict[str, Any]) -> None:
        """A presence change sent to the whole team (hub._presence_to_everyone): only
        bench/presence.py's broadcast baseline sends one; subscribed changes reach the
        socket through presence/subscribers.py."""
        self.presence.changed(message["user"], message["presence"])

    # --- lifecycle ---------------------------------------------------------------------

    async def say_goodbye(self) -> None:
        """Sent when this server shuts down: the client should reconnect elsewhere."""
        await self.send_json({"type": "goodbye", "source": "gateway_server"})
        await self.close()

    async def send_json(self, content: dict[str, Any]) -> None:
        text = json.dumps(content)
        if self.wire.open:
            self.wire.write([Frame(text)])  # the same path as the hub's writes: one order
        else:
            await self.send(text_data=text)


def _since(query: dict[str, list[str]]) -> int | None:
    value = query.get("since", [""])[0]
    # isdigit() also takes digits int() refuses (such as "²"); an event id is a bigint.
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    return int(value)


def _typing_thread(value: object) -> str | None:
    """A typing frame's thread_ts in Slack's form, or None (typing in the channel) when it is
    missing or malformed: the indicator still shows, in the channel, rather than erroring over
    a hint. Not looked up: a frame a second is no reason for a query, and a ts naming no thread
    only lights an indicator no client has open."""
    if not isinstance(value, str):
        return None
    try:
        return ids.format_ts(ids.parse_ts(value))
    except ids.BadId:
        return None

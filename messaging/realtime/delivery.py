"""What a socket may see (and the frames it is sent), and reading the event log for replay
and gap filling."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import connections

from chatproject.dbrouter import on_shard
from messaging.events import CHANNEL_KEY, PARENT_KEY, TEAM_IMPORTED
from messaging.models import ChannelMember, Event, EventSequence
from messaging.realtime.wire import Frame, Wire
from teams import ids
from teams.auth import Caller

REPLAY_BATCH = 1000
FRAMES_KEY = "_frames"  # the encoded frames, cached on the (per-process, shared) layer message


class ResyncRequired(Exception):
    """The cursor is older than the retained log (or not from this team): boot again."""


def layer_message(event: Event) -> dict[str, Any]:
    """An event row in the shape the channel layer carries it (messaging.events.publish)."""
    return {
        "type": "team.event",
        "event_id": event.event_id,
        "event": event.payload,
        "channel_id": event.channel_id,
        "audience": event.audience,
    }


def read_events(shard: str, team_id: int, after: int, upto: int | None = None) -> list[dict[str, Any]]:
    """Events after `after` (and at most `upto`), oldest first, at most one batch.

    Raises ResyncRequired when the event right after `after` has been pruned, or when an
    import filled the team after `after`: its members, channels and history reach a
    client only through a new boot.
    """
    with on_shard(shard):
        queryset = Event.objects.filter(team_id=team_id, event_id__gt=after).order_by("event_id")
        if upto is not None:
            queryset = queryset.filter(event_id__lte=upto)
        rows = list(queryset[:REPLAY_BATCH])
        if rows and rows[0].event_id != after + 1:
            raise ResyncRequired(f"events after {after} were pruned")
        if any(row.type == TEAM_IMPORTED for row in rows):
            raise ResyncRequired(f"the team was imported into after event {after}")
        if not rows and after > 0:
            last = (
                EventSequence.objects.filter(team_id=team_id).values_list("last_event_id", flat=True).first()
            )
            if last is None or after > last:
                raise ResyncRequired(f"cursor {after} is not from this team's log")
            # Every event up to `last` has committed (ids are handed out under the
            # sequence's row lock, in commit order): none left of them means all pruned.
            bound = last if upto is None else min(last, upto)
            if after < bound and not queryset.filter(event_id__lte=bound).exists():
                raise ResyncRequired(f"events after {after} were pruned")
    return [layer_message(row) for row in rows]


def read_head(shard: str, team_id: int) -> int:
    """The team's last event id (0 for an empty log)."""
    with on_shard(shard):
        last = EventSequence.objects.filter(team_id=team_id).values_list("last_event_id", flat=True).first()
    return int(last or 0)


_JOIN_LEAVE = frozenset({"member_joined_channel", "member_left_channel"})
_JOINED_BY_AUDIENCE = frozenset({"group_joined", "im_created", "mpim_open"})
_JOINS = _JOINED_BY_AUDIENCE | {"member_joined_channel", "channel_created"}
MEMBERSHIP_KINDS = _JOINS | _JOIN_LEAVE  # events that may change someone's conversations


def member_channel_ids(shard: str, team_id: int, member_id: int, checked_upto: int) -> set[int]:
    """The member's conversations now, for a socket whose events up to `checked_upto` are
    known not to change them (see MemberViews.channel_ids). ResyncRequired when one committed
    since does: the socket would judge the events before it by memberships it reflects.

    One statement reads the memberships and the log's head: the same snapshot, so the head
    is exactly the last event they reflect (ids are handed out in commit order)."""
    with on_shard(shard), connections[shard].cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT last_event_id FROM {EventSequence._meta.db_table} WHERE team_id = %s),"
            f" ARRAY(SELECT channel_id FROM {ChannelMember._meta.db_table}"
            " WHERE team_id = %s AND member_id = %s)",
            [team_id, team_id, member_id],
        )
        as_of, channel_ids = cursor.fetchone()
        if as_of is not None and as_of > checked_upto:
            ensure_memberships_unchanged(shard, team_id, member_id, checked_upto, as_of)
    return set(channel_ids)


def ensure_memberships_unchanged(shard: str, team_id: int, member_id: int, after: int, upto: int) -> None:
    """ResyncRequired when an event in (after, upto] of the log changes the member's
    conversations."""
    with on_shard(shard):
        rows = Event.objects.filter(
            team_id=team_id, event_id__gt=after, event_id__lte=upto, type__in=MEMBERSHIP_KINDS
        )
        ensure_unchanged_by(member_id, [layer_message(row) for row in rows], upto)


def ensure_unchanged_by(member_id: int, messages: list[dict[str, Any]], upto: int) -> None:
    """ResyncRequired when one of `messages`, up to event `upto`, changes the member's
    conversations."""
    for message in messages:
        if message["event_id"] > upto:
            break
        if message["event"].get("type") in MEMBERSHIP_KINDS and member_id in membership_subjects(message):
            raise ResyncRequired(f"member {member_id} joined or left a conversation at {message['event_id']}")


def _channel_id(payload: dict[str, Any]) -> int | None:
    channel = payload.get("channel")
    ref = channel.get("id") if isinstance(channel, dict) else channel
    try:
        return ids.decode(ref, ids.CHANNEL_PREFIXES)
    except ids.BadId:
        return None


@dataclass
class Viewer:
    """One socket's member and the conversations they are in, kept current by the events
    it sees (in log order), so a delivery decision needs no query."""

    member_id: int
    channel_ids: set[int] = field(default_factory=set)
    # Events of the log after the socket's cursor, up to this one, are still to be checked
    # for a change to the member's conversations (MemberViews.viewer_for): the hub's join,
    # which reads them from the log anyway, checks them before it replays any.
    unchecked_upto: int = 0

    slack_id: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.slack_id = ids.encode(ids.USER, self.member_id)

    def may_see(self, message: dict[str, Any]) -> bool:
        """Decide, and track joins and leaves. Call once per event, in event-id order."""
        payload = message["event"]
        kind = payload.get("type")
        audience = message.get("audience")
        channel_id = message.get("channel_id")
        mine = bool(audience) and self.member_id in audience
        if kind in _JOINS:
            self._track_join(kind, payload, channel_id, mine)
        visible = self.sees(channel_id, audience or None)
        if kind == "member_left_channel" and channel_id and payload.get("user") == self.slack_id:
            self.channel_ids.discard(channel_id)
        return visible

    def sees(self, channel_id: int | None, audience: Collection[int] | None) -> bool:
        """Whether an event of this scope is for this viewer (as its joins and leaves stand
        now): its audience names them, or it is in one of their conversations, or it is
        team-wide (neither)."""
        if audience is not None and self.member_id in audience:
            return True
        return channel_id in self.channel_ids if channel_id else audience is None

    def _track_join(self, kind: str, payload: dict[str, Any], channel_id: int | None, mine: bool) -> None:
        if kind == "member_joined_channel":
            if channel_id and payload.get("user") == self.slack_id:
                self.channel_ids.add(channel_id)
        elif kind == "channel_created":
            if payload.get("channel", {}).get("creator") == self.slack_id:
                if (created := _channel_id(payload)) is not None:
                    self.channel_ids.add(created)
        elif mine and (joined := _channel_id(payload)) is not None:  # group_joined, im_created, mpim_open
            self.channel_ids.add(joined)

    def loses_access(self, message: dict[str, Any]) -> bool:
        """The event revokes this member's tokens or deactivates them: their sockets close
        (after hearing it), since a socket's grant is checked only when it is admitted."""
        payload = message["event"]
        kind = payload.get("type")
        if kind == "tokens_revoked":
            return self.member_id in (message.get("audience") or ())
        if kind == "user_change":
            deactivated = _deactivated(payload)
            return deactivated is not None and deactivated == self.slack_id
        return False

    def own_frames(self, message: dict[str, Any]) -> list[str]:
        """Slack's companion event for this viewer's own join or leave (channel_joined,
        group_left, ...); it follows the event's shared frames."""
        payload = message["event"]
        kind = payload.get("type")
        if kind not in _JOIN_LEAVE or payload.get("user") != self.slack_id:
            return []
        private = payload.get("channel_type") == "G"
        verb = "joined" if kind == "member_joined_channel" else "left"
        companion: dict[str, Any] = {"type": f"{'group' if private else 'channel'}_{verb}"}
        companion["channel"] = payload.get(CHANNEL_KEY) if verb == "joined" else payload.get("channel")
        return [json.dumps(companion)]


def _deactivated(payload: dict[str, Any]) -> str | None:
    """The member a user_change deactivates (their Slack id), if it does."""
    user = payload.get("user")
    return user.get("id") if isinstance(user, dict) and user.get("deleted") else None


def changes_viewers(message: dict[str, Any]) -> bool:
    """Whether Viewer.may_see, own_frames or loses_access may act on this event for some
    viewer (a join, a leave, a revocation, a deactivation): such events are delivered
    event by event (fanout.py); any other is seen or not by its scope alone."""
    payload = message["event"]
    kind = payload.get("type")
    if kind in _JOINS or kind in _JOIN_LEAVE or kind == "tokens_revoked":
        return True
    return kind == "user_change" and _deactivated(payload) is not None


def membership_subjects(message: dict[str, Any]) -> list[int]:
    """Members whose conversations this event may change (see Viewer.may_see)."""
    payload = message["event"]
    kind = payload.get("type")
    if kind in _JOIN_LEAVE:
        user = payload.get("user")
    elif kind == "channel_created":
        channel = payload.get("channel")
        user = channel.get("creator") if isinstance(channel, dict) else None
    elif kind in _JOINED_BY_AUDIENCE:
        return list(message.get("audience") or ())
    else:
        return []
    try:
        return [ids.decode(user, ids.USER_PREFIXES)]
    except ids.BadId:
        return []


def shared_frames(message: dict[str, Any]) -> list[Frame]:
    """The frames a visible event becomes for every viewer: the event itself (with its id,
    without the gateway's private keys), then message_replied for a thread reply.

    Encoded once per process and kept on the layer message, which all local sockets share.
    """
    frames = message.get(FRAMES_KEY)
    if frames is not None:
        return frames  # type: ignore[no-any-return]
    payload = message["event"]
    event = {k: v for k, v in payload.items() if not k.startswith("_")}
    event["event_id"] = message["event_id"]
    frames = [Frame(json.dumps(event))]
    if payload.get("type") == "message" and PARENT_KEY in payload:
        replied = {
            "type": "message",
            "subtype": "message_replied",
            "hidden": True,
            "channel": payload.get("channel"),
            "message": payload[PARENT_KEY],
            "ts": payload.get("ts"),
            "event_ts": payload.get("event_ts"),
        }
        frames.append(Frame(json.dumps(replied)))
    message[FRAMES_KEY] = frames
    return frames


class AccessEnded(Exception):
    """The socket's member lost access (tokens revoked, deactivated) at an event it replayed."""


class Socket(Protocol):
    """What the hub needs of a gateway socket (RtmConsumer)."""

    cursor: int
    viewer: Viewer
    wire: Wire
    caller: Caller
    reconnect_url_sent: float

    def write(self, frames: list[Frame]) -> None: ...

    async def resync(self) -> None: ...

    async def say_goodbye(self) -> None: ...

    async def shut_out(self) -> None: ...

    async def send_reconnect_url(self) -> None: ...

    async def presence_change(self, message: dict[str, Any]) -> None: ...


def frames_for(sock: Socket, messages: list[dict[str, Any]]) -> tuple[list[Frame], int, bool]:
    """The frames of `messages` (in event order) that the socket may see, how many events
    they are, and whether one of them ends the socket's grant. The socket's cursor moves
    past them; events at or before it (it joined ahead of the hub) are skipped."""
    frames: list[Frame] = []
    viewer = sock.viewer
    cursor = sock.cursor
    delivered = 0
    ended = False
    for message in messages:
        event_id = message["event_id"]
        if event_id <= cursor:
            continue
        cursor = event_id
        if viewer.may_see(message):
            frames += shared_frames(message)
            own = viewer.own_frames(message)
            if own:
                frames += [Frame(text) for text in own]
            delivered += 1
            if viewer.loses_access(message):
                # Nothing after the event that ends the socket's grant reaches it.
                ended = True
                break
    sock.cursor = cursor
    return frames, delivered, ended

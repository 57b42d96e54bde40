"""What a socket may see, and reading the event log for replay and gap filling."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chatproject.dbrouter import on_shard
from messaging.events import CHANNEL_KEY, PARENT_KEY, TEAM_IMPORTED
from messaging.models import ChannelMember, Event, EventSequence
from teams import ids

REPLAY_BATCH = 1000
WIRE_KEY = "_wire"  # the encoded frame, cached on the (per-process, shared) layer message


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


def member_channel_ids(shard: str, team_id: int, member_id: int) -> set[int]:
    with on_shard(shard):
        memberships = ChannelMember.objects.filter(team_id=team_id, member_id=member_id)
        return set(memberships.values_list("channel_id", flat=True))


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

    @property
    def slack_id(self) -> str:
        return ids.encode(ids.USER, self.member_id)

    def may_see(self, message: dict[str, Any]) -> bool:
        """Decide, and track joins and leaves. Call once per event, in event-id order."""
        payload = message["event"]
        audience = message.get("audience") or ()
        channel_id = message.get("channel_id")
        mine = self.member_id in audience
        kind = payload.get("type")
        about_me = payload.get("user") == self.slack_id
        if kind == "member_joined_channel" and about_me and channel_id:
            self.channel_ids.add(channel_id)
        elif mine and kind in ("group_joined", "im_created", "mpim_open"):
            if (joined := _channel_id(payload)) is not None:
                self.channel_ids.add(joined)
        elif kind == "channel_created" and payload.get("channel", {}).get("creator") == self.slack_id:
            if (created := _channel_id(payload)) is not None:
                self.channel_ids.add(created)
        visible = mine or (channel_id in self.channel_ids if channel_id else not audience)
        if kind == "member_left_channel" and about_me and channel_id:
            self.channel_ids.discard(channel_id)
        return visible

    def frames(self, message: dict[str, Any]) -> list[str]:
        """The frames (JSON text) a visible event becomes on the wire: the event itself
        (with its id, without the gateway's private keys), then Slack's companion events.

        The event's own frame is the same for every socket: it is encoded once per
        process and kept on the layer message, which all local sockets share.
        """
        payload = message["event"]
        if WIRE_KEY not in message:
            event = {k: v for k, v in payload.items() if not k.startswith("_")}
            event["event_id"] = message["event_id"]
            message[WIRE_KEY] = json.dumps(event)
        frames = [message[WIRE_KEY]]
        kind = payload.get("type")
        if kind in ("member_joined_channel", "member_left_channel") and payload.get("user") == self.slack_id:
            private = payload.get("channel_type") == "G"
            verb = "joined" if kind == "member_joined_channel" else "left"
            companion: dict[str, Any] = {"type": f"{'group' if private else 'channel'}_{verb}"}
            companion["channel"] = payload.get(CHANNEL_KEY) if verb == "joined" else payload.get("channel")
            frames.append(json.dumps(companion))
        if kind == "message" and PARENT_KEY in payload:
            parent = payload[PARENT_KEY]
            replied = {
                "type": "message",
                "subtype": "message_replied",
                "hidden": True,
                "channel": payload.get("channel"),
                "message": parent,
                "ts": payload.get("ts"),
                "event_ts": payload.get("event_ts"),
            }
            frames.append(json.dumps(replied))
        return frames

"""Reads of conversation data, scoped to the caller's team and what the caller may see."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery

from messaging.models import JOIN_LEAVE_SUBTYPES, Channel, ChannelMember, Message, Pin, Reaction
from messaging.shapes import message_json
from teams import ids
from teams.auth import Caller
from teams.errors import ApiError
from teams.models import Member

K = Channel.Kind


@dataclass(frozen=True)
class Conversation:
    channel: Channel
    is_member: bool
    last_read: int | None


def conversation(caller: Caller, channel_ref: object) -> Conversation:
    """The channel named by a Slack id (or `#name`), if the caller may see it.

    Private channels and DMs the caller is not in do not exist for them, as in Slack:
    the answer is channel_not_found either way.
    """
    queryset = Channel.objects.filter(team_id=caller.team_id)
    if isinstance(channel_ref, str) and channel_ref[:1] == "#":
        queryset = queryset.filter(name=channel_ref[1:])
    else:
        try:
            queryset = queryset.filter(id=ids.decode(channel_ref, ids.CHANNEL_PREFIXES))
        except ids.BadId:
            raise ApiError("channel_not_found") from None
    my_read = ChannelMember.objects.filter(channel=OuterRef("pk"), member_id=caller.member_id)
    channel = queryset.annotate(my_last_read=Subquery(my_read.values("last_read")[:1])).first()
    if channel is None:
        raise ApiError("channel_not_found")
    last_read = channel.my_last_read  # type: ignore[attr-defined]
    if channel.kind != K.PUBLIC and last_read is None:
        raise ApiError("channel_not_found")
    return Conversation(channel, last_read is not None, last_read)


def member(caller: Caller, user_ref: object, *, error: str = "user_not_found") -> Member:
    try:
        member_id = ids.decode(user_ref, ids.USER_PREFIXES)
    except ids.BadId:
        raise ApiError(error) from None
    found = Member.objects.filter(id=member_id, team_id=caller.team_id).first()
    if found is None:
        raise ApiError(error)
    return found


def ts_argument(value: object, error: str) -> int:
    """A `ts` argument in microseconds, or the Slack error this argument has for bad input."""
    try:
        return ids.parse_ts(value)
    except ids.BadId:
        raise ApiError(error) from None


def message_at(
    channel: Channel, ts: int, *, for_update: bool = False, error: str = "message_not_found"
) -> Message:
    queryset = Message.objects.filter(channel=channel, ts=ts)
    if for_update:
        queryset = queryset.select_for_update()
    found = queryset.first()
    if found is None:
        raise ApiError(error)
    return found


def visible_channels(caller: Caller, kinds: Iterable[str]) -> QuerySet[Channel]:
    """Channels of these kinds the caller can see: every public one, and the rest they are in."""
    kinds = list(kinds)
    mine = ChannelMember.objects.filter(channel=OuterRef("pk"), member_id=caller.member_id)
    queryset = Channel.objects.filter(team_id=caller.team_id, kind__in=kinds).annotate(is_member=Exists(mine))
    return queryset.filter(Q(kind=K.PUBLIC) | Q(is_member=True))


def top_level(queryset: QuerySet[Message]) -> QuerySet[Message]:
    """What a channel's history shows: no thread replies except those sent to the channel too."""
    return queryset.filter(Q(thread_ts__isnull=True) | Q(thread_ts=F("ts")) | Q(subtype="thread_broadcast"))


def reactions_for(messages: list[Message]) -> dict[int, list[Reaction]]:
    grouped: dict[int, list[Reaction]] = {}
    if messages:
        for reaction in Reaction.objects.filter(message_id__in=[m.id for m in messages]):
            grouped.setdefault(reaction.message_id, []).append(reaction)
    return grouped


def pinned_ids(messages: list[Message]) -> set[int]:
    if not messages:
        return set()
    return set(
        Pin.objects.filter(message_id__in=[m.id for m in messages]).values_list("message_id", flat=True)
    )


def messages_json(team_slack_id: str, channel: Channel, messages: list[Message]) -> list[dict[str, Any]]:
    """Messages with their reactions and pins, in two queries whatever the page size."""
    reactions = reactions_for(messages)
    pinned = pinned_ids(messages)
    return [
        message_json(m, team_slack_id, reactions.get(m.id, ()), [channel.slack_id] if m.id in pinned else ())
        for m in messages
    ]


# Comings and goings (models.JOIN_LEAVE_SUBTYPES): Slack counts them in unread_count but
# not in unread_count_display, the count its clients show (a join alone does not make a
# channel unread).
NOT_JOIN_LEAVE = ~Q(subtype__in=JOIN_LEAVE_SUBTYPES)


@dataclass(frozen=True)
class UnreadCounts:
    unread: int  # messages after last_read from others, as Slack's unread_count
    display: int  # of those, all but joins and leaves, as Slack's unread_count_display
    mentions: int  # of those, the ones that mention the member (every one, in a DM)


def unread_counts(channel: Channel, member_id: int, last_read: int) -> UnreadCounts:
    """Unread and mention counts for one member in one channel, in one query."""
    unread = top_level(Message.objects.filter(channel=channel, ts__gt=last_read, is_deleted=False)).exclude(
        user_id=member_id
    )
    counts = unread.aggregate(
        unread=Count("id"),
        display=Count("id", filter=NOT_JOIN_LEAVE),
        mentions=Count("id", filter=Q(mentions__contains=[member_id]) | Q(mentions_all=True)),
    )
    mentions = counts["unread"] if channel.kind == K.IM else counts["mentions"]  # a DM is all to them
    return UnreadCounts(counts["unread"], counts["display"], mentions)

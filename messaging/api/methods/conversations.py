"""conversations.*: channels, private channels, DMs and group DMs."""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from messaging.actions import channels as channel_actions
from messaging.actions import dms as dm_actions
from messaging.api.pages import clamp_limit, decode_cursor, page_metadata
from messaging.api.registry import ApiCall, Args, CommaList, PageArgs, SlackBool, api_method
from messaging.models import Channel, ChannelMember, Message, Pin
from messaging.queries import (
    conversation,
    messages_json,
    top_level,
    ts_argument,
    unread_counts,
    visible_channels,
)
from messaging.shapes import channel_json
from teams import ids
from teams.errors import ApiError

K = Channel.Kind
TYPE_KINDS = {"public_channel": K.PUBLIC, "private_channel": K.PRIVATE, "im": K.IM, "mpim": K.MPIM}
NO_CHANNEL = {"channel": "channel_not_found"}


class ChannelArgs(Args):
    channel: str


def _shape(call: ApiCall, channel: Channel, **extra: Any) -> dict[str, Any]:
    return channel_json(channel, call.caller.member_id, **extra)


class CreateArgs(Args):
    name: str
    is_private: SlackBool = False


@api_method("conversations.create", CreateArgs, tier=2, errors={"name": "invalid_name_required"})
def create(call: ApiCall) -> dict[str, Any]:
    """Create a public or private channel; the caller is its first member."""
    channel = channel_actions.create_channel(call.caller, call.args.name, is_private=call.args.is_private)
    return {"channel": _shape(call, channel, is_member=True, last_read=0)}


class ListArgs(PageArgs):
    types: CommaList = ["public_channel"]
    exclude_archived: SlackBool = False


@api_method("conversations.list", ListArgs, tier=2)
def list_(call: ApiCall) -> dict[str, Any]:
    """Conversations the caller can see, filtered by type, in pages."""
    args = call.args
    try:
        kinds = [TYPE_KINDS[t] for t in args.types] or [K.PUBLIC]
    except KeyError:
        raise ApiError("invalid_types") from None
    queryset = visible_channels(call.caller, kinds).annotate(num_members=Count("memberships")).order_by("id")
    if args.exclude_archived:
        queryset = queryset.filter(is_archived=False)
    after = decode_cursor(args.cursor, "conv")
    if after is not None:
        queryset = queryset.filter(id__gt=after)
    limit = clamp_limit(args.limit)
    rows = list(queryset[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "channels": [_shape(call, c, is_member=c.is_member, num_members=c.num_members) for c in rows],  # type: ignore[attr-defined]
        **page_metadata(rows[-1].id if more else None, "conv"),
    }


class InfoArgs(ChannelArgs):
    include_num_members: SlackBool = False


@api_method("conversations.info", InfoArgs, tier=3, errors=NO_CHANNEL)
def info(call: ApiCall) -> dict[str, Any]:
    """One conversation."""
    access = conversation(call.caller, call.args.channel)
    extra: dict[str, Any] = {"is_member": access.is_member}
    if access.last_read is not None:
        extra["last_read"] = access.last_read
    if call.args.include_num_members:
        extra["num_members"] = ChannelMember.objects.filter(channel=access.channel).count()
    shape = _shape(call, access.channel, **extra)
    if access.last_read is not None:
        counts = unread_counts(access.channel, call.caller.member_id, access.last_read)
        shape.update(
            unread_count=counts.unread, unread_count_display=counts.display, mention_count=counts.mentions
        )
    return {"channel": shape}


@api_method("conversations.join", ChannelArgs, tier=3, errors=NO_CHANNEL)
def join(call: ApiCall) -> dict[str, Any]:
    """Join a public channel."""
    channel, already = channel_actions.join_channel(call.caller, call.args.channel)
    result: dict[str, Any] = {"channel": _shape(call, channel, is_member=True)}
    if already:
        result["warning"] = "already_in_channel"
        result["response_metadata"] = {"warnings": ["already_in_channel"]}
    return result


@api_method("conversations.leave", ChannelArgs, tier=3, errors=NO_CHANNEL)
def leave(call: ApiCall) -> dict[str, Any]:
    """Leave a channel."""
    was_member = channel_actions.leave_channel(call.caller, call.args.channel)
    return {} if was_member else {"not_in_channel": True}


class InviteArgs(ChannelArgs):
    users: CommaList


@api_method("conversations.invite", InviteArgs, tier=3, errors={**NO_CHANNEL, "users": "no_user"})
def invite(call: ApiCall) -> dict[str, Any]:
    """Add people to a channel the caller is in."""
    if not call.args.users:
        raise ApiError("no_user")
    channel = channel_actions.invite(call.caller, call.args.channel, call.args.users)
    return {"channel": _shape(call, channel, is_member=True)}


class KickArgs(ChannelArgs):
    user: str


@api_method("conversations.kick", KickArgs, tier=3, errors={**NO_CHANNEL, "user": "user_not_found"})
def kick(call: ApiCall) -> dict[str, Any]:
    """Remove someone from a channel."""
    channel_actions.kick(call.caller, call.args.channel, call.args.user)
    return {}


@api_method("conversations.archive", ChannelArgs, tier=2, errors=NO_CHANNEL)
def archive(call: ApiCall) -> dict[str, Any]:
    """Archive a channel."""
    channel_actions.set_archived(call.caller, call.args.channel, True)
    return {}


@api_method("conversations.unarchive", ChannelArgs, tier=2, errors=NO_CHANNEL)
def unarchive(call: ApiCall) -> dict[str, Any]:
    """Bring an archived channel back."""
    channel_actions.set_archived(call.caller, call.args.channel, False)
    return {}


class RenameArgs(ChannelArgs):
    name: str


@api_method(
    "conversations.rename", RenameArgs, tier=2, errors={**NO_CHANNEL, "name": "invalid_name_required"}
)
def rename(call: ApiCall) -> dict[str, Any]:
    """Rename a channel."""
    channel = channel_actions.rename(call.caller, call.args.channel, call.args.name)
    return {"channel": _shape(call, channel, is_member=True)}


class TopicArgs(ChannelArgs):
    topic: str = ""


@api_method("conversations.setTopic", TopicArgs, tier=2, errors=NO_CHANNEL)
def set_topic(call: ApiCall) -> dict[str, Any]:
    """Set a channel's topic."""
    channel = channel_actions.set_topic_or_purpose(call.caller, call.args.channel, "topic", call.args.topic)
    return {"channel": _shape(call, channel, is_member=True), "topic": channel.topic}


class PurposeArgs(ChannelArgs):
    purpose: str = ""


@api_method("conversations.setPurpose", PurposeArgs, tier=2, errors=NO_CHANNEL)
def set_purpose(call: ApiCall) -> dict[str, Any]:
    """Set a channel's purpose."""
    channel = channel_actions.set_topic_or_purpose(
        call.caller, call.args.channel, "purpose", call.args.purpose
    )
    return {"channel": _shape(call, channel, is_member=True), "purpose": channel.purpose}


class HistoryArgs(ChannelArgs, PageArgs):
    oldest: str = ""
    latest: str = ""
    inclusive: SlackBool = False


def _ts_bound(value: str) -> int | None:
    if value in ("", "0"):
        return None
    return ts_argument(value, "invalid_ts_latest")


def _window(queryset: Any, args: HistoryArgs) -> Any:
    oldest, latest = _ts_bound(args.oldest), _ts_bound(args.latest)
    if oldest is not None:
        queryset = queryset.filter(**{"ts__gte" if args.inclusive else "ts__gt": oldest})
    if latest is not None:
        queryset = queryset.filter(**{"ts__lte" if args.inclusive else "ts__lt": latest})
    return queryset


@api_method("conversations.history", HistoryArgs, tier=3, errors=NO_CHANNEL)
def history(call: ApiCall) -> dict[str, Any]:
    """A conversation's messages, newest first, in pages (thread replies stay in their thread)."""
    args = call.args
    channel = conversation(call.caller, args.channel).channel
    queryset = _window(top_level(Message.objects.filter(channel=channel)), args)
    before = decode_cursor(args.cursor, "ts")
    if before is not None:
        queryset = queryset.filter(ts__lt=before)
    limit = clamp_limit(args.limit)
    rows = list(queryset.order_by("-ts")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "messages": messages_json(call.caller.team.slack_id, channel, rows),
        "has_more": more,
        "pin_count": Pin.objects.filter(channel=channel).count(),
        **page_metadata(rows[-1].ts if more else None, "ts"),
    }


class RepliesArgs(HistoryArgs):
    ts: str


@api_method("conversations.replies", RepliesArgs, tier=3, errors={**NO_CHANNEL, "ts": "thread_not_found"})
def replies(call: ApiCall) -> dict[str, Any]:
    """A thread: its parent first, then replies oldest first, in pages."""
    args = call.args
    channel = conversation(call.caller, args.channel).channel
    thread_ts = ts_argument(args.ts, "thread_not_found")
    head = Message.objects.filter(channel=channel, ts=thread_ts).first()
    if head is None:
        raise ApiError("thread_not_found")
    if head.thread_ts is not None and head.thread_ts != head.ts:
        thread_ts = head.thread_ts  # asked with a reply's ts: answer with its whole thread
    queryset = _window(Message.objects.filter(channel=channel, thread_ts=thread_ts), args)
    after = decode_cursor(args.cursor, "ts")
    if after is not None:
        queryset = queryset.filter(ts__gt=after)
    limit = clamp_limit(args.limit)
    rows = list(queryset.order_by("ts")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    if not rows or rows[0].ts != thread_ts:
        parent = (
            head if head.ts == thread_ts else Message.objects.filter(channel=channel, ts=thread_ts).first()
        )
        if parent is not None and after is None:
            rows.insert(0, parent)
    return {
        "messages": messages_json(call.caller.team.slack_id, channel, rows),
        "has_more": more,
        **page_metadata(rows[-1].ts if more else None, "ts"),
    }


class MembersArgs(ChannelArgs, PageArgs):
    pass


@api_method("conversations.members", MembersArgs, tier=4, errors=NO_CHANNEL)
def members(call: ApiCall) -> dict[str, Any]:
    """Who is in a conversation, in pages."""
    args = call.args
    channel = conversation(call.caller, args.channel).channel
    queryset = ChannelMember.objects.filter(channel=channel).order_by("member_id")
    after = decode_cursor(args.cursor, "member")
    if after is not None:
        queryset = queryset.filter(member_id__gt=after)
    limit = clamp_limit(args.limit)
    member_ids = list(queryset.values_list("member_id", flat=True)[: limit + 1])
    more = len(member_ids) > limit
    member_ids = member_ids[:limit]
    return {
        "members": [ids.encode(ids.USER, m) for m in member_ids],
        **page_metadata(member_ids[-1] if more else None, "member"),
    }


class OpenArgs(Args):
    channel: str = ""
    users: CommaList = []
    return_im: SlackBool = False


@api_method("conversations.open", OpenArgs, tier=3)
def open_(call: ApiCall) -> dict[str, Any]:
    """Open (find or start) a DM or group DM."""
    args = call.args
    if args.channel:
        channel = conversation(call.caller, args.channel).channel
        already = True
    else:
        channel, already = dm_actions.open_dm(call.caller, args.users)
    shape = (
        _shape(call, channel, is_member=True) if args.return_im or args.users else {"id": channel.slack_id}
    )
    return {"channel": shape, "already_open": already, "no_op": already}


class MarkArgs(ChannelArgs):
    ts: str


@api_method("conversations.mark", MarkArgs, tier=3, errors={**NO_CHANNEL, "ts": "invalid_timestamp"})
def mark(call: ApiCall) -> dict[str, Any]:
    """Move the caller's read cursor in a conversation."""
    channel_actions.mark_read(call.caller, call.args.channel, call.args.ts)
    return {}

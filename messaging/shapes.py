"""Slack's JSON shapes for conversations and messages, built from rows."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from messaging.models import Channel, Message, Reaction
from teams import ids

K = Channel.Kind


def dm_member_ids(channel: Channel) -> list[int]:
    return [int(part) for part in (channel.dm_key or "").split("-") if part]


# Slack's `channel_type` on message events, by kind.
CHANNEL_TYPES = {K.PUBLIC: "channel", K.PRIVATE: "group", K.IM: "im", K.MPIM: "mpim"}


def channel_type(channel: Channel) -> str:
    return CHANNEL_TYPES[channel.kind]  # type: ignore[index]


def channel_json(
    channel: Channel,
    viewer_id: int | None = None,
    *,
    is_member: bool | None = None,
    last_read: int | None = None,
    num_members: int | None = None,
) -> dict[str, Any]:
    kind = channel.kind
    data: dict[str, Any] = {
        "id": channel.slack_id,
        "created": channel.created,
        "is_archived": channel.is_archived,
        "is_im": kind == K.IM,
        "is_mpim": kind == K.MPIM,
        "is_private": kind != K.PUBLIC,
        "context_team_id": None,
    }
    if kind == K.IM:
        others = [m for m in dm_member_ids(channel) if m != viewer_id] or dm_member_ids(channel)
        data.update(user=ids.encode(ids.USER, others[0]), is_open=True, is_user_deleted=False)
    else:
        name = channel.name
        if kind == K.MPIM:  # Slack names group DMs after their members
            name = "mpdm-" + "--".join(ids.encode(ids.USER, m) for m in dm_member_ids(channel)) + "-1"
        data.update(
            name=name,
            name_normalized=name,
            is_channel=kind == K.PUBLIC,
            is_group=kind == K.PRIVATE,
            is_general=channel.is_general,
            is_shared=False,
            is_org_shared=False,
            is_ext_shared=False,
            unlinked=0,
            creator=ids.encode(ids.USER, channel.creator_id) if channel.creator_id else "",
            topic=_text_meta(channel.topic, channel.topic_creator_id, channel.topic_last_set),
            purpose=_text_meta(channel.purpose, channel.purpose_creator_id, channel.purpose_last_set),
        )
    if is_member is not None:
        data["is_member"] = is_member
    if last_read is not None:
        data["last_read"] = ids.format_ts(last_read)
    if num_members is not None:
        data["num_members"] = num_members
    return data


def _text_meta(value: str, creator_id: int | None, last_set: int) -> dict[str, Any]:
    return {
        "value": value,
        "creator": ids.encode(ids.USER, creator_id) if creator_id else "",
        "last_set": last_set,
    }


def reactions_json(reactions: Iterable[Reaction]) -> list[dict[str, Any]]:
    grouped: dict[str, list[str]] = {}
    for reaction in sorted(reactions, key=lambda r: (r.created, r.id)):
        grouped.setdefault(reaction.name, []).append(ids.encode(ids.USER, reaction.member_id))
    return [{"name": name, "users": users, "count": len(users)} for name, users in grouped.items()]


def _thread_fields(message: Message) -> dict[str, Any]:
    if message.thread_ts is None:
        return {}
    fields: dict[str, Any] = {"thread_ts": ids.format_ts(message.thread_ts)}
    if message.thread_ts == message.ts:
        fields.update(
            reply_count=message.reply_count,
            reply_users=[ids.encode(ids.USER, u) for u in message.reply_users],
            reply_users_count=len(message.reply_users),
        )
        if message.latest_reply is not None:
            fields["latest_reply"] = ids.format_ts(message.latest_reply)
    return fields


def message_json(
    message: Message,
    team_slack_id: str,
    reactions: Iterable[Reaction] = (),
    pinned_to: Iterable[str] = (),
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "message",
        "ts": ids.format_ts(message.ts),
        "text": message.text,
        "team": team_slack_id,
    }
    if message.is_deleted:
        # A deleted parent stays as a tombstone so its thread still hangs together.
        data.update(subtype="tombstone", text="This message was deleted.", hidden=True, user="USLACKBOT")
        data.update(_thread_fields(message))
        return data
    if message.user_id:
        data["user"] = ids.encode(ids.USER, message.user_id)
    if message.bot_id:
        data["bot_id"] = ids.encode(ids.BOT, message.bot_id)
    if message.username:
        data["username"] = message.username
    if message.subtype:
        data["subtype"] = message.subtype
    if message.client_msg_id:
        data["client_msg_id"] = message.client_msg_id
    data.update(_thread_fields(message))
    if message.edited_ts is not None:
        data["edited"] = {
            "user": ids.encode(ids.USER, message.edited_by) if message.edited_by else "",
            "ts": ids.format_ts(message.edited_ts),
        }
    for field in ("attachments", "blocks", "files"):
        value = getattr(message, field)
        if value:
            data[field] = value
    if message.extra:
        for key, value in message.extra.items():
            data.setdefault(key, value)
    reaction_list = reactions_json(reactions)
    if reaction_list:
        data["reactions"] = reaction_list
    pins = list(pinned_to)
    if pins:
        data["pinned_to"] = pins
    return data


def message_changed_payload(
    channel: Channel, message: Message, previous: dict[str, Any], team: str
) -> dict[str, Any]:
    """The `message_changed` event of an edit (or a preview attached to a message)."""
    now_ts = ids.format_ts(time.time_ns() // 1000)
    return {
        "subtype": "message_changed",
        "hidden": True,
        "channel": channel.slack_id,
        "channel_type": channel_type(channel),
        "message": message_json(message, team),
        "previous_message": previous,
        "ts": now_ts,
        "event_ts": now_ts,
    }


def message_event_payload(message: Message, channel: Channel, team_slack_id: str) -> dict[str, Any]:
    """The `message` event of a new message, less its `type`."""
    payload = message_json(message, team_slack_id)
    payload.update(channel=channel.slack_id, channel_type=channel_type(channel), event_ts=payload["ts"])
    return payload

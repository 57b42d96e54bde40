"""Editing and deleting messages (chat.update, chat.delete)."""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.db.models import F

from chatproject.dbrouter import current_shard
from jobs.search_tasks import enqueue_index
from messaging.actions.posting import MAX_TEXT_CHARS
from messaging.actions.previews import request_previews
from messaging.events import append_event
from messaging.models import Channel, Message
from messaging.mrkdwn import extract_links, parse_mentions
from messaging.queries import conversation, message_at, ts_argument
from messaging.shapes import channel_type, message_changed_payload, message_json
from teams import ids
from teams.auth import Caller
from teams.errors import ApiError
from teams.models import Member


def _is_author(caller: Caller, message: Message) -> bool:
    if caller.bot_id is not None and message.bot_id == caller.bot_id:
        return True
    return message.user_id == caller.member_id and message.bot_id == caller.bot_id


def update_message(
    caller: Caller,
    channel_ref: str,
    ts: str,
    *,
    text: str | None,
    attachments: list[Any] | None = None,
    blocks: list[Any] | None = None,
) -> tuple[Message, Channel]:
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise ApiError("msg_too_long")
    if not (text or "").strip() and not attachments and not blocks:
        raise ApiError("no_text")
    message_ts = ts_argument(ts, "message_not_found")
    channel = conversation(caller, channel_ref).channel
    if channel.is_archived:
        raise ApiError("is_archived")
    with transaction.atomic(using=current_shard()):
        message = message_at(channel, message_ts, for_update=True)
        if message.is_deleted:
            raise ApiError("message_not_found")
        if not _is_author(caller, message):
            raise ApiError("cant_update_message")
        previous = message_json(message, caller.team.slack_id)
        links_before = extract_links(message.text)
        if text is not None:
            mentions = parse_mentions(text)
            message.text, message.mentions, message.mentions_all = (
                text,
                mentions.member_ids,
                mentions.everyone,
            )
        if attachments is not None:
            message.attachments = attachments or None
        if blocks is not None:
            message.blocks = blocks or None
        message.edited_ts = time.time_ns() // 1000
        message.edited_by = caller.member_id
        message.save(
            update_fields=[
                "text",
                "mentions",
                "mentions_all",
                "attachments",
                "blocks",
                "edited_ts",
                "edited_by",
            ]
        )
        append_event(
            caller.team_id,
            "message",
            message_changed_payload(channel, message, previous, caller.team.slack_id),
            channel_id=channel.id,
        )
        request_previews(caller.team_id, message, already=links_before)
        transaction.on_commit(lambda: enqueue_index(caller.team_id, [message.id]), using=current_shard())
    return message, channel


def _can_delete(caller: Caller, message: Message) -> bool:
    if _is_author(caller, message):
        return True
    if caller.is_bot:
        return False
    return Member.objects.filter(id=caller.member_id, team_id=caller.team_id, is_admin=True).exists()


def delete_message(caller: Caller, channel_ref: str, ts: str) -> Channel:
    """Delete a message. A parent with replies stays as a tombstone; a reply updates its parent."""
    message_ts = ts_argument(ts, "message_not_found")
    channel = conversation(caller, channel_ref).channel
    with transaction.atomic(using=current_shard()):
        message = message_at(channel, message_ts, for_update=True)
        if message.is_deleted:
            raise ApiError("message_not_found")
        if not _can_delete(caller, message):
            raise ApiError("cant_delete_message")
        previous = message_json(message, caller.team.slack_id)
        if message.thread_ts == message.ts and message.reply_count > 0:
            Message.objects.filter(id=message.id).update(
                is_deleted=True,
                text="",
                attachments=None,
                blocks=None,
                files=None,
                mentions=[],
                mentions_all=False,
            )
            # A deleted row takes its vector with it; a tombstone must lose its own.
            transaction.on_commit(lambda: enqueue_index(caller.team_id, [message.id]), using=current_shard())
        else:
            message.delete()
            if message.thread_ts is not None and message.thread_ts != message.ts:
                _forget_reply(channel, message)
        now_ts = ids.format_ts(time.time_ns() // 1000)
        append_event(
            caller.team_id,
            "message",
            {
                "subtype": "message_deleted",
                "hidden": True,
                "channel": channel.slack_id,
                "channel_type": channel_type(channel),
                "deleted_ts": previous["ts"],
                "previous_message": previous,
                "ts": now_ts,
                "event_ts": now_ts,
            },
            channel_id=channel.id,
        )
    return channel


def _forget_reply(channel: Channel, reply: Message) -> None:
    """Recount the parent's thread fields after a reply is gone."""
    assert reply.thread_ts is not None
    parent = Message.objects.select_for_update().filter(channel=channel, ts=reply.thread_ts).first()
    if parent is None:
        return
    replies = Message.objects.filter(channel=channel, thread_ts=parent.ts).exclude(ts=parent.ts)
    latest = replies.order_by("-ts").values_list("ts", flat=True).first()
    users = list(dict.fromkeys(replies.order_by("ts").values_list("user_id", flat=True)))
    if parent.is_deleted and latest is None:
        parent.delete()  # a tombstone with no replies left has nothing to hold together
        return
    Message.objects.filter(id=parent.id).update(
        reply_count=F("reply_count") - 1,
        reply_users=[u for u in users if u is not None],
        latest_reply=latest,
    )

"""The one path every message takes into a channel: ts allocation, insert, thread
bookkeeping and the `message` event. chat.postMessage, the websocket and system
messages (topic changes, joins, leaves, renames...) all come through `insert_message` or
`insert_system_message`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Field

from chatproject.dbrouter import current_shard
from jobs.search_tasks import enqueue_index
from messaging.actions.dms import open_dm
from messaging.actions.one_trip_post import insert_in_one_trip
from messaging.actions.previews import request_previews
from messaging.events import PARENT_KEY, append_event
from messaging.models import Channel, Message
from messaging.mrkdwn import parse_mentions
from messaging.queries import conversation, message_at, ts_argument
from messaging.shapes import message_event_payload, message_json
from teams import ids
from teams.auth import Caller
from teams.directory import TeamEntry
from teams.errors import ApiError

MAX_TEXT_CHARS = 40_000  # Slack truncates past 40k; we refuse with msg_too_long instead

# Bumping last_ts under the channel's row lock makes ts unique and strictly increasing
# per channel across processes; GREATEST keeps it close to the wall clock. The message
# is inserted, and a reply recorded on its thread's parent (whose row the caller has
# locked), by the same statement, so the channel's lock spans no round trip. The archived
# flag is read under that lock: a send that waited on an archive's lock inserts nothing
# once the archive has committed (but for the archive's own message).
_INSERT_WITH_TS = """
WITH ch AS (
    UPDATE messaging_channel
       SET last_ts = GREATEST(last_ts + 1, %(now)s),
           latest_ts = CASE WHEN %(top_level)s THEN GREATEST(last_ts + 1, %(now)s) ELSE latest_ts END
     WHERE id = %(channel_id)s AND (NOT is_archived OR %(in_archived)s)
    RETURNING last_ts
), msg AS (
    INSERT INTO messaging_message ({columns}, ts)
    SELECT {values}, ch.last_ts FROM ch
    RETURNING id, ts
), parent AS (
    UPDATE messaging_message p
       SET thread_ts = p.ts, reply_count = %(reply_count)s, reply_users = %(reply_users)s::bigint[],
           latest_reply = msg.ts
      FROM msg
     WHERE p.id = %(parent_id)s
)
SELECT msg.id, msg.ts FROM msg
"""
# Filled by the statement itself rather than from the unsaved Message.
_COMPUTED = frozenset({"id", "ts", "search_vector"})


@dataclass(frozen=True)
class Posted:
    message: Message
    channel: Channel
    duplicate: bool  # an earlier send with the same client_msg_id


@cache
def _insert_statement() -> tuple[str, tuple[Field, ...]]:
    fields = tuple(f for f in Message._meta.concrete_fields if f.attname not in _COMPUTED)
    sql = _INSERT_WITH_TS.format(
        columns=", ".join(f.column for f in fields),
        values=", ".join(f"%(m_{f.attname})s" for f in fields),
    )
    return sql, fields


def _insert_with_ts(message: Message, parent: Message | None, top_level: bool, in_archived: bool) -> None:
    """Give the unsaved message its ts and insert it; a reply also updates `parent`,
    which the caller holds locked and has already brought up to date but for latest_reply.
    is_archived when the channel is archived (unless `in_archived`), checked under its lock."""
    alias = current_shard()
    connection = connections[alias]
    sql, fields = _insert_statement()
    parameters = {
        f"m_{field.attname}": field.get_db_prep_save(getattr(message, field.attname), connection)
        for field in fields
    }
    parameters.update(
        now=time.time_ns() // 1000,
        top_level=top_level,
        in_archived=in_archived,
        channel_id=message.channel_id,
        parent_id=parent.id if parent else None,
        reply_count=parent.reply_count if parent else 0,
        reply_users=parent.reply_users if parent else [],
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        inserted = cursor.fetchone()
    if inserted is None:
        raise ApiError("is_archived")
    message.id, message.ts = inserted
    message._state.adding, message._state.db = False, alias
    if parent is not None:
        parent.latest_reply = message.ts


def insert_message(
    caller: Caller,
    channel: Channel,
    *,
    text: str,
    subtype: str = "",
    thread_ts: int | None = None,
    reply_broadcast: bool = False,
    attachments: list[Any] | None = None,
    blocks: list[Any] | None = None,
    client_msg_id: str | None = None,
    username: str = "",
    bumps_boot: bool = False,
    fields: dict[str, Any] | None = None,
) -> Message:
    """Insert the caller's message and its event. Must run inside the action's transaction.
    `bumps_boot`: see messaging.events.append_event. `fields`: as insert_system_message's,
    for the subtype the caller posts (channel_topic's `topic`)."""
    parent = None
    if thread_ts is not None:
        parent = message_at(channel, thread_ts, for_update=True, error="thread_not_found")
        if parent.thread_ts is not None and parent.thread_ts != parent.ts:
            # Replying to a reply joins the thread of its parent, as Slack does.
            parent = message_at(channel, parent.thread_ts, for_update=True, error="thread_not_found")
    is_reply = parent is not None
    mentions = parse_mentions(text)
    message = Message(
        team_id=caller.team_id,
        channel=channel,
        user_id=caller.member_id,
        bot_id=caller.bot_id,
        username=username,
        text=text,
        subtype="thread_broadcast" if is_reply and reply_broadcast else subtype,
        thread_ts=parent.ts if parent else None,
        client_msg_id=client_msg_id,
        mentions=mentions.member_ids,
        mentions_all=mentions.everyone,
        attachments=attachments or None,
        blocks=blocks or None,
        extra=fields or None,
    )
    if parent is not None:
        parent.thread_ts = parent.ts
        parent.reply_count += 1
        if caller.member_id not in parent.reply_users:
            parent.reply_users = [*parent.reply_users, caller.member_id]
    top_level = not is_reply or reply_broadcast
    _insert_with_event(caller.team, channel, message, parent, top_level=top_level, bumps_boot=bumps_boot)
    return message


def insert_system_message(
    team: TeamEntry,
    channel: Channel,
    *,
    user_id: int,
    subtype: str,
    text: str,
    fields: dict[str, Any] | None = None,
    in_archived: bool = False,
) -> Message:
    """Insert a message that reports a change to the channel (someone joined or left, it
    was archived or renamed) as `user_id`'s, the person it is about, and its event. Must run
    inside the transaction of the action that makes the change, so the change and its
    message commit together. `fields` are Slack's extra keys of the subtype (`inviter`,
    `old_name`, ...), shown at the top level of the message. `in_archived`: the archive's
    own message, said in the channel it has just archived; any other is refused there."""
    message = Message(
        team_id=team.id,
        channel=channel,
        user_id=user_id,
        text=text,
        subtype=subtype,
        # Its <@U…> names the person it is about, who is its author: no one is mentioned.
        mentions=[],
        mentions_all=False,
        extra=fields or None,
    )
    _insert_with_event(team, channel, message, None, top_level=True, in_archived=in_archived)
    return message


def _insert_with_event(
    team: TeamEntry,
    channel: Channel,
    message: Message,
    parent: Message | None,
    *,
    top_level: bool,
    bumps_boot: bool = False,
    in_archived: bool = False,
) -> None:
    _insert_with_ts(message, parent, top_level=top_level, in_archived=in_archived)
    payload = message_event_payload(message, channel, team.slack_id)
    if parent is not None:
        # The gateway derives Slack's message_replied from this (see realtime.delivery).
        payload[PARENT_KEY] = message_json(parent, team.slack_id)
    append_event(team.id, "message", payload, channel_id=channel.id, bumps_boot=bumps_boot)
    _after_insert(team.id, message)


def _original_send(caller: Caller, client_msg_id: str) -> Posted | None:
    original = (
        Message.objects.filter(team_id=caller.team_id, user_id=caller.member_id, client_msg_id=client_msg_id)
        .select_related("channel")
        .first()
    )
    return Posted(original, original.channel, duplicate=True) if original else None


def post_message(
    caller: Caller,
    channel_ref: str,
    *,
    text: str,
    thread_ts: str | None = None,
    reply_broadcast: bool = False,
    attachments: list[Any] | None = None,
    blocks: list[Any] | None = None,
    client_msg_id: str | None = None,
    username: str = "",
) -> Posted:
    """Post as the caller. A repeated client_msg_id returns the original message."""
    if not text.strip() and not attachments and not blocks:
        raise ApiError("no_text")
    if len(text) > MAX_TEXT_CHARS:
        raise ApiError("msg_too_long")
    parent_ts = _parse_thread_ts(thread_ts)
    if parent_ts is None and (
        posted := _post_in_one_trip(
            caller,
            channel_ref,
            text=text,
            attachments=attachments,
            blocks=blocks,
            client_msg_id=client_msg_id or None,
            username=username,
        )
    ):
        return posted
    if channel_ref[:1] in ids.USER_PREFIXES:
        # Posting to a person posts into your DM with them, as Slack does.
        channel_ref = open_dm(caller, [channel_ref])[0].slack_id
    try:
        with transaction.atomic(using=current_shard()):
            access = conversation(caller, channel_ref)
            channel = access.channel
            if channel.is_archived:
                raise ApiError("is_archived")
            if not access.is_member:
                raise ApiError("not_in_channel")
            message = insert_message(
                caller,
                channel,
                text=text,
                thread_ts=parent_ts,
                reply_broadcast=reply_broadcast,
                attachments=attachments,
                blocks=blocks,
                client_msg_id=client_msg_id or None,
                username=username,
            )
    except IntegrityError as exc:
        # Two sends of one client_msg_id raced; the loser returns the winner's message.
        if client_msg_id and (original := _original_send(caller, client_msg_id)):
            return original
        raise exc
    return Posted(message, channel, duplicate=False)


def _post_in_one_trip(
    caller: Caller,
    channel_ref: str,
    *,
    text: str,
    attachments: list[Any] | None,
    blocks: list[Any] | None,
    client_msg_id: str | None,
    username: str,
) -> Posted | None:
    """The common case (a top-level post by channel id) in one statement; None otherwise."""
    mentions = parse_mentions(text)
    message = Message(
        team_id=caller.team_id,
        user_id=caller.member_id,
        bot_id=caller.bot_id,
        username=username,
        text=text,
        client_msg_id=client_msg_id,
        mentions=mentions.member_ids,
        mentions_all=mentions.everyone,
        attachments=attachments or None,
        blocks=blocks or None,
    )
    alias = current_shard()
    try:
        inserted = insert_in_one_trip(alias, message, channel_ref, caller.team.slack_id)
    except IntegrityError:
        # A send with this client_msg_id exists (or raced us): answer with it.
        return _original_send(caller, client_msg_id) if client_msg_id else None
    if inserted is None:
        return None
    message, channel, _ = inserted
    _after_insert(caller.team_id, message)
    return Posted(message, channel, duplicate=False)


def _after_insert(team_id: int, message: Message) -> None:
    """The jobs every new message queues once it is committed."""
    request_previews(team_id, message)
    transaction.on_commit(lambda: enqueue_index(team_id, [message.id]), using=current_shard())


def _parse_thread_ts(thread_ts: str | None) -> int | None:
    if thread_ts in (None, ""):
        return None
    return ts_argument(thread_ts, "thread_not_found")

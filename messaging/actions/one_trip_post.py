"""A top-level post in one statement: access check, ts, message row and event together.

The hot path of chat.postMessage. Done as separate statements in a transaction, the
channel's row lock (which orders ts) was held across five round trips and the Python
between them, so posts to one busy channel queued behind each other's GIL waits. As one
statement in autocommit the lock lives only inside PostgreSQL, for the length of an
insert. Anything that does not fit (a reply, a DM by user id, a `#name`, an error)
returns None and takes the ordinary path, which also finds the right error.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from functools import cache

from django.db import connections, transaction
from django.db.models import Field

from messaging.events import (
    EVENT_INSERT,
    NEXT_EVENT_ID_CTE,
    AppendedEvent,
    appended,
    event_parameters,
)
from messaging.models import Channel, Message
from messaging.shapes import CHANNEL_TYPES, message_event_payload, message_json
from teams import ids

K = Channel.Kind

# Columns the statement fills itself rather than from the unsaved Message.
_COMPUTED = frozenset({"id", "channel_id", "ts", "search_vector"})


@cache
def _statement() -> tuple[str, tuple[Field, ...], tuple[str, ...]]:
    """The SQL, the Message fields it inserts, and the Channel attributes it returns."""
    message_fields = tuple(f for f in Message._meta.concrete_fields if f.attname not in _COMPUTED)
    channel_fields = tuple(Channel._meta.concrete_fields)
    columns = ", ".join(f.column for f in message_fields)
    values = ", ".join(f"%(m_{f.attname})s" for f in message_fields)
    returned = ", ".join(f"c.{f.column}" for f in channel_fields)
    # Slack's "seconds.micros" spelling of ts, as teams.ids.format_ts writes it.
    ts_text = "(msg.ts / 1000000)::text || '.' || lpad((msg.ts %% 1000000)::text, 6, '0')"
    channel_type = " ".join(
        ["CASE ch.kind", *(f"WHEN '{kind}' THEN '{name}'" for kind, name in CHANNEL_TYPES.items()), "END"]
    )
    payload = (
        f"%(payload)s::jsonb || jsonb_build_object('ts', {ts_text}, 'event_ts', {ts_text}, "
        f"'channel_type', {channel_type})"
    )
    # The sequence is bumped before the message is inserted, and the insert reads it: when
    # the team's log is frozen (a move) the bump returns nothing, so nothing is inserted.
    # Locks are taken channel first, sequence second, as on every other write path.
    sql = (
        """
WITH ch AS (
    UPDATE messaging_channel c
       SET last_ts = GREATEST(c.last_ts + 1, %(now)s), latest_ts = GREATEST(c.last_ts + 1, %(now)s)
     WHERE c.id = %(channel_id)s AND c.team_id = %(team_id)s AND c.kind = ANY(%(kinds)s)
       AND NOT c.is_archived
       AND EXISTS (SELECT 1 FROM messaging_channelmember m
                    WHERE m.channel_id = c.id AND m.member_id = %(member_id)s)
       AND NOT EXISTS (SELECT 1 FROM messaging_eventsequence f
                        WHERE f.team_id = %(team_id)s AND f.frozen)
    RETURNING """
        + returned
        + "\n), "
        + NEXT_EVENT_ID_CTE.format(source="FROM ch")
        + """, msg AS (
    INSERT INTO messaging_message ("""
        + columns
        + """, channel_id, ts)
    SELECT """
        + values
        + """, ch.id, ch.last_ts FROM ch, seq
    RETURNING id, ts
), ev AS ("""
        + EVENT_INSERT.format(payload=payload, source=", msg, ch")
        + """ RETURNING event_id
)
SELECT msg.id, msg.ts, ev.event_id, ch.* FROM msg, ev, ch"""
    )
    return sql, message_fields, tuple(f.attname for f in channel_fields)


def insert_in_one_trip(
    alias: str, message: Message, channel_ref: str, team_slack_id: str
) -> tuple[Message, Channel, AppendedEvent] | None:
    """Insert an unsaved top-level message into the channel `channel_ref` names, with its
    `message` event, in autocommit. None when that is not a channel id the poster may post
    in (not a member, archived, none such): the ordinary path then names the error."""
    try:
        channel_id = ids.decode(channel_ref, ids.CHANNEL_PREFIXES)
    except ids.BadId:
        return None
    # The id's prefix must fit the channel's kind, so the event names it as Slack would.
    kinds = {ids.PUBLIC: [K.PUBLIC], ids.IM: [K.IM]}.get(channel_ref[0], [K.PRIVATE, K.MPIM])
    message.ts = 0  # the statement allocates it; message_json needs a number meanwhile
    event_payload = {
        **message_json(message, team_slack_id),
        "channel": ids.encode(channel_ref[0], channel_id),
    }
    connection = connections[alias]
    sql, message_fields, channel_attnames = _statement()
    parameters = {
        f"m_{field.attname}": field.get_db_prep_save(getattr(message, field.attname), connection)
        for field in message_fields
    }
    parameters.update(
        event_parameters(message.team_id, "message", channel_id, None),
        now=time.time_ns() // 1000,
        channel_id=channel_id,
        member_id=message.user_id,
        kinds=kinds,
        payload=json.dumps(event_payload),
    )
    # Inside a caller's transaction a failed insert (a repeated client_msg_id) must not
    # abort it: a savepoint then. Alone, autocommit makes the statement its own commit.
    scope = transaction.atomic(using=alias) if connection.in_atomic_block else nullcontext()
    with scope, connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        row = cursor.fetchone()
    if row is None:
        return None
    message.id, message.ts, event_id = row[0], row[1], row[2]
    message.channel_id = channel_id
    message._state.adding, message._state.db = False, alias
    channel = Channel.from_db(alias, list(channel_attnames), row[3:])
    # What the statement stored, built again for the publish.
    payload = {"type": "message", **message_event_payload(message, channel, team_slack_id)}
    event = AppendedEvent(message.team_id, event_id, "message", payload, channel_id, None)
    return message, channel, appended(alias, event)

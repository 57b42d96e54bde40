"""The team-wide JSON of a boot, written by PostgreSQL.

A team of 10,000 people is 10,000 dicts and 10,000 `member_json` calls in Python (about
300 ms); PostgreSQL writes the same objects by text concatenation in a fraction of that,
and hands over one string instead of 10,000 rows. The shapes are those of
teams.shapes.member_json and messaging.shapes.channel_json (a test compares them).
"""

from __future__ import annotations

import json
from typing import Any

from django.db import connections
from psycopg.abc import Buffer
from psycopg.adapt import Loader

from chatproject.dbrouter import current_shard
from messaging.models import Channel, ChannelMember
from teams import ids
from teams.models import Member
from teams.shapes import tz_offset

_POWERS = [36**k for k in range(12, -1, -1)]  # 13 base-36 digits cover every 63-bit id


def slack_id_sql(prefix: str, column: str) -> str:
    """SQL for ids.encode(prefix, column): base 36, digit by digit, leading zeros trimmed.
    A digit d is chr(48 + d), plus 7 past 9 to land on 'A' (ids.ALPHABET): chr() costs
    less than substr() on a UTF-8 string."""

    def digit(power: int) -> str:
        return f"(({column} / {power}) %% 36)"

    digits = " || ".join(f"chr(48 + {digit(p)}::int + 7 * ({digit(p)} > 9)::int)" for p in _POWERS)
    return f"('{prefix}' || ltrim({digits}, '0'))"


def _string(sql: str) -> str:
    """SQL for the JSON text of a string value, escaped by PostgreSQL (null as null)."""
    return f"coalesce(to_json({sql})::text, 'null')"


def _id_string(prefix: str, column: str) -> str:
    return f"""('"' || {slack_id_sql(prefix, column)} || '"')"""


def _optional_user(column: str) -> str:
    return f"""CASE WHEN {column} IS NULL THEN '""' ELSE {_id_string(ids.USER, column)} END"""


def _object(fields: list[tuple[str, str]], optional: str = "") -> str:
    """SQL writing one JSON object as text: (key, SQL of the value's JSON text) in order,
    then `optional`, SQL of further `,"key":value` text or ''. Plain concatenation is
    several times faster than json_build_object, which matters for 10,000 rows."""
    parts = [f"""'{"," if i else "{"}"{key}":' || {value}""" for i, (key, value) in enumerate(fields)]
    return "(" + " || ".join(parts) + (f" || {optional}" if optional else "") + " || '}')"


_PROFILE = _object(
    [
        ("title", _string("m.title")),
        ("phone", _string("m.phone")),
        ("real_name", _string("m.real_name")),
        ("real_name_normalized", _string("m.real_name")),
        ("display_name", _string("m.display_name")),
        ("display_name_normalized", _string("m.display_name")),
        ("avatar_hash", _string("m.avatar_hash")),
        ("team", "%(team)s"),
    ],
    optional=(
        f"""CASE WHEN m.email = '' THEN '' ELSE ',"email":' || {_string("m.email")} END || """
        f"""CASE WHEN m.bot_id IS NULL THEN '' ELSE ',"bot_id":' || {_id_string(ids.BOT, "m.bot_id")} END"""
    ),
)

_MEMBER_JSON = _object(
    [
        ("id", _id_string(ids.USER, "m.id")),
        ("team_id", "%(team)s"),
        ("name", _string("m.name")),
        ("deleted", "m.deleted::text"),
        ("color", _string("m.color")),
        ("real_name", _string("m.real_name")),
        ("tz", _string("m.tz")),
        ("tz_label", _string("m.tz")),
        ("tz_offset", "coalesce(%(offsets)s::jsonb ->> m.tz, '0')"),
        ("profile", _PROFILE),
        ("is_admin", "m.is_admin::text"),
        ("is_owner", "m.is_owner::text"),
        ("is_primary_owner", "m.is_owner::text"),
        ("is_restricted", "'false'"),
        ("is_ultra_restricted", "'false'"),
        ("is_bot", "m.is_bot::text"),
        ("is_app_user", "'false'"),
        ("updated", "m.updated::text"),
    ]
)

_USERS = f"""
SELECT coalesce(string_agg({_MEMBER_JSON}, ',' ORDER BY m.id), '')
FROM {Member._meta.db_table} m WHERE m.team_id = %(team_id)s
"""
_ONLY = " AND m.id = ANY(%(only)s)"  # lean boots: the people the caller's conversations name
_TIME_ZONES = f"SELECT DISTINCT m.tz FROM {Member._meta.db_table} m WHERE m.team_id = %(team_id)s"


def _text_meta(prefix: str) -> str:
    return _object(
        [
            ("value", _string(f"c.{prefix}")),
            ("creator", _optional_user(f"c.{prefix}_creator_id")),
            ("last_set", f"c.{prefix}_last_set::text"),
        ]
    )


_CHANNEL_JSON = _object(
    [
        ("id", _id_string(ids.PUBLIC, "c.id")),
        ("created", "c.created::text"),
        ("is_archived", "c.is_archived::text"),
        ("is_im", "'false'"),
        ("is_mpim", "'false'"),
        ("is_private", "'false'"),
        ("context_team_id", "'null'"),
        ("name", _string("c.name")),
        ("name_normalized", _string("c.name")),
        ("is_channel", "'true'"),
        ("is_group", "'false'"),
        ("is_general", "c.is_general::text"),
        ("is_shared", "'false'"),
        ("is_org_shared", "'false'"),
        ("is_ext_shared", "'false'"),
        ("unlinked", "'0'"),
        ("creator", _optional_user("c.creator_id")),
        ("topic", _text_meta("topic")),
        ("purpose", _text_meta("purpose")),
    ]
)

_PUBLIC_CHANNELS = f"""
SELECT c.id, {_CHANNEL_JSON}
FROM {Channel._meta.db_table} c
WHERE c.team_id = %(team_id)s AND c.kind = %(kind)s
ORDER BY c.id
"""

# num_members of every public channel, as one value: [[channel id, count], ...]. Joins and
# leaves bump no boot_version (they would rebuild the people part at every join), so the
# counts are read at each boot, in its snapshot, as a column of a query it makes anyway.
# A count per channel off the (channel, member) index: a third faster than grouping the
# team's memberships (~5 ms for 30,000 memberships in 1,800 public channels).
PUBLIC_MEMBER_COUNTS = f"""(
SELECT coalesce(array_agg(ARRAY[c.id, (
    SELECT count(*) FROM {ChannelMember._meta.db_table} cm WHERE cm.channel_id = c.id
)]), '{{}}'::bigint[])
FROM {Channel._meta.db_table} c
WHERE c.team_id = %s AND c.kind = %s
)"""


def public_member_counts_params(team_id: int) -> list[Any]:
    return [team_id, Channel.Kind.PUBLIC.value]


class _Utf8Bytes(Loader):
    """Text as its UTF-8 bytes: megabytes of JSON need not become a str and back."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


def users_json(team_id: int, team_slack_id: str, member_ids: list[int] | None = None) -> bytes:
    """The members of a team (or only `member_ids`) as the inside of a JSON array, UTF-8."""
    params: dict[str, Any] = {"team_id": team_id, "team": json.dumps(team_slack_id), "only": member_ids}
    with connections[current_shard()].cursor() as cursor:
        only = "" if member_ids is None else _ONLY
        cursor.execute(_TIME_ZONES + only, params)
        # Offsets follow daylight saving, so they are worked out now, for the zones in use.
        params["offsets"] = json.dumps({tz: tz_offset(tz) for (tz,) in cursor.fetchall()})
        cursor.cursor.adapters.register_loader("text", _Utf8Bytes)  # this cursor only
        cursor.execute(_USERS + only, params)
        return bytes(cursor.fetchone()[0])


def public_channels_json(team_id: int) -> list[tuple[int, str]]:
    """(channel id, its JSON object) of every public channel, without per-viewer fields
    nor num_members (PUBLIC_MEMBER_COUNTS)."""
    with connections[current_shard()].cursor() as cursor:
        cursor.execute(_PUBLIC_CHANNELS, {"team_id": team_id, "kind": Channel.Kind.PUBLIC.value})
        return [(int(channel_id), text) for channel_id, text in cursor.fetchall()]

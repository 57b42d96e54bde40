"""The boot calls: rtm.connect (a socket URL, self and team) and rtm.start (the state of
the world the caller can see, consistent with the event cursor it returns).

rtm.start reads everything in one REPEATABLE READ snapshot that also reads the team's
event cursor, so replaying from that cursor on the socket neither misses nor repeats.
The team-wide part (people, bots, emoji, public channels) is the same for every member:
boot_cache keeps it pre-encoded (the people pre-compressed) per boot_version, which every
event that changes it bumps in its own transaction; each call adds only the caller's part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction
from django.db.models import Count, F, Q, Subquery
from django.db.models.expressions import RawSQL

from chatproject.dbrouter import current_shard
from messaging.models import Channel, EventSequence, Message
from messaging.queries import NOT_JOIN_LEAVE, top_level
from messaging.realtime import boot_cache, boot_sql, deflate
from messaging.realtime.tickets import issue_ticket
from messaging.shapes import channel_json, dm_member_ids, message_json
from teams import ids
from teams.auth import Caller
from teams.models import Member
from teams.shapes import team_json

K = Channel.Kind
NOT_A_MEMBER = '"is_member":false}'


@dataclass(frozen=True)
class BootOptions:
    no_latest: bool = False
    lean: bool = False  # only the people the caller's conversations name
    batch_presence_aware: bool = False


@dataclass(frozen=True)
class Snapshot:
    cursor: int
    boot_version: int
    # public channel id -> num_members, read with the cursor (rtm.start only)
    member_counts: dict[int, int] = field(default_factory=dict)


def socket_url(base_ws_url: str, ticket: str, cursor: int | None = None) -> str:
    """Without a cursor (a reconnect_url) the client adds `since` itself."""
    url = f"{base_ws_url}rtm/?ticket={ticket}"
    return url if cursor is None else f"{url}&since={cursor}"


def _self_json(member_id: int, name: str) -> dict[str, Any]:
    return {
        "id": ids.encode(ids.USER, member_id),
        "name": name,
        "prefs": {},
        "created": 0,
        "manual_presence": "active",
    }


def rtm_connect(caller: Caller, base_ws_url: str, options: BootOptions) -> dict[str, Any]:
    my_name, snapshot = _me_and_snapshot(caller)
    ticket = issue_ticket(caller, snapshot.cursor, batch_presence_aware=options.batch_presence_aware)
    return {
        "url": socket_url(base_ws_url, ticket, snapshot.cursor),
        "self": {"id": caller.user_slack_id, "name": my_name},
        "team": {"id": caller.team.slack_id, "name": caller.team.name, "domain": caller.team.domain},
        "event_cursor": snapshot.cursor,
    }


def _unread(caller: Caller) -> dict[int, tuple[int, int, int]]:
    """channel id -> (unread, unread but joins and leaves, mentions) for every conversation
    the caller is in, in one query."""
    me = caller.member_id
    rows = (
        top_level(
            Message.objects.filter(
                channel__memberships__member_id=me,
                ts__gt=F("channel__memberships__last_read"),
                is_deleted=False,
            )
        )
        .exclude(user_id=me)
        .values("channel_id")
        .annotate(
            unread=Count("id"),
            display=Count("id", filter=NOT_JOIN_LEAVE),
            mentions=Count(
                "id", filter=Q(mentions__contains=[me]) | Q(mentions_all=True) | Q(channel__kind=K.IM)
            ),
        )
    )
    return {r["channel_id"]: (r["unread"], r["display"], r["mentions"]) for r in rows}


def _latest(team_slack_id: str, channels: list[Channel]) -> dict[int, dict[str, Any]]:
    pairs = [(c.id, c.latest_ts) for c in channels if c.latest_ts]
    if not pairs:
        return {}
    found = Message.objects.raw(
        "SELECT * FROM messaging_message WHERE (channel_id, ts) IN "
        "(SELECT * FROM unnest(%s::bigint[], %s::bigint[]))",
        [[p[0] for p in pairs], [p[1] for p in pairs]],
    )
    return {m.channel_id: message_json(m, team_slack_id) for m in found if not m.is_deleted}


def _member_state(
    channel: Channel,
    last_read: int,
    unread: dict[int, tuple[int, int, int]],
    latest: dict[int, dict[str, Any]],
    options: BootOptions,
) -> dict[str, Any]:
    count, display, mentions = unread.get(channel.id, (0, 0, 0))
    state: dict[str, Any] = {
        "is_member": True,
        "last_read": ids.format_ts(last_read),
        "unread_count": count,
        "unread_count_display": display,
        "mention_count": mentions,
    }
    if not options.no_latest:
        state["latest"] = latest.get(channel.id)
    return state


def _me_and_snapshot(caller: Caller, member_counts: bool = False) -> tuple[str, Snapshot]:
    """The caller's name and the team's cursor (and public channels' member counts), in
    one query."""
    sequence = EventSequence.objects.filter(team_id=caller.team_id)
    columns: list[Any] = [
        "name",
        Subquery(sequence.values("last_event_id")),
        Subquery(sequence.values("boot_version")),
    ]
    if member_counts:
        params = boot_sql.public_member_counts_params(caller.team_id)
        columns.append(RawSQL(boot_sql.PUBLIC_MEMBER_COUNTS, params))
    name, cursor, version, *pairs = (
        Member.objects.filter(team_id=caller.team_id, id=caller.member_id).values_list(*columns).get()
    )
    counts = {cid: n for cid, n in pairs[0]} if pairs else {}
    return name, Snapshot(cursor or 0, version or 0, counts)


@dataclass(frozen=True)
class BootBody:
    body: bytes
    gzipped: bool


def _channels(rooms: boot_cache.Rooms, states: dict[int, dict[str, Any]], counts: dict[int, int]) -> str:
    """Every public channel, its member count and the caller's state appended to its
    cached JSON."""
    return ",".join(
        f'{text},"num_members":{counts.get(cid, 0)},'
        + (json.dumps(states[cid])[1:] if cid in states else NOT_A_MEMBER)
        for cid, text in rooms.channels
    )


def rtm_start(caller: Caller, base_ws_url: str, options: BootOptions, gzip: bool = False) -> BootBody:
    """The whole boot payload as JSON bytes (gzip'd if `gzip`), around the cached team-wide
    parts: the people first (compressed once per team change), then the caller's part."""
    alias = current_shard()
    outermost = not connections[alias].in_atomic_block  # nested (tests): the outer snapshot rules
    team = caller.team
    with transaction.atomic(using=alias):
        if outermost:
            with connections[alias].cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        my_name, snapshot = _me_and_snapshot(caller, member_counts=True)
        mine = list(
            Channel.objects.filter(memberships__member_id=caller.member_id).annotate(
                my_last_read=F("memberships__last_read")
            )
        )
        unread = _unread(caller)
        latest = {} if options.no_latest else _latest(team.slack_id, mine)
        # People first: building them reads the rooms while the people compress.
        people = None if options.lean else boot_cache.people(team.id, team.slack_id, snapshot.boot_version)
        rooms = boot_cache.rooms(team.id, team.slack_id, snapshot.boot_version)
        if options.lean:
            # Only the people the caller's conversations name: straight from the database.
            wanted = {caller.member_id} | {m for c in mine if c.is_dm_like for m in dm_member_ids(c)}
            users = boot_sql.users_json(team.id, team.slack_id, sorted(wanted))
            head = boot_cache.PEOPLE_HEAD + users + boot_cache.PEOPLE_TAIL

    states = {
        c.id: _member_state(c, c.my_last_read, unread, latest, options)  # type: ignore[attr-defined]
        for c in mine
    }
    groups, ims, mpims = [], [], []
    for channel in mine:
        if channel.kind == K.PUBLIC:
            continue
        shape = {**channel_json(channel, caller.member_id), **states[channel.id]}
        {K.PRIVATE: groups, K.IM: ims, K.MPIM: mpims}[channel.kind].append(shape)  # type: ignore[index]
    ticket = issue_ticket(caller, snapshot.cursor, batch_presence_aware=options.batch_presence_aware)
    own = {
        "url": socket_url(base_ws_url, ticket, snapshot.cursor),
        "event_cursor": snapshot.cursor,
        "self": _self_json(caller.member_id, my_name),
        "team": team_json(team),
        "groups": groups,
        "ims": ims,
        "mpims": mpims,
        "cache_version": f"v{snapshot.boot_version}",
    }
    suffix = (
        f'"bots":{rooms.bots},"emoji":{rooms.emoji},{json.dumps(own)[1:-1]},'
        f'"channels":[{_channels(rooms, states, snapshot.member_counts)}]}}'
    ).encode()
    if people is None:
        body = head + suffix
        return BootBody(deflate.gzip_body(None, body), True) if gzip else BootBody(body, False)
    if gzip:
        return BootBody(deflate.gzip_body(people, suffix), True)
    return BootBody(people.raw() + suffix, False)

"""The boot calls: rtm.connect (a socket URL, self and team) and rtm.start (the state of
the world the caller can see, consistent with the event cursor it returns).

rtm.start reads everything in one REPEATABLE READ snapshot that also reads the team's
event cursor, so replaying from that cursor on the socket neither misses nor repeats.
The team-wide part (people, bots, emoji, public channels) is the same for every member:
it is cached as pre-encoded JSON keyed by the team's boot_version, which every event
that changes it bumps in its own transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import connections, transaction
from django.db.models import Count, F, Q

from chatproject.dbrouter import current_shard
from messaging.models import Channel, CustomEmoji, EventSequence, Message
from messaging.queries import top_level
from messaging.realtime.tickets import issue_ticket
from messaging.shapes import channel_json, dm_member_ids, message_json
from teams import ids
from teams.auth import Caller
from teams.models import Bot, Member
from teams.shapes import bot_json, member_json, team_json

K = Channel.Kind
BOOT_CACHE_SECS = 3600  # a stale version is never read; this only frees memory


@dataclass(frozen=True)
class BootOptions:
    no_latest: bool = False
    lean: bool = False  # only the people the caller's conversations name
    batch_presence_aware: bool = False


@dataclass(frozen=True)
class Snapshot:
    cursor: int
    boot_version: int


def socket_url(base_ws_url: str, ticket: str, cursor: int) -> str:
    return f"{base_ws_url}rtm/?ticket={ticket}&since={cursor}"


def read_cursor(team_id: int) -> Snapshot:
    row = EventSequence.objects.filter(team_id=team_id).values_list("last_event_id", "boot_version").first()
    return Snapshot(*(row or (0, 0)))


def _self_json(member: Member) -> dict[str, Any]:
    return {
        "id": member.slack_id,
        "name": member.name,
        "prefs": {},
        "created": 0,
        "manual_presence": "active",
    }


def rtm_connect(caller: Caller, base_ws_url: str, options: BootOptions) -> dict[str, Any]:
    snapshot = read_cursor(caller.team_id)
    me = Member.objects.get(team_id=caller.team_id, id=caller.member_id)
    ticket = issue_ticket(caller, snapshot.cursor, batch_presence_aware=options.batch_presence_aware)
    return {
        "url": socket_url(base_ws_url, ticket, snapshot.cursor),
        "self": {"id": me.slack_id, "name": me.name},
        "team": {"id": caller.team.slack_id, "name": caller.team.name, "domain": caller.team.domain},
        "event_cursor": snapshot.cursor,
    }


def _team_wide(caller: Caller, version: int) -> dict[str, str]:
    """JSON fragments shared by every member's boot, cached per boot_version."""
    key = f"boot:{caller.team_id}:{version}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    team = caller.team.slack_id
    members = list(Member.objects.filter(team_id=caller.team_id).order_by("id"))
    public = list(
        Channel.objects.filter(team_id=caller.team_id, kind=K.PUBLIC)
        .annotate(num_members=Count("memberships"))
        .order_by("id")
    )
    fragments = {
        "users": json.dumps([member_json(m, team) for m in members]),
        "bots": json.dumps(
            [bot_json(b, team) for b in Bot.objects.filter(team_id=caller.team_id).order_by("id")]
        ),
        "emoji": json.dumps(
            {
                e.name: e.url or f"alias:{e.alias_for}"
                for e in CustomEmoji.objects.filter(team_id=caller.team_id).order_by("name")
            }
        ),
        "public_channels": json.dumps(
            [channel_json(c, None, num_members=c.num_members) for c in public]  # type: ignore[attr-defined]
        ),
    }
    cache.set(key, fragments, BOOT_CACHE_SECS)
    return fragments


def _unread(caller: Caller) -> dict[int, tuple[int, int]]:
    """channel id -> (unread, mentions) for every conversation the caller is in, in one query."""
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
            mentions=Count(
                "id", filter=Q(mentions__contains=[me]) | Q(mentions_all=True) | Q(channel__kind=K.IM)
            ),
        )
    )
    return {r["channel_id"]: (r["unread"], r["mentions"]) for r in rows}


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
    unread: dict[int, tuple[int, int]],
    latest: dict[int, dict[str, Any]],
    options: BootOptions,
) -> dict[str, Any]:
    count, mentions = unread.get(channel.id, (0, 0))
    state: dict[str, Any] = {
        "is_member": True,
        "last_read": ids.format_ts(last_read),
        "unread_count": count,
        "unread_count_display": count,
        "mention_count": mentions,
    }
    if not options.no_latest:
        state["latest"] = latest.get(channel.id)
    return state


def rtm_start(caller: Caller, base_ws_url: str, options: BootOptions) -> bytes:
    """The whole boot payload, as JSON bytes (the cached team-wide part is spliced in)."""
    alias = current_shard()
    outermost = not connections[alias].in_atomic_block  # nested (tests): the outer snapshot rules
    with transaction.atomic(using=alias):
        if outermost:
            with connections[alias].cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        snapshot = read_cursor(caller.team_id)
        mine = list(
            Channel.objects.filter(memberships__member_id=caller.member_id).annotate(
                my_last_read=F("memberships__last_read")
            )
        )
        unread = _unread(caller)
        latest = {} if options.no_latest else _latest(caller.team.slack_id, mine)
        me = Member.objects.get(team_id=caller.team_id, id=caller.member_id)
        fragments = _team_wide(caller, snapshot.boot_version)

    member_states = {
        c.slack_id: _member_state(c, c.my_last_read, unread, latest, options)  # type: ignore[attr-defined]
        for c in mine
    }
    groups, ims, mpims = [], [], []
    for channel in mine:
        if channel.kind == K.PUBLIC:
            continue
        shape = {**channel_json(channel, caller.member_id), **member_states[channel.slack_id]}
        {K.PRIVATE: groups, K.IM: ims, K.MPIM: mpims}[channel.kind].append(shape)  # type: ignore[index]
    public = [
        {**c, **member_states.get(c["id"], {"is_member": False})}
        for c in json.loads(fragments["public_channels"])
    ]
    users_fragment = fragments["users"]
    if options.lean:
        wanted = {caller.member_id} | {m for c in mine if c.is_dm_like for m in dm_member_ids(c)}
        users_fragment = json.dumps(
            [u for u in json.loads(users_fragment) if ids.decode(u["id"], "U") in wanted]
        )
    ticket = issue_ticket(caller, snapshot.cursor, batch_presence_aware=options.batch_presence_aware)
    head = {
        "ok": True,
        "url": socket_url(base_ws_url, ticket, snapshot.cursor),
        "event_cursor": snapshot.cursor,
        "self": _self_json(me),
        "team": team_json(caller.team),
        "channels": public,
        "groups": groups,
        "ims": ims,
        "mpims": mpims,
        "cache_version": f"v{snapshot.boot_version}",
    }
    # Splice the cached fragments in without decoding and re-encoding them.
    body = json.dumps(head)[:-1]
    body += (
        ', "users": ' + users_fragment + ', "bots": ' + fragments["bots"] + ', "emoji": ' + fragments["emoji"]
    )
    return (body + "}").encode()

"""Presence in Redis: who is active, shared by every daphne process.

A member is active while at least one of their sockets has a live heartbeat, they have
been active recently, and they have not chosen to be away. Each socket keeps a score
(its expiry) in a per-member sorted set, so a socket whose process died simply expires.
One atomic script recomputes a member's state and says whether it changed, so a change
is announced once however many processes notice it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django_redis import get_redis_connection
from redis import RedisError

from messaging.events import group_publish_args, publish_to_group
from messaging.realtime.redis_batch import Script, redis_batch
from teams import ids

logger = logging.getLogger(__name__)

HEARTBEAT_SECS = 30  # each socket refreshes its entry this often
SOCKET_TTL_SECS = 90  # 3 missed heartbeats and a socket no longer counts
ACTIVITY_WRITE_SECS = 30  # record activity at most this often per socket

ACTIVE, AWAY = "active", "away"

# KEYS: sockets zset, manual-away flag, last-activity, state hash, online-teams set
# ARGV: now, member id, auto-away seconds, team id
_RECOMPUTE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local sockets = redis.call('ZCARD', KEYS[1])
local manual = redis.call('EXISTS', KEYS[2])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
local state = 'away'
if sockets > 0 and manual == 0 and (tonumber(ARGV[1]) - last) < tonumber(ARGV[3]) then state = 'active' end
local old = redis.call('HGET', KEYS[4], ARGV[2]) or 'away'
if state == 'active' then
  redis.call('HSET', KEYS[4], ARGV[2], state)
  redis.call('SADD', KEYS[5], ARGV[4])
else
  redis.call('HDEL', KEYS[4], ARGV[2])
end
return {state, old ~= state and 1 or 0, sockets, manual, last}
"""
# A socket's heartbeat (or its arrival) and the recompute, in one call. ARGV after the
# recompute's: socket id, its expiry, the sockets key's TTL, active (1/0), activity TTL.
_SEEN = (
    """
redis.call('ZADD', KEYS[1], ARGV[6], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[7])
if ARGV[8] == '1' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[9]) end
"""
    + _RECOMPUTE
)
# A socket closed, and the recompute. ARGV after the recompute's: socket id.
_GONE = "redis.call('ZREM', KEYS[1], ARGV[5])\n" + _RECOMPUTE
_SEEN_SCRIPT, _GONE_SCRIPT = Script(_SEEN), Script(_GONE)


@dataclass(frozen=True)
class Presence:
    member_id: int
    presence: str
    changed: bool
    connection_count: int
    manual_away: bool
    last_activity: int

    @property
    def user(self) -> str:
        return ids.encode(ids.USER, self.member_id)


def presence_group(team_id: int, member_id: int) -> str:
    """The channel-layer group of sockets subscribed to one member's presence."""
    return f"presence.{team_id}.{member_id}"


def _keys(team_id: int, member_id: int) -> list[str]:
    """A member's sockets (expire SOCKET_TTL_SECS after the last heartbeat), manual away,
    last activity (expires), the team's active members, the teams with any.

    Kept for good, each bounded: manual away is the member's choice until they set "auto"
    again (one per member; expired, it would turn them active unasked); the active hash
    holds at most the team's members, each dropped by the recompute once away (sweep()
    recomputes them after a dead process); the teams set lists teams with active members,
    one entry a team, dropped by sweep() once none is."""
    base = f"pres:{team_id}:{member_id}"
    return [f"{base}:sockets", f"{base}:manual", f"{base}:activity", f"pres:{team_id}:active", "pres:teams"]


def _recompute(team_id: int, member_id: int) -> Presence:
    return _announced(team_id, _call_sync(_RECOMPUTE, team_id, member_id))


def _call_sync(script: str, team_id: int, member_id: int, *extra: object) -> Presence:
    reply = get_redis_connection("default").eval(
        script, 5, *_keys(team_id, member_id), *_args(team_id, member_id), *extra
    )
    return _presence(member_id, reply)


def _args(team_id: int, member_id: int) -> list[object]:
    return [time.time(), member_id, settings.AUTO_AWAY_SECS, team_id]


def _presence(member_id: int, reply: list[Any]) -> Presence:
    state, changed, sockets, manual, last = reply
    return Presence(
        member_id,
        state.decode() if isinstance(state, bytes) else state,
        bool(changed),
        int(sockets),
        bool(manual),
        int(float(last)),
    )


def _announced(team_id: int, presence: Presence) -> Presence:
    if presence.changed:
        announce(team_id, presence)
    return presence


def _change_message(team_id: int, presence: Presence) -> dict[str, Any]:
    # The team too: a process's subscriptions are keyed by (team, member), like the group.
    return {"type": "presence.change", "team": team_id, "user": presence.user, "presence": presence.presence}


def announce(team_id: int, presence: Presence) -> None:
    try:
        publish_to_group(presence_group(team_id, presence.member_id), _change_message(team_id, presence))
    except RedisError as exc:
        logger.warning("presence of %s not announced: %s", presence.user, exc)


def _seen_args(socket_id: str, active: bool) -> list[object]:
    return [
        socket_id,
        time.time() + SOCKET_TTL_SECS,
        SOCKET_TTL_SECS,
        int(active),
        settings.AUTO_AWAY_SECS * 2,
    ]


async def _call_batched(script: Script, team_id: int, member_id: int, *extra: object) -> Presence:
    """A script in the gateway's Redis batch; a change is announced in the next one."""
    batch = redis_batch()
    presence = _presence(
        member_id, await batch.run(script, _keys(team_id, member_id), [*_args(team_id, member_id), *extra])
    )
    if presence.changed:
        try:
            group = presence_group(team_id, member_id)
            await batch.call("PUBLISH", *group_publish_args(group, _change_message(team_id, presence)))
        except RedisError as exc:
            logger.warning("presence of %s not announced: %s", presence.user, exc)
    return presence


async def socket_seen_batched(team_id: int, member_id: int, socket_id: str, *, active: bool) -> Presence:
    """A socket connected or sent its heartbeat (`active`: the person did something), from
    the event loop, sharing round trips with every other socket's."""
    return await _call_batched(_SEEN_SCRIPT, team_id, member_id, *_seen_args(socket_id, active))


async def socket_gone_batched(team_id: int, member_id: int, socket_id: str) -> Presence:
    return await _call_batched(_GONE_SCRIPT, team_id, member_id, socket_id)


def set_manual_presence(team_id: int, member_id: int, presence: str) -> Presence:
    """users.setPresence: "away" until set back to "auto"."""
    manual_key = _keys(team_id, member_id)[1]
    redis = get_redis_connection("default")
    if presence == AWAY:
        redis.set(manual_key, 1)
    else:
        redis.delete(manual_key)
    return _recompute(team_id, member_id)


async def current_batched(team_id: int, member_ids: list[int]) -> dict[int, str]:
    """Presence of several members as last computed, in one round trip of the gateway's
    Redis batch."""
    if not member_ids:
        return {}
    states = await redis_batch().call("HMGET", f"pres:{team_id}:active", *member_ids)
    return {m: ACTIVE if s else AWAY for m, s in zip(member_ids, states, strict=True)}


def lookup(team_id: int, member_id: int) -> Presence:
    """users.getPresence: recomputed now, so expiry and auto-away are never stale."""
    return _recompute(team_id, member_id)


def sweep() -> int:
    """Recompute everyone marked active (expired sockets, auto-away); returns changes.

    Run periodically (Celery beat): it is what notices a socket whose process died.
    """
    redis = get_redis_connection("default")
    changes = 0
    for raw_team in redis.smembers("pres:teams"):
        team_id = int(raw_team)
        active = [int(m) for m in redis.hkeys(f"pres:{team_id}:active")]
        if not active:
            redis.srem("pres:teams", team_id)
        changes += sum(_recompute(team_id, member_id).changed for member_id in active)
    return changes

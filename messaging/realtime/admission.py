"""Admission control for reconnect storms: boots and socket accepts at a bounded rate.

A GCRA token bucket per key in Redis (one atomic script call): per team and overall
for rtm.connect/rtm.start, overall for socket accepts (checked in the same call that
redeems the socket's ticket). Beyond the rate the caller gets
429 with a Retry-After that carries jitter, so a wave of clients does not come back
as the same wave.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django_redis import get_redis_connection
from redis import RedisError

from chatproject.dbrouter import on_shard
from messaging.realtime.pool import blocking
from messaging.realtime.redis_batch import Script, cache_get_many, redis_batch
from messaging.realtime.tickets import (
    RECONNECT_TTL_SECS,
    REDEEM_LUA,
    SPENT_TTL_SECS,
    Ticket,
    grant_of,
    new_socket_key,
    reconnect_ticket,
    spent_key,
    ticket_location,
)
from teams.auth import Caller
from teams.directory import TeamEntry, team_entry, team_entry_cache_key
from teams.errors import ApiError
from teams.models import Member
from teams.sessions import session_ended_cache_key
from teams.tokens import token_is_live, token_live_cache_key

logger = logging.getLogger(__name__)

# The GCRA check, a Lua function: 0 when `key` admits one more now (and counts it), else
# the seconds until it would.
_GCRA_LUA = """
local function gcra(key, now, interval, burst)
  local tat = tonumber(redis.call('GET', key) or now)
  tat = math.max(tat, now)
  local allow_at = tat - interval * burst
  if now < allow_at then return allow_at - now end
  redis.call('SET', key, tostring(tat + interval), 'EX', math.ceil(interval * burst) + 1)
  return 0
end
"""
# KEYS[1] bucket; ARGV: now (s), emission interval (s), burst capacity.
_GCRA = _GCRA_LUA + "return tostring(gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])))"
# A socket's admission in one call: the accept rate, then its ticket (not spent when refused).
# KEYS: the socket bucket, the ticket, its spent marker; ARGV: now, interval, burst, the
# ticket's nonce, the attempt id, the marker's TTL. A replay of the same attempt returns
# the grant it got without counting the rate again.
# Returns {wait} when refused, {"0"} for an unknown ticket, {"0", grant} when admitted.
_ADMIT = Script(
    _GCRA_LUA
    + REDEEM_LUA
    + """
local again = replayed(KEYS[3], ARGV[5])
if again then return {'0', again} end
local wait = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
if wait > 0 then return {tostring(wait)} end
local grant = redeem(KEYS[2], ARGV[4], KEYS[3], ARGV[5], ARGV[6])
if not grant then return {'0'} end
return {'0', grant}
"""
)
SOCKET_BUCKET = "adm:socket:all"


def _wait_for(key: str, rate_per_sec: float, burst: int) -> float:
    """Seconds to wait before `key` admits one more; 0 means admitted (and counted)."""
    try:
        connection = get_redis_connection("default")
        return float(connection.eval(_GCRA, 1, key, time.time(), 1.0 / rate_per_sec, burst))
    except RedisError as exc:  # admission fails open: an outage must not lock everyone out
        logger.warning("admission not checked: %s", exc)
        return 0.0


def jittered_retry_after(wait: float) -> int:
    """Whole seconds, at least 1, spread over up to twice the wait."""
    return max(1, math.ceil(wait + random.uniform(0, max(wait, 1.0))))


def admit_boot(caller: Caller) -> None:
    for key, rate in (
        (f"adm:boot:{caller.team_id}", settings.BOOT_RATE_PER_TEAM),
        ("adm:boot:all", settings.BOOT_RATE_TOTAL),
    ):
        wait = _wait_for(key, rate, burst=max(1, int(rate)))
        if wait > 0:
            raise ApiError("ratelimited", status=429, retry_after=jittered_retry_after(wait))


@dataclass(frozen=True)
class Admission:
    wait: float  # > 0: refused, come back after this many seconds
    ticket: Ticket | None = None  # None: unknown, expired or used
    team: TeamEntry | None = None
    socket_key: str = ""  # names the socket's reconnect ticket (tickets.reconnect_ticket)
    reconnect_ticket: str = ""  # the socket's first one, resuming from the cursor it came with


async def redeem_ticket(key: str, nonce: str, attempt: str) -> list[Any]:
    """The admission script's reply for one attempt (`attempt`: unique per redemption, so
    a replay of the same call is recognised)."""
    rate = settings.SOCKET_ACCEPT_RATE
    return await redis_batch().run(
        _ADMIT,
        [SOCKET_BUCKET, key, spent_key(key)],
        [time.time(), 1.0 / rate, max(1, int(rate)), nonce, attempt, SPENT_TTL_SECS],
    )


async def admit_connection(ticket_text: str, since: int | None) -> Admission:
    """A new socket's admission, ticket, team and first reconnect ticket, on the event loop:
    two Redis round trips, each shared with every other socket connecting meanwhile
    (redis_batch.py). The database is asked only on a cache miss (or for a session's member).
    Every kind of ticket has its grant checked: an rtm.connect ticket lives a minute, and the
    client picks its `since`, so a revocation within that minute could otherwise be skipped
    by a cursor."""
    location = ticket_location(ticket_text)
    if location is None:
        return Admission(0.0)
    key, nonce = location
    reply = await redeem_ticket(key, nonce, secrets.token_urlsafe(12))
    wait = float(reply[0])
    if wait > 0:
        return Admission(wait)
    if len(reply) < 2:
        return Admission(0.0)
    ticket = grant_of(reply[1])
    if since is not None:
        ticket = replace(ticket, cursor=since)
    batch = redis_batch()
    socket_key = new_socket_key()
    # The first reconnect ticket is stored in the same round trip as the grant's reads:
    # should the grant not hold, it is never sent and expires unused.
    reconnect_key, value, reconnect_text = reconnect_ticket(ticket, socket_key)
    cache_keys = [team_entry_cache_key(ticket.team_id)]
    if ticket.token_id is not None:
        cache_keys.append(token_live_cache_key(ticket.token_id))
    elif ticket.session is not None:
        cache_keys.append(session_ended_cache_key(ticket.session))
    _, cached = await asyncio.gather(
        batch.call("SET", reconnect_key, value, "EX", RECONNECT_TTL_SECS), cache_get_many(cache_keys)
    )
    if ticket.session is not None and cached[1] is not None:  # signed out (teams.sessions)
        return Admission(0.0)
    if cached[0] is not None:
        team = team_entry(ticket.team_id, cached[0])
    else:
        team = await blocking(team_entry)(ticket.team_id)
    live = ticket.token_id is not None and bool(cached[1])
    if not live and not await blocking(grant_holds)(ticket, team):
        return Admission(0.0)
    return Admission(0.0, ticket, team, socket_key, reconnect_text)


def grant_holds(ticket: Ticket, team: TeamEntry) -> bool:
    """Whether the token or session a ticket came from still holds: the token is not revoked
    (a deactivated member's tokens are) or, for a session, the member is active (whether it
    signed out is read from the cache with the team, by admit_connection). A reconnect
    ticket is renewed for as long as its socket lives, long after rtm.connect checked."""
    if ticket.token_id is not None:
        return token_is_live(ticket.token_id)
    with on_shard(team.shard):
        return Member.objects.filter(team_id=team.id, id=ticket.member_id, deleted=False).exists()

"""Admission control for reconnect storms: boots and socket accepts at a bounded rate.

A GCRA token bucket per key in Redis (one atomic script call): per team and overall
for rtm.connect/rtm.start, overall for socket accepts. Beyond the rate the caller gets
429 with a Retry-After that carries jitter, so a wave of clients does not come back
as the same wave.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, replace

from django.conf import settings
from django_redis import get_redis_connection
from redis import RedisError

from chatproject.dbrouter import on_shard
from messaging.realtime.tickets import (
    Ticket,
    issue_reconnect_ticket,
    new_socket_key,
    redeem_ticket,
)
from teams.auth import Caller
from teams.directory import TeamEntry, team_entry
from teams.errors import ApiError
from teams.models import Member
from teams.tokens import token_is_live

logger = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: now (s), emission interval (s), burst capacity.
# Returns 0 when admitted, else the seconds until one more would be.
_GCRA = """
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
local now, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
tat = math.max(tat, now)
local allow_at = tat - interval * burst
if now < allow_at then return tostring(allow_at - now) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'EX', math.ceil(interval * burst) + 1)
return '0'
"""


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


def admit_socket() -> float:
    """0 when a new socket may be accepted now, else the seconds to tell it to wait."""
    rate = settings.SOCKET_ACCEPT_RATE
    return _wait_for("adm:socket:all", rate, burst=max(1, int(rate)))


@dataclass(frozen=True)
class Admission:
    wait: float  # > 0: refused, come back after this many seconds
    ticket: Ticket | None = None  # None: unknown, expired or used
    team: TeamEntry | None = None
    socket_key: str = ""  # names the socket's reconnect ticket (tickets.issue_reconnect_ticket)
    reconnect_ticket: str = ""  # the socket's first one, resuming from the cursor it came with


def admit_connection(ticket_text: str, since: int | None) -> Admission:
    """A new socket's admission, ticket, team and first reconnect ticket: one trip to a
    worker thread per socket (the pool is small, and a reconnect storm queues on it)."""
    wait = admit_socket()
    if wait > 0:
        return Admission(wait)
    ticket = redeem_ticket(ticket_text)
    if ticket is None:
        return Admission(0.0)
    team = team_entry(ticket.team_id)
    # Every kind of ticket: an rtm.connect ticket lives a minute, and the client picks its
    # `since`, so a revocation within that minute could otherwise be skipped by a cursor.
    if not grant_holds(ticket, team):
        return Admission(0.0)
    if since is not None:
        ticket = replace(ticket, cursor=since)
    socket_key = new_socket_key()
    return Admission(0.0, ticket, team, socket_key, issue_reconnect_ticket(ticket, socket_key))


def grant_holds(ticket: Ticket, team: TeamEntry) -> bool:
    """Whether the token or session a ticket came from still holds: the token is not revoked
    (a deactivated member's tokens are) or, for a session, the member is active. A reconnect
    ticket is renewed for as long as its socket lives, long after rtm.connect checked."""
    if ticket.token_id is not None:
        return token_is_live(ticket.token_id)
    with on_shard(team.shard):
        return Member.objects.filter(team_id=team.id, id=ticket.member_id, deleted=False).exists()

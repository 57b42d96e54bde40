"""One-time, short-lived tickets that admit a websocket.

slack_sdk's RTM client opens the URL rtm.connect returned and sends no credentials on
the socket, so the URL itself carries a ticket: random, redeemable once, expiring soon.

A live socket is also sent a `reconnect_url` (as Slack's RTM does), so a dropped client
comes back without calling rtm.connect again: one ticket per socket in Redis, replaced at
each renewal (an older URL stops working), redeemable once.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass

from django.conf import settings
from django_redis import get_redis_connection

from teams.auth import Caller

TICKET_TTL_SECS = 60  # long enough for a slow client to dial, short enough to be useless if leaked
# A reconnect ticket is renewed on the live socket at half this age (see hub), so a client
# always holds one that is valid for a while after it drops.
# Short, since a leaked URL admits until it expires or is used.
RECONNECT_TTL_SECS = settings.RTM_RECONNECT_TTL_SECS
RECONNECT_PREFIX = "r."


@dataclass(frozen=True)
class Ticket:
    team_id: int
    member_id: int
    bot_id: int | None
    kind: str
    token_id: int | None
    cursor: int
    batch_presence_aware: bool = False


def _key(text: str) -> str:
    return f"rtm:ticket:{text}"


def issue_ticket(caller: Caller, cursor: int, *, batch_presence_aware: bool = False) -> str:
    text = secrets.token_urlsafe(24)
    ticket = Ticket(
        caller.team_id,
        caller.member_id,
        caller.bot_id,
        caller.kind,
        caller.token_id,
        cursor,
        batch_presence_aware,
    )
    get_redis_connection("default").set(_key(text), json.dumps(asdict(ticket)), ex=TICKET_TTL_SECS)
    return text


# Compare-and-delete: the socket's current ticket is redeemed once; an older one (renewed
# since) neither redeems nor spends the current one.
_REDEEM_RECONNECT = """
local stored = redis.call('GET', KEYS[1])
if not stored or string.sub(stored, 1, string.len(ARGV[1]) + 1) ~= ARGV[1] .. '|' then return false end
redis.call('DEL', KEYS[1])
return string.sub(stored, string.len(ARGV[1]) + 2)
"""


def _reconnect_key(socket_key: str) -> str:
    return f"rtm:reconnect:{socket_key}"


def new_socket_key() -> str:
    """Names one socket's current reconnect ticket (kept across renewals)."""
    return secrets.token_urlsafe(12)


def issue_reconnect_ticket(ticket: Ticket, socket_key: str) -> str:
    """A ticket for the same grant, for the socket's reconnect_url. It replaces the socket's
    earlier one: only the latest URL a socket was sent admits."""
    nonce = secrets.token_urlsafe(16)
    value = f"{nonce}|{json.dumps(asdict(ticket))}"
    get_redis_connection("default").set(_reconnect_key(socket_key), value, ex=RECONNECT_TTL_SECS)
    return f"{RECONNECT_PREFIX}{socket_key}.{nonce}"


def redeem_ticket(text: str) -> Ticket | None:
    """The ticket's grant, once; None when unknown, expired, renewed or already used."""
    if text.startswith(RECONNECT_PREFIX):
        return _redeem_reconnect(text.removeprefix(RECONNECT_PREFIX))
    if not text or len(text) > 64:
        return None
    raw = get_redis_connection("default").getdel(_key(text))
    return Ticket(**json.loads(raw)) if raw else None


def _redeem_reconnect(text: str) -> Ticket | None:
    socket_key, _, nonce = text.partition(".")
    if not socket_key or not nonce or len(text) > 64:
        return None
    raw = get_redis_connection("default").eval(_REDEEM_RECONNECT, 1, _reconnect_key(socket_key), nonce)
    return Ticket(**json.loads(raw)) if raw else None

"""One-time, short-lived tickets that admit a websocket.

slack_sdk's RTM client opens the URL rtm.connect returned and sends no credentials on
the socket, so the URL itself carries a ticket: random, redeemable once, expiring soon.

A live socket is also sent a `reconnect_url` (as Slack's RTM does), so a dropped client
comes back without calling rtm.connect again: one ticket per socket in Redis, replaced at
each renewal (an older URL stops working), redeemable once.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, fields

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
    """What a ticket grants. A field added later needs a default: a gateway of the release
    before reads tickets the newer one issued (and the newer one reads the older's)."""

    team_id: int
    member_id: int
    bot_id: int | None
    kind: str
    token_id: int | None
    cursor: int
    batch_presence_aware: bool = False
    session: str | None = None  # the signed-in session it came from (teams.sessions)


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
        caller.session,
    )
    get_redis_connection("default").set(_key(text), json.dumps(asdict(ticket)), ex=TICKET_TTL_SECS)
    return text


# Redeeming a ticket, Lua functions for the admission script (admission.py), which checks
# the accept rate and redeems in one call. A plain ticket is deleted as it is read; a
# reconnect ticket is compared and deleted: the socket's current one is redeemed once, an
# older one (renewed since) neither redeems nor spends the current one.
# A redemption carries an attempt id, and a spent ticket leaves a marker naming it (with
# the grant) for SPENT_TTL_SECS: should the call run twice (its pipeline is sent again
# after a lost connection, though Redis had run it), the replay gets the same grant
# instead of finding the ticket spent, and the accept rate is not counted again.
REDEEM_LUA = """
local function replayed(spent, attempt)
  local marker = redis.call('GET', spent)
  if not marker then return false end
  local prefix = attempt .. '|'
  if string.sub(marker, 1, string.len(prefix)) ~= prefix then return false end
  return string.sub(marker, string.len(prefix) + 1)
end
local function redeem(key, nonce, spent, attempt, spent_ttl)
  local stored = redis.call('GET', key)
  if not stored then return false end
  local grant = stored
  if nonce ~= '' then
    if string.sub(stored, 1, string.len(nonce) + 1) ~= nonce .. '|' then return false end
    grant = string.sub(stored, string.len(nonce) + 2)
  end
  redis.call('DEL', key)
  redis.call('SET', spent, attempt .. '|' .. grant, 'EX', spent_ttl)
  return grant
end
"""
SPENT_TTL_SECS = 10  # a replay comes within the client's timeouts of the first run


def spent_key(ticket_key: str) -> str:
    """Where a redeemed ticket's marker is kept (REDEEM_LUA)."""
    return f"{ticket_key}:spent"


def _reconnect_key(socket_key: str) -> str:
    return f"rtm:reconnect:{socket_key}"


def new_socket_key() -> str:
    """Names one socket's current reconnect ticket (kept across renewals)."""
    return secrets.token_urlsafe(12)


def reconnect_ticket(ticket: Ticket, socket_key: str) -> tuple[str, str, str]:
    """A ticket for the same grant, for the socket's reconnect_url: the key and value to
    store (for RECONNECT_TTL_SECS), and the ticket's text. Stored, it replaces the socket's
    earlier one: only the latest URL a socket was sent admits."""
    nonce = secrets.token_urlsafe(16)
    value = f"{nonce}|{json.dumps(asdict(ticket))}"
    return _reconnect_key(socket_key), value, f"{RECONNECT_PREFIX}{socket_key}.{nonce}"


_TOKEN_TEXT = re.compile(r"[A-Za-z0-9_-]+")


def ticket_location(text: str) -> tuple[str, str] | None:
    """Where a ticket is stored and the nonce its stored value must start with ("" for an
    rtm.connect ticket); None when the text cannot be a ticket."""
    if len(text) > 64:
        return None
    if text.startswith(RECONNECT_PREFIX):
        socket_key, _, nonce = text.removeprefix(RECONNECT_PREFIX).partition(".")
        if _TOKEN_TEXT.fullmatch(socket_key) and _TOKEN_TEXT.fullmatch(nonce):
            return _reconnect_key(socket_key), nonce
        return None
    # Only what secrets.token_urlsafe writes: a ':' could otherwise name another key of
    # the same prefix (a ticket's spent marker).
    return (_key(text), "") if _TOKEN_TEXT.fullmatch(text) else None


_TICKET_FIELDS = frozenset(field.name for field in fields(Ticket))


def grant_of(stored: bytes | str) -> Ticket:
    """The grant a redeemed ticket stored. Fields this release does not know are left out:
    during a rolling deploy a newer gateway's ticket (or reconnect URL) reaches an older one,
    which must still admit the socket rather than fail it on an unexpected argument."""
    grant = json.loads(stored)
    return Ticket(**{name: value for name, value in grant.items() if name in _TICKET_FIELDS})

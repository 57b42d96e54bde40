"""One-time, short-lived tickets that admit a websocket.

slack_sdk's RTM client opens the URL rtm.connect returned and sends no credentials on
the socket, so the URL itself carries a ticket: random, redeemable once, expiring soon.

A live socket is also sent a `reconnect_url` (as Slack's RTM does), so a dropped client
comes back without calling rtm.connect again: its ticket is signed rather than stored
(issuing it costs no Redis call per socket), and still redeemable only once.
"""

from __future__ import annotations

import itertools
import json
import secrets
from dataclasses import asdict, astuple, dataclass

from django.core import signing
from django_redis import get_redis_connection

from teams.auth import Caller

TICKET_TTL_SECS = 60  # long enough for a slow client to dial, short enough to be useless if leaked
# A reconnect ticket is renewed on the live socket at half this age (see hub), so a client
# always holds one that is valid for a while after it drops.
RECONNECT_TTL_SECS = 600
RECONNECT_PREFIX = "r."
_RECONNECT_SALT = "rtm.reconnect"


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


# Unique per reconnect ticket (the signature, not the nonce, makes it unforgeable): a random
# prefix per process and a counter, instead of reading os.urandom for every socket.
_NONCE_PREFIX = secrets.token_urlsafe(9)
_nonces = itertools.count()


def issue_reconnect_ticket(ticket: Ticket) -> str:
    """A ticket for the same grant, for the socket's reconnect_url."""
    grant = [*astuple(ticket), f"{_NONCE_PREFIX}{next(_nonces)}"]
    return RECONNECT_PREFIX + signing.dumps(grant, salt=_RECONNECT_SALT)


def redeem_ticket(text: str) -> Ticket | None:
    """The ticket's grant, once; None when unknown, expired or already used."""
    if text.startswith(RECONNECT_PREFIX):
        return _redeem_reconnect(text.removeprefix(RECONNECT_PREFIX))
    if not text or len(text) > 64:
        return None
    raw = get_redis_connection("default").getdel(_key(text))
    return Ticket(**json.loads(raw)) if raw else None


def _redeem_reconnect(text: str) -> Ticket | None:
    if len(text) > 512:
        return None
    try:
        grant = signing.loads(text, salt=_RECONNECT_SALT, max_age=RECONNECT_TTL_SECS)
    except signing.BadSignature:  # forged, altered or expired
        return None
    *fields, nonce = grant
    used = f"rtm:used:{nonce}"
    if not get_redis_connection("default").set(used, 1, nx=True, ex=RECONNECT_TTL_SECS + 1):
        return None
    return Ticket(*fields)

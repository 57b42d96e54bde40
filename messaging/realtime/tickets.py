"""One-time, short-lived tickets that admit a websocket.

slack_sdk's RTM client opens the URL rtm.connect returned and sends no credentials on
the socket, so the URL itself carries a ticket: random, redeemable once, expiring soon.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass

from django_redis import get_redis_connection

from teams.auth import Caller

TICKET_TTL_SECS = 60  # long enough for a slow client to dial, short enough to be useless if leaked


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


def redeem_ticket(text: str) -> Ticket | None:
    """The ticket's grant, once; None when unknown, expired or already used."""
    if not text or len(text) > 64:
        return None
    raw = get_redis_connection("default").getdel(_key(text))
    return Ticket(**json.loads(raw)) if raw else None

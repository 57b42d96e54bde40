"""Online password guessing is throttled: failed password checks are counted per email and
per client address in fixed windows kept in Redis, and past the limit a sign-in (or an
invitation accepted with an existing account's password) is refused before the password
is even checked. A success clears its email's count. Redis away: not throttled (logged),
as API rate limits do; signing in must not depend on it."""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django_redis import get_redis_connection
from redis import RedisError

logger = logging.getLogger(__name__)

WINDOW_SECS = 15 * 60
FAILURES_PER_EMAIL = 10  # one person mistyping, many times over
FAILURES_PER_ADDRESS = 50  # an office behind one address, many people mistyping


def _keys(email: str, address: str) -> tuple[str, str]:
    window = int(time.time() // WINDOW_SECS)
    return f"signin-fail:email:{email.strip().lower()}:{window}", f"signin-fail:addr:{address}:{window}"


def wait_secs(email: str, address: str) -> int:
    """Seconds until this email may try a password again from this address; 0: now."""
    if not settings.RATE_LIMITS_ENABLED:
        return 0
    email_key, address_key = _keys(email, address)
    try:
        by_email, by_address = get_redis_connection("default").mget(email_key, address_key)
    except RedisError as exc:
        logger.warning("sign-in attempts not counted: %s", exc)
        return 0
    if int(by_email or 0) < FAILURES_PER_EMAIL and int(by_address or 0) < FAILURES_PER_ADDRESS:
        return 0
    return WINDOW_SECS - int(time.time() % WINDOW_SECS) + 1


def wait_message(wait_secs: int) -> str:
    return f"Too many failed sign-ins: try again in {math.ceil(wait_secs / 60)} minutes."


def failed(email: str, address: str) -> None:
    if not settings.RATE_LIMITS_ENABLED:
        return
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        for key in _keys(email, address):
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECS * 2)
        pipe.execute()
    except RedisError as exc:
        logger.warning("failed sign-in not counted: %s", exc)


def succeeded(email: str, address: str) -> None:
    if not settings.RATE_LIMITS_ENABLED:
        return
    try:
        get_redis_connection("default").delete(_keys(email, address)[0])
    except RedisError:
        pass  # the count runs out with its window


def client_address(request: object) -> str:
    return str(getattr(request, "META", {}).get("REMOTE_ADDR", "") or "unknown")

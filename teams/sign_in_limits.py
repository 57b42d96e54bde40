"""Online password guessing is throttled: failed password checks are counted in fixed windows
kept in Redis, per email from one client address, per client address, and per email from
everywhere (with a much higher ceiling), and past any of those limits a sign-in (or an
invitation accepted with an existing account's password) is refused before the password is
even checked. Redis away: not throttled (logged), as API rate limits do; signing in must not
depend on it."""

from __future__ import annotations

import ipaddress
import logging
import math
import time

from django.conf import settings
from django.http import HttpRequest
from django_redis import get_redis_connection
from redis import RedisError

logger = logging.getLogger(__name__)

WINDOW_SECS = 15 * 60
# One person mistyping, many times over. Counted per email *and* address, so that someone
# else's wrong guesses from elsewhere cannot pause a person's own sign-in.
FAILURES_PER_EMAIL_FROM_ADDRESS = 10
FAILURES_PER_ADDRESS = 50  # an office behind one address, many people mistyping; or one sprayer
# Guesses at one email spread over many addresses. An address is refused (and stops being
# counted) at its tenth, so reaching this takes failures from ten addresses or more.
FAILURES_PER_EMAIL = 100


def _keys(email: str, address: str) -> tuple[str, str, str]:
    """The (email, address), address and email counters of the current window. The address
    comes before the email in the pair's key and ends at a space, which neither an IP address
    nor REMOTE_ADDR holds: an email made up to contain ":" and part of an address cannot name
    another pair's counter."""
    window = int(time.time() // WINDOW_SECS)
    email = email.strip().lower()
    address = _counted_as(address)
    return (
        f"signin-fail:pair:{window}:{address} {email}",
        f"signin-fail:addr:{address}:{window}",
        f"signin-fail:email:{email}:{window}",
    )


def wait_secs(email: str, address: str) -> int:
    """Seconds until this email may try a password again from this address; 0: now."""
    if not settings.RATE_LIMITS_ENABLED:
        return 0
    try:
        counts = get_redis_connection("default").mget(_keys(email, address))
    except RedisError as exc:
        logger.warning("sign-in attempts not counted: %s", exc)
        return 0
    by_pair, by_address, by_email = (int(count or 0) for count in counts)
    if (
        by_pair < FAILURES_PER_EMAIL_FROM_ADDRESS
        and by_address < FAILURES_PER_ADDRESS
        and by_email < FAILURES_PER_EMAIL
    ):
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
    """Clears only this email's count from this address. The address's count stays: a
    sprayer would otherwise reset it by signing in to an account of their own now and then;
    so does the email's count from everywhere, which the owner's success would otherwise
    reset for whoever is guessing at it from many addresses."""
    if not settings.RATE_LIMITS_ENABLED:
        return
    try:
        get_redis_connection("default").delete(_keys(email, address)[0])
    except RedisError:
        pass  # the count runs out with its window


def client_address(request: HttpRequest | None) -> str:
    """The address the request came from, as the limits (and anything else keyed on the
    client) should see it. Behind CHAT_TRUSTED_PROXY_HOPS reverse proxies, REMOTE_ADDR is the
    nearest proxy's, so the address is the entry that many from the right of X-Forwarded-For:
    the one the outermost trusted proxy appended for whoever connected to it. Entries left of
    it are whatever the client sent and prove nothing. Fewer entries than hops: the request
    did not come through the proxies, and only REMOTE_ADDR is known (as werkzeug's ProxyFix).
    """
    meta = request.META if request is not None else {}
    remote = str(meta.get("REMOTE_ADDR", "") or "unknown")
    hops = settings.TRUSTED_PROXY_HOPS
    if hops > 0 and _is_trusted_proxy(remote):
        # Django joins repeated headers with ",", so a second X-Forwarded-For header counts
        # as more entries on the left, as a proxy appending to the first would make them.
        forwarded = [entry.strip() for entry in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
        if len(forwarded) >= hops and _ip(forwarded[-hops]) is not None:
            return forwarded[-hops]
    return remote


def _is_trusted_proxy(address: str) -> bool:
    """Whether a request from `address` came through the proxies (CHAT_TRUSTED_PROXIES):
    one that reached daphne directly says what it likes in X-Forwarded-For."""
    ip = _ip(address)
    return ip is not None and any(ip in network for network in settings.TRUSTED_PROXIES)


def _counted_as(address: str) -> str:
    """An IPv6 client is counted by its /64: one host is usually given a whole /64, and
    counted address by address it would have 2^64 fresh ones to guess from."""
    ip = _ip(address)
    if ip is None:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, None if it is not one; an IPv4-mapped IPv6 address (a dual-stack
    listener's form) as its IPv4 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip

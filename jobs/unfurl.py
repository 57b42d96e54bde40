"""URL expansion: fetch a link behind its host's breaker and bulkhead, attach the preview.

Results are cached per URL (failures briefly), so a link posted in many messages is
fetched once.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import asdict
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache

from jobs.breakers import BreakerOpen, BreakerPolicy, Outcome, SharedCircuitBreaker
from jobs.bulkhead import BulkheadFull, bulkhead
from jobs.db_threads import on_db_thread
from jobs.fetch import (
    MAX_REDIRECTS,
    ClientFailure,
    FetchRefused,
    IpNetwork,
    RateLimited,
    Redirected,
    UpstreamFailure,
    fetch,
    host_key,
)
from jobs.preview import Preview, merge_oembed, parse_page
from jobs.silent import paced
from jobs.suspect import refuse_early, suspect_guard
from messaging.actions.previews import attach_preview

PREVIEW_CACHE_SECS = 24 * 3600
FAILURE_CACHE_SECS = 300  # a broken link is not refetched for every message that repeats it
BULKHEAD_LEASE_SECS = 30  # longer than any fetch (10 s), so a live call never loses its slot
OEMBED_TYPES = ("application/json", "application/json+oembed", "text/javascript")


def classify(exc: BaseException) -> Outcome:
    """Only the upstream's own failures count against its breaker (a full bulkhead,
    a refused or bad link, a 4xx or a 429 say nothing about its health). A redirect
    elsewhere is an answer: what the other host then does is on its own breaker."""
    if isinstance(exc, Redirected):
        return Outcome.SUCCESS
    return Outcome.FAILURE if isinstance(exc, UpstreamFailure) else Outcome.IGNORED


# One web host runs at most UNFURL_HOST_CONCURRENCY (8) fetches at a time and may get few
# links, so it is judged from as few as 2 calls, tripping at three quarters failing (both
# of 2, 3 of 4), over the last 10 s only: a host that suddenly hangs must not be shielded
# by a minute of earlier successes. A preview taking over 3 s is a failure for a chat
# client anyway, so calls still hanging count from 3 s on, not at their 10 s timeout. One
# probe at a time: a probe of a host that still hangs holds a worker until then.
HOST_POLICY = BreakerPolicy(failure_rate=0.75, min_calls=2, window_secs=10, slow_call_secs=3.0, max_probes=1)


def host_breaker(host: str) -> SharedCircuitBreaker:
    """One breaker per host (and port): what fails together is one web server."""
    return SharedCircuitBreaker(f"unfurl:{host}", HOST_POLICY, classify=classify)


@lru_cache(maxsize=1)
def _allowed_networks() -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in settings.UNFURL_ALLOWED_NETWORKS)


def _cache_key(url: str) -> str:
    return "unfurl:" + hashlib.sha256(url.encode()).hexdigest()


def _fetch(url: str, accept: tuple[str, ...] | None = None) -> tuple[bytes, str, str]:
    """Fetch, each host on its own account: a redirect to another host is followed under
    that host's breaker, bulkheads and suspicion, so a link to a shortener that points at
    a hanging page counts against the page's host, not the shortener's (anyone could
    otherwise open a shortener's circuit for everyone with such links)."""
    redirects_left = MAX_REDIRECTS
    while True:
        try:
            return _fetch_guarded(host_key(url), url, accept, redirects_left)
        except Redirected as hop:
            redirects_left -= hop.hops
            if redirects_left < 0:
                raise FetchRefused(f"more than {MAX_REDIRECTS} redirects") from None
            url = hop.location


def _fetch_guarded(
    host: str, url: str, accept: tuple[str, ...] | None, max_redirects: int
) -> tuple[bytes, str, str]:
    # The breaker goes first: it must see every attempt (and reject a hanging host's)
    # even while the bulkhead is full of that host's stuck calls. Only a link to a host
    # this process just saw suspect, with no suspect thread free, is turned away before
    # it (without a Redis round trip: a flood of such links would each cost three).
    # A call hanging when the circuit opens (or a probe past the slow-call time) stops
    # waiting: the worker it holds is worth more to healthy hosts than the rest of a 10 s
    # timeout. Before that, a call waiting past the suspect bar needs one of the few
    # threads suspect hosts may hold (jobs.suspect), or it stops waiting too; and before
    # the bar a host that is not answering may hold only a few threads (jobs.silent),
    # checked first since it costs no Redis round trip.
    kwargs = {"accept": accept} if accept else {}
    refuse_early(host)
    # A suspect host's call with no suspect thread free is refused before it takes a
    # bulkhead lease (two Redis round trips it would not use).
    with (
        paced(host),
        host_breaker(host).calling() as call,
        suspect_guard(host, call) as guard,
        bulkhead(f"unfurl:{host}", settings.UNFURL_HOST_CONCURRENCY, BULKHEAD_LEASE_SECS),
    ):
        page = fetch(
            url,
            _allowed_networks(),
            total_timeout=settings.UNFURL_TOTAL_TIMEOUT_SECS,
            give_up=guard.should_give_up,
            max_redirects=max_redirects,
            other_hosts=False,
            **kwargs,
        )
    return page.body, page.url, page.charset


def preview_for(url: str) -> Preview | None:
    """The preview of a URL: cached, or fetched now. None when the link has no preview.

    Raises BreakerOpen, BulkheadFull, RateLimited and UpstreamFailure for the job to
    reschedule; bad links (FetchRefused, ClientFailure) are remembered as having none.
    """
    cached = cache.get(_cache_key(url))
    if cached is not None:
        return Preview(**cached) if cached else None
    try:
        body, final_url, charset = _fetch(url)
        preview = parse_page(final_url, body.decode(charset if charset else "utf-8", errors="replace"))
        if preview.oembed_url and not preview.title:
            try:
                oembed, _, _ = _fetch(preview.oembed_url, OEMBED_TYPES)
                preview = merge_oembed(preview, oembed)
            except (FetchRefused, ClientFailure, RateLimited, UpstreamFailure, BulkheadFull, BreakerOpen):
                pass  # the page alone still makes a preview: not worth fetching it again later
    except (FetchRefused, ClientFailure, LookupError):
        cache.set(_cache_key(url), {}, FAILURE_CACHE_SECS)
        return None
    except (RateLimited, UpstreamFailure):
        raise
    if preview.is_empty:
        cache.set(_cache_key(url), {}, FAILURE_CACHE_SECS)
        return None
    cache.set(_cache_key(url), asdict(preview), PREVIEW_CACHE_SECS)
    return preview


def unfurl(shard: str, team_id: int, channel_id: int, ts: int, url: str) -> str:
    """The work of one unfurl job (callable without a broker). Returns what happened."""
    preview = preview_for(url)
    if preview is None:
        return "no preview"
    attachment = preview.as_attachment(url)
    attached = on_db_thread(shard, attach_preview, shard, team_id, channel_id, ts, url, attachment)
    return "attached" if attached else "message changed"

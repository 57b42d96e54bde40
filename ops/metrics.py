"""The metrics every process records (prometheus_client, multiprocess mode: each process
writes its own files under METRICS_DIR and /metrics sums them).

Counters and gauges here are bumped where things happen; what lives in Redis (breakers,
queues, job outcomes) is read when /metrics is scraped (ops.collectors).
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge

HTTP_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter("chat_http_requests", "HTTP requests answered", ["method", "status"])
API_CALLS = Counter("chat_api_calls", "Web API calls by method and error (ok: none)", ["method", "error"])
# livesum: only processes still alive count (ops.collectors prunes the files of dead ones).
OPEN_SOCKETS = Gauge("chat_open_sockets", "Open RTM websockets", multiprocess_mode="livesum")
PRESENCE_SUBSCRIPTIONS = Gauge(
    "chat_presence_subscriptions", "Members watched through presence_sub", multiprocess_mode="livesum"
)
EVENTS_PUBLISHED = Counter("chat_events_published", "Team events published to Redis after commit", ["result"])
_EVENTS_DELIVERED = Counter("chat_events_delivered", "Team events sent to sockets (one per socket)")
SHARD_ERRORS = Counter(
    "chat_shard_errors", "Database errors on a shard ('unreachable' marks it down)", ["shard", "kind"]
)
SHARD_FAST_FAILURES = Counter(
    "chat_shard_fast_failures", "Requests refused at once because their shard is marked down", ["shard"]
)
UNFURL_SUSPECT_REFUSALS = Counter(
    "chat_unfurl_suspect_refusals",
    "Preview fetches refused or stopped for want of a suspect thread (jobs.suspect)",
    ["when"],  # early (no Redis asked), admit, waiting
)


def count_http(method: str, status: int) -> None:
    HTTP_REQUESTS.labels(method if method in HTTP_METHODS else "other", str(status)).inc()


def count_api_call(method: str, error: str) -> None:
    API_CALLS.labels(method, error).inc()


class LoopBatchedCounter:
    """A counter bumped on an event loop's hot path (an event to each socket of a fan-out):
    a multiprocess counter's inc is a locked file write (about 4 us), so increments add up
    in memory and are written at most once per FLUSH_SECS."""

    FLUSH_SECS = 0.5

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.pending = 0
        self.scheduled = False

    def inc(self, amount: int = 1) -> None:
        """Call from the event loop's thread only."""
        self.pending += amount
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(self.FLUSH_SECS, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, 0
        if pending:
            self.counter.inc(pending)


EVENTS_DELIVERED = LoopBatchedCounter(_EVENTS_DELIVERED)

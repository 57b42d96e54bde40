"""This process's memory of circuits it saw open.

While a host is down, every link to it is rejected, and each rejection cost a Redis
script call, about 80 us of the worker's CPU in redis-py alone: bench/unfurl.py, half
of ten hosts hanging, makes 75-110 of them a second, on CPU its healthy hosts' previews
need (with this memory, breakers on went from 87-91% of the all-healthy rate to 89-95%,
together with faster opening, jobs.suspect). So a rejection is remembered here for
SIGHT_SECS, never past the circuit's own retry time, and the calls meanwhile are
rejected without Redis; they are added to the breaker's rejection count every
SIGHT_SECS (jobs.breakers). A manual change (force, reset) made in this process clears
the memory at once; other processes follow within SIGHT_SECS.
"""

from __future__ import annotations

import threading
import time

SIGHT_SECS = 1.0
_KEPT = 10_000  # breakers remembered at most (a worker meets ever new hosts)

_open: dict[str, tuple[float, float]] = {}  # key -> (trusted until (monotonic), retry_at (epoch))
_unreported: dict[str, int] = {}  # key -> rejections made here, not yet counted in Redis
_lock = threading.Lock()


def rejected_here(key: str) -> float | None:
    """The circuit's retry time when this process saw it rejecting within SIGHT_SECS (the
    call is then rejected and counted here), else None: ask Redis."""
    with _lock:
        seen = _open.get(key)
        if seen is None:
            return None
        until, retry_at = seen
        if time.monotonic() >= until:
            del _open[key]
            return None
        _unreported[key] = _unreported.get(key, 0) + 1
        return retry_at


def saw_rejecting(key: str, retry_at: float) -> None:
    trusted = min(SIGHT_SECS, retry_at - time.time())
    if trusted <= 0:
        return
    with _lock:
        _open[key] = (time.monotonic() + trusted, retry_at)
        if len(_open) > _KEPT:
            now = time.monotonic()
            for stale in [k for k, (until, _) in _open.items() if until <= now]:
                del _open[stale]
            if len(_open) > _KEPT:
                _open.clear()  # all fresh: forgetting only costs a Redis call each


def take_unreported() -> dict[str, int]:
    """Rejections made here since the last report, per breaker, for Redis to count."""
    global _unreported
    with _lock:
        taken, _unreported = _unreported, {}
        return taken


def forget(key: str) -> None:
    with _lock:
        _open.pop(key, None)
        _unreported.pop(key, None)

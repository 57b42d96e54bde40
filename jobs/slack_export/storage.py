"""The breaker that file work on the transfer store goes through (CHAT_TRANSFER_DIR: the
archives uploaded for import, the exports written): one for the store, since a full,
read-only or unreachable volume fails every import and export on it at once.

Only the store failing counts: errors that say so (an I/O error, no space, a stale or
unreachable network mount...), or a step slower than the policy allows. A missing file,
a name too long or a damaged archive is that archive's problem: it never trips the
breaker, and the job fails on it as before. A store failure, or the open breaker, pauses
the job at its checkpoint (it is retried later, like a shard that is down), and an
upload is refused with a retryable `service_unavailable` instead of being half written.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from contextlib import contextmanager

from jobs.breakers import BreakerPolicy, Outcome, SharedCircuitBreaker

STORAGE_KEY = "storage:transfers"
_STORE_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ENOTCONN,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ECONNRESET,
        errno.ENOLCK,
    }
)
# Imports and exports are few: a handful of failed steps in two minutes must be enough to
# open it (the default's 10 calls in 30 s would never come). A step (an export segment,
# a run of archive reads) may take long on a healthy store: only minutes count as slow.
STORAGE_POLICY = BreakerPolicy(
    failure_rate=0.5,
    min_calls=3,
    window_secs=120,
    slow_call_secs=120.0,
    open_secs=10.0,
    max_open_secs=300.0,
    max_probes=1,
    probe_lease_secs=300.0,
)


class StorageFailure(OSError):
    """The transfer store failed (not the archive): the job pauses and is retried."""


def is_store_failure(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _STORE_ERRNOS


def _classify(exc: BaseException) -> Outcome:
    return Outcome.FAILURE if is_store_failure(exc) else Outcome.IGNORED


def storage_breaker() -> SharedCircuitBreaker:
    return SharedCircuitBreaker(STORAGE_KEY, STORAGE_POLICY, classify=_classify)


@contextmanager
def _as_storage_failure() -> Iterator[None]:
    try:
        yield
    except StorageFailure:
        raise
    except OSError as exc:
        if not is_store_failure(exc):
            raise
        raise StorageFailure(exc.errno, f"transfer store: {exc.strerror or exc}") from exc


# Reading an archive is a step per file (tens of thousands in a large export), and a step
# through the breaker costs two Redis round trips (about 0.5 ms): of such frequent steps,
# one a second goes through it. The others only turn a store failure into StorageFailure,
# which pauses the job; its retry's first step, through the breaker, counts the failure.
FREQUENT_STEPS_CHECKED_EVERY_SECS = 1.0
_last_checked_step = 0.0


@contextmanager
def on_store(*, frequent: bool = False) -> Iterator[None]:
    """One step of file work on the store, through its breaker (BreakerOpen while it is
    open; `frequent` steps at most once a second). A store failure inside comes out as
    StorageFailure, whatever caught and re-raised it on the way."""
    global _last_checked_step
    if frequent:
        now = time.monotonic()
        if now - _last_checked_step < FREQUENT_STEPS_CHECKED_EVERY_SECS:
            with _as_storage_failure():
                yield
            return
        _last_checked_step = now
    with _as_storage_failure(), storage_breaker().calling():
        yield

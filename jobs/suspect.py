"""A cap on the preview worker's threads that hosts not known to answer in time may hold.

A host is suspect while its breaker is half-open (the call is a probe) or once one of
its calls has waited past UNFURL_SUSPECT_AFTER_SECS for an answer; that is remembered in
Redis, for every worker, until one of its calls answers within the bar (with anything: a
404 in time says the host is not hanging). A call to a suspect host, and any call the
moment it waits that long, must hold one of this process's UNFURL_SUSPECT_THREADS slots,
at most one per host (a probe needs none). With none free to it, it is refused, or stops
waiting (SuspectPoolFull: the job is rescheduled, and the host's breaker does not count
it, since the host may be merely slow). However many hosts hang, after the bar they hold
at most that many threads, and the rest keep serving hosts that answer.

The slots are per process, not in Redis: what they protect is this process's threads
(and a worker that dies frees its slots with it). The host's suspicion is shared.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from django.conf import settings
from django_redis import get_redis_connection
from redis import RedisError

from jobs.breakers import AdmittedCall
from jobs.bulkhead import BulkheadFull
from jobs.fetch import HostAnswered

logger = logging.getLogger(__name__)

# A host that was slow once and then never linked again is forgotten after this long.
SUSPICION_TTL_SECS = 3600
SUSPECT_POOL = "unfurl:suspect"


class SuspectPoolFull(BulkheadFull):
    """Every suspect slot of this worker is taken: try the link later."""


def _refused(when: str) -> SuspectPoolFull:
    """SuspectPoolFull to raise, counted (`when`: early, admit or waiting)."""
    from ops.metrics import UNFURL_SUSPECT_REFUSALS  # only once refused: keeps imports light

    UNFURL_SUSPECT_REFUSALS.labels(when).inc()
    return SuspectPoolFull(SUSPECT_POOL)


# How long this process trusts its own sight of a host's suspicion: long enough that a
# flood of links to hanging hosts is refused without a Redis round trip each, short
# enough that a host another worker cleared is held back here for a moment only.
LOCAL_SIGHT_SECS = 1.0


class _Slots:
    """A counting semaphore of at most one slot per host, that can say whether it is full.

    One per host: one link to each of a few hanging hosts must not be joined by their
    other links, and a host that hangs gains nothing from more than one stuck call here."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.holders: set[str] = set()
        self.lock = threading.Lock()

    def acquire(self, host: str) -> bool:
        with self.lock:
            if len(self.holders) >= self.size or host in self.holders:
                return False
            self.holders.add(host)
            return True

    def release(self, host: str) -> None:
        with self.lock:
            self.holders.discard(host)

    def held_by(self, host: str) -> bool:
        return host in self.holders

    @property
    def full(self) -> bool:
        return len(self.holders) >= self.size


@lru_cache(maxsize=1)
def _slots() -> _Slots:
    return _Slots(settings.UNFURL_SUSPECT_THREADS)


# host -> until when (monotonic) this process trusts its sighting; the most recent last.
# Bounded: a worker sees ever new hosts, and only the latest sightings are worth keeping.
_seen_suspect: OrderedDict[str, float] = OrderedDict()
_seen_lock = threading.Lock()
_SEEN_KEPT = 10_000


def refuse_early(host: str) -> None:
    """SuspectPoolFull at once, without Redis, when host already holds its suspect slot
    here, or every slot is taken and this process saw host suspect within the last
    second: the common case when many links to hanging hosts arrive, each of which would
    only be refused later."""
    slots = _slots()
    if slots.held_by(host) or (slots.full and _seen_suspect.get(host, 0.0) > time.monotonic()):
        raise _refused("early")


_SUSPICION_PREFIX = "unfurl:slow:"


def _suspicion_key(host: str) -> str:
    return f"{_SUSPICION_PREFIX}{host}"


def forget_every_suspicion() -> None:
    """No host suspect any more, for every worker and in this process (tests and
    benchmarks: their local upstreams reuse ports, and a port's suspicion is kept an hour)."""
    connection = get_redis_connection("default")
    stale = list(connection.scan_iter(f"{_SUSPICION_PREFIX}*"))
    if stale:
        connection.delete(*stale)
    with _seen_lock:
        _seen_suspect.clear()


def is_suspect(host: str) -> bool:
    """Whether a call to host waited past the bar since one last answered within it.
    False when Redis cannot say (like the breakers, this fails open)."""
    try:
        suspect = bool(get_redis_connection("default").exists(_suspicion_key(host)))
    except RedisError:
        return False
    _saw(host, suspect)
    return suspect


def _saw(host: str, suspect: bool) -> None:
    with _seen_lock:
        _seen_suspect.pop(host, None)
        if suspect:
            _seen_suspect[host] = time.monotonic() + LOCAL_SIGHT_SECS
            if len(_seen_suspect) > _SEEN_KEPT:
                _seen_suspect.popitem(last=False)  # the oldest sighting


def _suspect(host: str) -> None:
    _saw(host, True)
    try:
        get_redis_connection("default").set(_suspicion_key(host), time.time(), ex=SUSPICION_TTL_SECS)
    except RedisError:
        pass


def _clear(host: str) -> None:
    _saw(host, False)
    try:
        get_redis_connection("default").delete(_suspicion_key(host))
    except RedisError:
        pass


class SuspectGuard:
    """One call's standing: whether it holds a suspect slot, and when it must take one."""

    def __init__(self, host: str, call: AdmittedCall) -> None:
        self.host = host
        self.call = call
        self.holding = False
        self.was_suspect = False

    def _take_slot(self, when: str) -> None:
        if not _slots().acquire(self.host):
            raise _refused(when)
        self.holding = True

    def admit(self) -> None:
        # A probe needs no slot: its breaker lets only max_probes through across every
        # worker, and it stops waiting at the slow-call time. Were it to need one, hanging
        # hosts filling the pool would keep every half-open breaker from ever closing.
        self.was_suspect = self.call.probe or is_suspect(self.host)
        if self.was_suspect and not self.call.probe:
            self._take_slot("admit")

    def should_give_up(self) -> bool:
        """Asked while the host is silent: past the bar, the call needs a slot (raises
        SuspectPoolFull without one); holding one, it stops at the slow-call limit; and
        before that, when its breaker says to stop waiting."""
        waited = time.monotonic() - self.call.started
        if not self.holding and not self.call.probe and waited > settings.UNFURL_SUSPECT_AFTER_SECS:
            _suspect(self.host)
            self.was_suspect = True
            self._take_slot("waiting")
        if self.holding and waited > self.call.breaker.policy.slow_call_secs:
            # The call has failed by the breaker's own rule, whatever it still brings, and
            # the slot is the host's only one here. Waiting on to the fetch's timeout kept
            # the breaker from hearing of it: with one stuck call per host per worker,
            # a host that hung opened its circuit only when those timed out (10 s), and
            # until then held every slot (bench/unfurl.py: circuits opened 10-14 s into
            # the phase, one not at all in 20 s).
            return True
        return self.call.should_give_up()

    def release(self, answered: bool) -> None:
        if self.holding:
            _slots().release(self.host)
            self.holding = False
        in_time = time.monotonic() - self.call.started <= settings.UNFURL_SUSPECT_AFTER_SECS
        if answered and in_time and self.was_suspect:
            _clear(self.host)


@contextmanager
def suspect_guard(host: str, call: AdmittedCall) -> Iterator[SuspectGuard]:
    """Run a fetch under the suspect rule; pass the guard's `should_give_up` to fetch."""
    guard = SuspectGuard(host, call)
    guard.admit()
    answered = False
    try:
        yield guard
        answered = True
    except HostAnswered:
        answered = True  # a quick 404, 429, 5xx or non-page: not hanging, whatever it said
        raise
    finally:
        guard.release(answered)

"""Circuit breakers whose state lives in Redis and is correct across many workers.

pybreaker's API (`call`, `calling`, `current_state`, `open`/`close`/`half_open`,
listeners), with the decisions made by atomic Redis scripts so that, across every
process of every machine:
- the trip rule is a failure rate over a sliding window with a minimum number of calls
  (slow calls count as failures), so one process's successes cannot hide another's
  failures;
- half-open admits at most `max_probes` probes in total, each a lease that expires if
  its worker dies;
- a transition is decided by exactly one script call, so it is logged and reported to
  listeners once;
- every key expires when the breaker goes quiet;
- Redis being unreachable makes the breaker fail open (calls pass) with a warning.

Outcomes are classified by the caller's `classify`: upstream failures count; client
errors and bad input ("ignored") neither count nor reset anything, so no user can open
(or close) a circuit for everyone.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import pybreaker
from django_redis import get_redis_connection
from redis import RedisError

from jobs import breaker_sight
from jobs.breaker_log import log_transition
from jobs.breaker_scripts import ADMIT, CHECK, RECORD

logger = logging.getLogger(__name__)
T = TypeVar("T")

KEY_TTL_SECS = 24 * 3600  # a breaker nobody has used for a day is forgotten
# Every breaker's state key, scored by when it last admitted a call. Per-host breakers
# come and go with the links people post: each admission drops entries a day old (their
# state has expired with them), so the list holds the last day's breakers whether or not
# anyone reads it, and expires once all are quiet.
RECENT_BREAKERS = "brk:recent"
# The set releases before kept instead, pruned only when read (with nobody scraping
# /metrics, every host ever linked): all_breakers still reads and prunes it, for the
# processes of that release during a rolling deploy. Drop it in the release after.
_FORMER_KNOWN_BREAKERS = "brk:known"
CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
FORCED_OPEN, FORCED_CLOSED, DISABLED = "forced-open", "forced-closed", "disabled"


class Outcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"  # client error or bad input: says nothing about the upstream


@dataclass(frozen=True)
class BreakerPolicy:
    """Defaults: open when at least half of >= 10 calls in the last 30 s failed (one slow
    host then trips within seconds, a single failure never does); stay open 5 s, doubling
    on each failed probe up to 5 min, +-20% jitter so workers do not probe in lockstep;
    2 probes in half-open, both must succeed to close. A call slower than 5 s fails, and
    calls still running count as failures from then on; >= min_calls such slow calls
    (running, or ended since the last call answered in time) with none answered in time
    meanwhile open it whatever the window holds (a host that stopped answering is not
    shielded by its earlier successes)."""

    failure_rate: float = 0.5
    min_calls: int = 10
    window_secs: int = 30
    slow_call_secs: float = 5.0
    open_secs: float = 5.0
    max_open_secs: float = 300.0
    max_probes: int = 2
    probe_lease_secs: float = 60.0


class BreakerOpen(pybreaker.CircuitBreakerError):
    """The breaker rejected the call; `retry_at` is when it may admit one again."""

    def __init__(self, key: str, retry_at: float) -> None:
        super().__init__(f"circuit {key} is open")
        self.key = key
        self.retry_at = retry_at


@dataclass(frozen=True)
class BreakerStatus:
    key: str
    state: str
    failure_rate: float
    calls: int  # in the current window
    failures: int
    rejections: int  # since the breaker was created or reset
    deferrals: int  # jobs rescheduled because of a rejection
    trips: int
    retry_at: float
    last_transition: str
    last_transition_at: float


_BUCKETS_PER_WINDOW = 10
_last_redis_warning = 0.0
# The preview worker's threads all fail open at once when Redis goes: one of them warns.
_redis_warning_lock = threading.Lock()


def _warn_redis_down(exc: Exception) -> None:
    global _last_redis_warning
    with _redis_warning_lock:
        if time.monotonic() - _last_redis_warning <= 30:  # one warning per 30 s, not per call
            return
        _last_redis_warning = time.monotonic()
    logger.warning("circuit breakers fail open: Redis unreachable (%s)", exc)


def _keys(key: str) -> list[str]:
    return [f"brk:{key}", f"brk:{key}:window", f"brk:{key}:probes", f"brk:{key}:inflight", RECENT_BREAKERS]


class _StateName:
    """What listeners get as old/new state: pybreaker's listeners read `.name`."""

    def __init__(self, name: str) -> None:
        self.name = name


class SharedCircuitBreaker(pybreaker.CircuitBreaker):
    def __init__(
        self,
        key: str,
        policy: BreakerPolicy | None = None,
        classify: Callable[[BaseException], Outcome] | None = None,
        listeners: list[pybreaker.CircuitBreakerListener] | None = None,
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.key = key
        # pybreaker's constructor reads current_state; ours lives in Redis, which a
        # constructor must not need (Redis may be down).
        self._constructed = False
        # pybreaker's own counters stay unused; every decision is the scripts'.
        super().__init__(
            fail_max=self.policy.min_calls, reset_timeout=self.policy.open_secs, listeners=listeners, name=key
        )
        self._constructed = True
        self.classify = classify or (lambda exc: Outcome.FAILURE)

    # --- the call path ------------------------------------------------------------------

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.calling():
            return func(*args, **kwargs)

    @contextmanager
    def calling(self) -> Iterator[AdmittedCall]:
        token, probe = self._admit()
        started = time.monotonic()
        try:
            yield AdmittedCall(self, probe, started)
        except BaseException as exc:
            slow = time.monotonic() - started > self.policy.slow_call_secs
            self._record(self.classify(exc), token, probe, slow)
            raise
        slow = time.monotonic() - started > self.policy.slow_call_secs
        self._record(Outcome.FAILURE if slow else Outcome.SUCCESS, token, probe, slow)

    def _script_args(
        self, token: str, outcome: str = "", probe: bool = False, slow: bool = False
    ) -> list[Any]:
        policy, jitter = self.policy, random.uniform(0.8, 1.2)
        return [
            time.time(),
            policy.window_secs / _BUCKETS_PER_WINDOW,
            policy.window_secs,
            policy.failure_rate,
            policy.min_calls,
            policy.open_secs * jitter,
            policy.max_open_secs * jitter,
            policy.max_probes,
            policy.probe_lease_secs,
            policy.slow_call_secs,
            KEY_TTL_SECS,
            token,
            outcome,
            "1" if probe else "0",
            "1" if slow else "0",
        ]

    def _admit(self) -> tuple[str | None, bool]:
        """The call's token and whether it is a probe; raises BreakerOpen."""
        if (seen_retry_at := breaker_sight.rejected_here(self.key)) is not None:
            _start_reporting_rejections()
            raise BreakerOpen(self.key, seen_retry_at)
        token = secrets.token_hex(8)
        try:
            decision, _state, retry_at, transition = get_redis_connection("default").eval(
                ADMIT, 5, *_keys(self.key), *self._script_args(token)
            )
        except RedisError as exc:
            _warn_redis_down(exc)
            return None, False
        self._report(_text(transition))
        if _text(decision) == "reject":
            breaker_sight.saw_rejecting(self.key, float(retry_at))
            raise BreakerOpen(self.key, float(retry_at))
        return token, _text(decision) == "probe"

    def _record(self, outcome: Outcome, token: str | None, probe: bool, slow: bool) -> None:
        if token is None:
            return  # admitted while Redis was down: nothing to record it against
        try:
            transition = get_redis_connection("default").eval(
                RECORD, 5, *_keys(self.key), *self._script_args(token, outcome.value, probe, slow)
            )
        except RedisError as exc:
            _warn_redis_down(exc)
            return
        self._report(_text(transition))

    def _report(self, transition: str) -> None:
        """Exactly one process sees each transition: it logs and notifies listeners."""
        if not transition:
            return
        old, new = transition.split("->")
        logger.warning("circuit %s: %s -> %s", self.key, old, new)
        log_transition(self.key, transition)
        for listener in self.listeners:
            listener.state_change(self, _StateName(old), _StateName(new))  # type: ignore[arg-type]

    def rejecting(self, *, judge_stuck: bool = False) -> bool:
        """Whether calls are being rejected now (open or forced open); with `judge_stuck`,
        first trip the breaker if the calls stuck past the slow threshold warrant it.
        False when Redis cannot say (breakers fail open)."""
        try:
            if not judge_stuck:
                return breaker_status(self.key).state in (OPEN, FORCED_OPEN)
            state, transition = get_redis_connection("default").eval(
                CHECK, 5, *_keys(self.key), *self._script_args("")
            )
        except RedisError as exc:
            _warn_redis_down(exc)
            return False
        self._report(_text(transition))
        return _text(state) in (OPEN, FORCED_OPEN)

    # --- pybreaker's inspection and manual control ----------------------------------------

    @property
    def current_state(self) -> str:
        if not self._constructed:
            return CLOSED
        return breaker_status(self.key).state

    def open(self) -> bool:
        force(self.key, FORCED_OPEN)
        return True

    def close(self) -> None:
        force(self.key, FORCED_CLOSED)

    def half_open(self) -> None:
        force(self.key, HALF_OPEN)


_reporter: threading.Thread | None = None
_reporter_lock = threading.Lock()


def _start_reporting_rejections() -> None:
    """Count in Redis, every second, the rejections this process made on its own (one
    thread per process, started by the first; a forked child starts its own)."""
    global _reporter
    with _reporter_lock:
        if _reporter is None or not _reporter.is_alive():
            _reporter = threading.Thread(target=_report_rejections, name="breaker-rejections", daemon=True)
            _reporter.start()


def _report_rejections() -> None:
    while True:
        time.sleep(breaker_sight.SIGHT_SECS)
        counts = breaker_sight.take_unreported()
        if not counts:
            continue
        try:
            pipe = get_redis_connection("default").pipeline(transaction=False)
            for key, count in counts.items():
                pipe.hincrby(_keys(key)[0], "rejections", count)
                pipe.expire(_keys(key)[0], KEY_TTL_SECS)
            pipe.execute()
        except RedisError as exc:
            _warn_redis_down(exc)  # those counts are lost; the rejections were made


@dataclass(frozen=True)
class AdmittedCall:
    """A call the breaker let through, for the caller to ask whether to keep waiting."""

    breaker: SharedCircuitBreaker
    probe: bool
    started: float  # time.monotonic()

    def should_give_up(self) -> bool:
        """True once waiting longer is pointless: the circuit opened since this call was
        admitted (it is rejecting everyone else; past the slow threshold this call's own
        slowness may open it), or this call is a probe already slower than the policy
        allows (it has failed, and the circuit reopens either way)."""
        slow = time.monotonic() - self.started > self.breaker.policy.slow_call_secs
        if slow and self.probe:
            return True
        return self.breaker.rejecting(judge_stuck=slow)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def force(key: str, state: str) -> None:
    """Manual control: forced-open, forced-closed, disabled, or back to automatic."""
    breaker_sight.forget(key)
    connection = get_redis_connection("default")
    state_key = _keys(key)[0]
    previous = _text(connection.hget(state_key, "state") or CLOSED)
    pipe = connection.pipeline(transaction=True)  # one step: no key here is without its expiry
    pipe.zadd(RECENT_BREAKERS, {state_key: time.time()})
    pipe.expire(RECENT_BREAKERS, KEY_TTL_SECS)
    pipe.hset(
        state_key,
        mapping={
            "state": state,
            "open_until": 0,
            "last_transition": f"{previous}->{state}",
            "last_transition_at": time.time(),
        },
    )
    pipe.expire(state_key, KEY_TTL_SECS)
    pipe.execute()
    logger.warning("circuit %s: %s -> %s (manual)", key, previous, state)
    log_transition(key, f"{previous}->{state}", manual=True)


def count_deferral(key: str) -> None:
    """A job put off because this breaker rejected it (kept apart from failures)."""
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        pipe.hincrby(_keys(key)[0], "deferrals", 1)
        pipe.expire(_keys(key)[0], KEY_TTL_SECS)  # after a reset, this may be all the key holds
        pipe.execute()
    except RedisError as exc:
        _warn_redis_down(exc)


def reset(key: str) -> None:
    """Forget everything about a breaker: closed, empty window, no trips."""
    breaker_sight.forget(key)
    connection = get_redis_connection("default")
    connection.delete(*_keys(key)[:4])
    connection.zrem(RECENT_BREAKERS, _keys(key)[0])
    log_transition(key, "reset", manual=True)


def breaker_status(key: str) -> BreakerStatus:
    connection = get_redis_connection("default")
    state_key, window_key, *_ = _keys(key)
    raw = {_text(k): _text(v) for k, v in connection.hgetall(state_key).items()}
    window = {_text(k): int(v) for k, v in connection.hgetall(window_key).items()}
    calls = sum(v for k, v in window.items() if k.endswith(":c"))
    failures = sum(v for k, v in window.items() if k.endswith(":f"))
    state = raw.get("state", CLOSED)
    retry_at = float(raw.get("open_until", 0))
    if state == OPEN and retry_at <= time.time():
        state = HALF_OPEN  # it will admit probes at the next call
    return BreakerStatus(
        key=key,
        state=state,
        failure_rate=round(failures / calls, 3) if calls else 0.0,
        calls=calls,
        failures=failures,
        rejections=int(raw.get("rejections", 0)),
        deferrals=int(raw.get("deferrals", 0)),
        trips=int(raw.get("trips", 0)),
        retry_at=retry_at,
        last_transition=raw.get("last_transition", ""),
        last_transition_at=float(raw.get("last_transition_at", 0)),
    )


def all_breakers() -> list[BreakerStatus]:
    """Every breaker used in the last day, for `manage.py breakers`, admin and metrics."""
    connection = get_redis_connection("default")
    statuses = []
    recent = connection.zrangebyscore(RECENT_BREAKERS, time.time() - KEY_TTL_SECS, "+inf")
    # While processes of the release before still list theirs in the former set (a rolling
    # deploy), both are read; its members are forgotten as they expire, as before.
    former = connection.smembers(_FORMER_KNOWN_BREAKERS)
    for raw_key in sorted({_text(k) for k in recent} | {_text(k) for k in former}):
        if not connection.exists(raw_key):
            connection.zrem(RECENT_BREAKERS, raw_key)  # reset, or expired: forget it
            connection.srem(_FORMER_KNOWN_BREAKERS, raw_key)
            continue
        statuses.append(breaker_status(raw_key.removeprefix("brk:")))
    return statuses

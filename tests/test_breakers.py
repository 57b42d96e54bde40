"""Redis-shared circuit breakers and bulkheads, exercised from several real processes.

Each test answers one of the ways pybreaker's own Redis storage falls short.
"""

import ipaddress
import threading
import time
import uuid

import pytest
from django.conf import settings
from django.test import override_settings
from django_redis import get_redis_connection

from jobs.breakers import (
    CLOSED,
    FORCED_OPEN,
    HALF_OPEN,
    KEY_TTL_SECS,
    OPEN,
    RECENT_BREAKERS,
    BreakerOpen,
    BreakerPolicy,
    Outcome,
    SharedCircuitBreaker,
    all_breakers,
    breaker_status,
    force,
    reset,
)
from jobs.bulkhead import BulkheadFull, bulkhead, in_use
from jobs.fetch import GIVE_UP_CHECK_SECS, UpstreamFailure, fetch
from tests.procs import breaker_calls, hold_bulkhead, run_in_processes
from tests.upstream import running_upstream

PROCESSES = 8
FAST = {
    "failure_rate": 0.5,
    "min_calls": 10,
    "window_secs": 30,
    "open_secs": 0.5,
    "max_open_secs": 4,
    "max_probes": 2,
    "slow_call_secs": 5,
}


def _key() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def _names() -> dict[str, str]:
    return {alias: config["NAME"] for alias, config in settings.DATABASES.items()}


def _transitions(key: str) -> list[str]:
    return [t.decode() for t in get_redis_connection("default").lrange(f"test:transitions:{key}", 0, -1)]


def _barrier(parties: int) -> tuple[str, int]:
    return (f"test:barrier:{uuid.uuid4().hex}", parties)


def _joined(barrier: tuple[str, int]) -> int:
    return int(get_redis_connection("default").get(barrier[0]) or 0)


def _trip(key: str) -> None:
    results = breaker_calls(_names(), key, FAST, ["fail"] * 10, 0)
    assert results == ["called"] * 10
    assert breaker_status(key).state in (OPEN, HALF_OPEN)


def test_half_open_admits_a_bounded_number_of_probes_across_processes() -> None:
    key = _key()
    _trip(key)
    time.sleep(0.8)  # past the (jittered) open time: the next calls may probe
    start = _barrier(PROCESSES)
    results = run_in_processes(
        breaker_calls, [(_names(), key, FAST, ["ok"], start, 2.0) for _ in range(PROCESSES)]
    )
    outcomes = [r[0] for r in results]
    assert outcomes.count("ok") == FAST["max_probes"]
    assert outcomes.count("rejected") == PROCESSES - FAST["max_probes"]
    assert breaker_status(key).state == CLOSED  # both probes succeeded


def test_failures_in_some_processes_are_not_reset_by_successes_in_others() -> None:
    key = _key()
    start = _barrier(4)
    plans = [["fail"] * 5 if n % 2 else ["ok"] * 5 for n in range(4)]  # a 50% failure rate overall
    run_in_processes(breaker_calls, [(_names(), key, FAST, plan, start, 0.01) for plan in plans])
    assert breaker_status(key).state in (OPEN, HALF_OPEN)


def test_a_transition_is_reported_once_not_once_per_process() -> None:
    key = _key()
    start = _barrier(PROCESSES)
    stays_open = {**FAST, "open_secs": 30, "max_open_secs": 60}
    run_in_processes(
        breaker_calls, [(_names(), key, stays_open, ["fail"] * 4, start) for _ in range(PROCESSES)]
    )
    assert _transitions(key) == ["closed->open"]


def test_client_errors_never_open_the_circuit_nor_reset_it() -> None:
    key = _key()
    start = _barrier(4)
    run_in_processes(breaker_calls, [(_names(), key, FAST, ["client"] * 20, start) for _ in range(4)])
    status = breaker_status(key)
    assert status.state == CLOSED and status.calls == 0
    # 4 real failures, then a storm of client errors, then 6 more failures: it still opens.
    breaker_calls(_names(), key, FAST, ["fail"] * 4 + ["client"] * 30 + ["fail"] * 6, 0)
    assert breaker_status(key).state in (OPEN, HALF_OPEN)


def test_slow_calls_count_as_failures() -> None:
    key = _key()
    breaker_calls(_names(), key, {**FAST, "slow_call_secs": 0.01, "min_calls": 3}, ["ok"] * 3, 0, 0.02)
    assert breaker_status(key).state in (OPEN, HALF_OPEN)


def test_open_time_grows_with_repeated_trips_and_probe_failure_reopens() -> None:
    key = _key()
    _trip(key)
    first = breaker_status(key)
    time.sleep(0.8)
    assert breaker_calls(_names(), key, FAST, ["fail"], 0) == ["called"]  # the probe fails
    second = breaker_status(key)
    assert second.state == OPEN and second.trips == 2
    assert second.retry_at - second.last_transition_at > (first.retry_at - first.last_transition_at) * 1.3
    assert breaker_calls(_names(), key, FAST, ["ok"], 0) == ["rejected"]


def test_keys_expire() -> None:
    key = _key()
    breaker_calls(_names(), key, FAST, ["fail", "ok"], 0)
    connection = get_redis_connection("default")
    for suffix in ("", ":window"):
        assert 0 < connection.ttl(f"brk:{key}{suffix}") <= 24 * 3600


def test_a_call_ending_after_its_breaker_was_reset_leaves_a_state_that_expires() -> None:
    """reset() while a call runs: the call's outcome writes the state hash anew, and
    nothing may ever use that breaker again to give it its expiry."""
    key = _key()
    breaker = SharedCircuitBreaker(key, BreakerPolicy(**FAST))
    with breaker.calling():
        reset(key)
    assert 0 < get_redis_connection("default").ttl(f"brk:{key}") <= 24 * 3600


def test_the_list_of_breakers_forgets_those_quiet_for_a_day_without_a_reader() -> None:
    connection = get_redis_connection("default")
    connection.zadd(RECENT_BREAKERS, {"brk:test-quiet-for-two-days": time.time() - 2 * KEY_TTL_SECS})
    key = _key()
    SharedCircuitBreaker(key, BreakerPolicy(**FAST)).call(lambda: 1)
    assert connection.zscore(RECENT_BREAKERS, "brk:test-quiet-for-two-days") is None
    assert connection.zscore(RECENT_BREAKERS, f"brk:{key}") is not None
    assert 0 < connection.ttl(RECENT_BREAKERS) <= KEY_TTL_SECS


def test_breakers_the_release_before_lists_are_listed_too() -> None:
    """A rolling deploy: processes of the release before list their breakers in a set
    (brk:known). The list reads both, and prunes the set as its breakers expire."""
    connection = get_redis_connection("default")
    key = _key()
    SharedCircuitBreaker(key, BreakerPolicy(**FAST)).call(lambda: 1)
    connection.zrem(RECENT_BREAKERS, f"brk:{key}")
    connection.sadd("brk:known", f"brk:{key}", "brk:test-expired-long-ago")
    assert key in [status.key for status in all_breakers()]
    assert connection.smembers("brk:known") == {f"brk:{key}".encode()}
    force(key, FORCED_OPEN)
    assert 0 < connection.ttl(RECENT_BREAKERS) <= KEY_TTL_SECS


def test_redis_down_fails_open_without_raising(caplog) -> None:
    dead = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {**settings.CACHES["default"]["OPTIONS"], "SOCKET_CONNECT_TIMEOUT": 0.2},
        }
    }
    with override_settings(CACHES=dead):
        breaker = SharedCircuitBreaker(_key(), BreakerPolicy(**FAST))  # constructing must not touch Redis
        assert [breaker.call(lambda: "done") for _ in range(3)] == ["done"] * 3
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
    assert "fail open" in caplog.text


def test_manual_control_and_inspection() -> None:
    key = _key()
    breaker = SharedCircuitBreaker(key, BreakerPolicy(**FAST), classify=lambda exc: Outcome.FAILURE)
    assert breaker.call(lambda: 1) == 1
    force(key, "forced-open")
    with pytest.raises(BreakerOpen):
        breaker.call(lambda: 1)
    assert breaker.current_state == "forced-open"
    force(key, "disabled")
    for _ in range(20):
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
    assert breaker.current_state == "disabled"
    reset(key)
    assert breaker.current_state == CLOSED
    breaker.call(lambda: 1)
    assert key in {status.key for status in all_breakers()}


def test_a_process_rejects_for_an_open_circuit_without_redis_for_a_second_at_most() -> None:
    """A flood of calls to an open circuit costs one script call per second per process
    (jobs.breaker_sight); the rejections are still counted, a second or so later, and a
    manual change made here takes effect at once."""
    key = _key()
    breaker = SharedCircuitBreaker(key, BreakerPolicy(**FAST))
    force(key, FORCED_OPEN)
    redis = get_redis_connection("default")

    def script_calls() -> int:
        return int(redis.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))

    with pytest.raises(BreakerOpen):
        breaker.call(lambda: None)  # asks Redis, and remembers the answer
    before = script_calls()
    for _ in range(50):
        with pytest.raises(BreakerOpen) as rejected:
            breaker.call(lambda: None)
    assert script_calls() == before
    assert rejected.value.retry_at > time.time() + 30  # the circuit's own retry time
    deadline = time.monotonic() + 3
    while breaker_status(key).rejections < 51 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert breaker_status(key).rejections == 51  # counted within a second or so
    time.sleep(1.1)
    with pytest.raises(BreakerOpen):
        breaker.call(lambda: None)  # the memory lapsed: Redis again
    assert script_calls() == before + 1
    force(key, "forced-closed")
    assert breaker.call(lambda: 1) == 1  # not rejected from memory


def test_bulkhead_caps_concurrency_across_processes_and_leases_expire() -> None:
    key = _key()
    start = _barrier(6)
    results = run_in_processes(hold_bulkhead, [(_names(), key, 3, start, 2.0) for _ in range(6)])
    assert sorted(results) == ["full"] * 3 + ["ran"] * 3
    # A worker killed while holding a slot leaks nothing once its lease runs out.
    connection = get_redis_connection("default")
    connection.zadd(f"bulkhead:{key}", {"killed-worker": time.time() + 0.3})
    with pytest.raises(BulkheadFull), bulkhead(key, 1, lease_secs=5):
        pass
    time.sleep(0.4)
    with bulkhead(key, 1, lease_secs=5):
        assert in_use(key) == 1
    assert in_use(key) == 0


def test_breakers_command_lists_and_steers() -> None:
    import io
    import json

    from django.core.management import call_command

    key = _key()
    breaker_calls(_names(), key, FAST, ["fail"] * 10, 0)
    out = io.StringIO()
    call_command("breakers", "--json", stdout=out)
    listed = {b["key"]: b for b in json.loads(out.getvalue())}
    assert listed[key]["state"] in (OPEN, HALF_OPEN) and listed[key]["last_transition"] == "closed->open"
    call_command("breakers", "--force-closed", key, stdout=io.StringIO())
    assert breaker_status(key).state == "forced-closed"
    call_command("breakers", "--reset", key, stdout=io.StringIO())
    assert breaker_status(key).state == CLOSED
    table = io.StringIO()
    call_command("breakers", stdout=table)
    assert "key" in table.getvalue()


def test_calls_still_hanging_count_as_failures() -> None:
    """A hanging upstream is judged once its calls pass the slow threshold, not at their timeout."""
    key = _key()
    policy = {**FAST, "min_calls": 3, "slow_call_secs": 0.5}
    start = _barrier(3)
    import threading

    hanging = threading.Thread(
        target=lambda: run_in_processes(breaker_calls, [(_names(), key, policy, ["ok"], start, 4.0)] * 3)
    )
    hanging.start()
    while _joined(start) < 3:
        time.sleep(0.01)
    time.sleep(1.0)  # the three calls have run 1 s: slow, and unfinished
    assert breaker_calls(_names(), key, policy, ["ok"], 0) == ["rejected"]
    assert breaker_status(key).state in (OPEN, HALF_OPEN)
    hanging.join()


def test_a_host_that_stops_answering_is_not_shielded_by_its_earlier_successes() -> None:
    key = _key()
    breaker = SharedCircuitBreaker(key, BreakerPolicy(**{**FAST, "min_calls": 2, "slow_call_secs": 0.5}))
    for _ in range(20):
        breaker.call(lambda: None)  # a healthy host: 20 successes in the window
    hanging = [threading.Thread(target=breaker.call, args=(time.sleep, 1.5)) for _ in range(2)]
    for call in hanging:
        call.start()
    time.sleep(0.8)  # both past the slow threshold, nothing answered since: 2 of 22 failing
    with pytest.raises(BreakerOpen):
        breaker.call(lambda: None)
    for call in hanging:
        call.join()


def test_slow_calls_ending_one_at_a_time_are_not_shielded_by_earlier_successes_either() -> None:
    """A worker lets one call per silent host wait (jobs.suspect), and it ends at the slow
    threshold: two such calls in a row, none answered in time between, open the circuit
    though the window still holds the host's 20 successes (2 of 22 failing)."""
    key = _key()
    breaker = SharedCircuitBreaker(key, BreakerPolicy(**{**FAST, "min_calls": 2, "slow_call_secs": 0.2}))
    for _ in range(20):
        breaker.call(lambda: None)

    def given_up_when_slow() -> None:
        time.sleep(0.25)
        raise RuntimeError("gave up waiting")  # counted as a failure (the default classify)

    with pytest.raises(RuntimeError):
        breaker.call(given_up_when_slow)
    breaker.call(lambda: None)  # the host answered in time: it is not hanging
    with pytest.raises(RuntimeError):
        breaker.call(given_up_when_slow)
    assert breaker_status(key).state == CLOSED
    with pytest.raises(RuntimeError):
        breaker.call(given_up_when_slow)  # the second in a row
    assert breaker_status(key).state == OPEN
    with pytest.raises(BreakerOpen):
        breaker.call(lambda: None)


def test_slow_calls_a_window_apart_are_not_in_a_row() -> None:
    """Two slow links posted far apart (by anyone, to a host that answers everyone else)
    say nothing of the host: only slow calls within a window of each other add up."""
    key = _key()
    policy = {**FAST, "min_calls": 2, "window_secs": 1, "slow_call_secs": 0.2}
    breaker = SharedCircuitBreaker(key, BreakerPolicy(**policy))

    def given_up_when_slow() -> None:
        time.sleep(0.25)
        raise RuntimeError("gave up waiting")

    with pytest.raises(RuntimeError):
        breaker.call(given_up_when_slow)
    time.sleep(1.2)  # past the window
    with pytest.raises(RuntimeError):
        breaker.call(given_up_when_slow)
    assert breaker_status(key).state == CLOSED
    with pytest.raises(RuntimeError):
        breaker.call(given_up_when_slow)  # within the window of the last: two in a row
    assert breaker_status(key).state == OPEN


def test_a_call_hanging_when_its_circuit_opens_stops_waiting() -> None:
    """Another worker's calls open the circuit while this one waits on a silent host:
    it gives up then, not at its 10 s timeout, and its worker is free again."""
    key = _key()
    breaker = SharedCircuitBreaker(key, BreakerPolicy(**FAST))
    local = [ipaddress.ip_network("127.0.0.1/32")]
    with running_upstream() as upstream:
        upstream.mode = "hang"
        opener = threading.Timer(0.6, force, (key, FORCED_OPEN))
        opener.start()
        started = time.monotonic()
        with pytest.raises(UpstreamFailure, match="gave up waiting"), breaker.calling() as call:
            fetch(f"{upstream.base}/stuck", local, total_timeout=10, give_up=call.should_give_up)
        assert time.monotonic() - started < 0.6 + 2 * GIVE_UP_CHECK_SECS + 0.5
        opener.join()
        reset(key)
        assert not breaker.rejecting()
        # A probe of a host that still hangs gives up at the slow-call time: it has failed.
        slow_probe = {**FAST, "slow_call_secs": 0.5, "open_secs": 30, "max_open_secs": 60}  # stays open
        _trip(key)
        time.sleep(0.8)  # past the open time: the next call is a probe
        started = time.monotonic()
        with pytest.raises(UpstreamFailure, match="gave up waiting"):
            with SharedCircuitBreaker(key, BreakerPolicy(**slow_probe)).calling() as call:
                assert call.probe
                fetch(f"{upstream.base}/probe", local, total_timeout=10, give_up=call.should_give_up)
        assert time.monotonic() - started < 0.5 + 2 * GIVE_UP_CHECK_SECS + 0.5
        assert breaker_status(key).state == OPEN  # the failed probe reopened it
        # Every call stuck on the host, none coming to notice: past the slow-call time the
        # stuck calls themselves open the circuit, and stop waiting.
        other = _key()
        stuck_policy = BreakerPolicy(
            **{**FAST, "min_calls": 2, "slow_call_secs": 0.5, "open_secs": 30, "max_open_secs": 60}
        )
        outcomes: list[str] = []

        def stuck_call(n: int) -> None:
            try:
                with SharedCircuitBreaker(other, stuck_policy).calling() as call:
                    fetch(f"{upstream.base}/s{n}", local, total_timeout=10, give_up=call.should_give_up)
            except UpstreamFailure as exc:
                outcomes.append(str(exc))

        started = time.monotonic()
        callers = [threading.Thread(target=stuck_call, args=(n,)) for n in range(2)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert time.monotonic() - started < 0.5 + 2 * GIVE_UP_CHECK_SECS + 1.0
        assert len(outcomes) == 2 and all("gave up waiting" in o for o in outcomes)
        assert breaker_status(other).state == OPEN and breaker_status(other).trips == 1

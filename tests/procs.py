"""Entry points for tests that run work in separate processes (spawned, so each has its
own database connections). Nothing Django-related is imported at module level: a
spawned child imports this module before it has set Django up."""

from __future__ import annotations

from typing import Any


def setup_django(database_names: dict[str, str]) -> None:
    """Configure Django in a child to use the parent's test databases."""
    import chatproject.settings as project_settings

    for alias, name in database_names.items():
        project_settings.DATABASES[alias]["NAME"] = name
    import django

    django.setup()


def post_many(database_names: dict[str, str], token: str, channel: str, tag: str, count: int) -> list[int]:
    setup_django(database_names)
    from chatproject.dbrouter import on_shard
    from messaging.actions.posting import post_message
    from teams.auth import caller_from_token

    caller = caller_from_token(token)
    with on_shard(caller.shard):
        return [post_message(caller, channel, text=f"{tag}-{n}").message.ts for n in range(count)]


def run_in_processes(target: Any, argument_lists: list[tuple], timeout: float = 120) -> list[Any]:
    """Run target(*args) in one spawned process per args; return results in order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(argument_lists), mp_context=context) as pool:
        futures = [pool.submit(target, *args) for args in argument_lists]
        return [future.result(timeout=timeout) for future in futures]


def wait_for_all(start: Any) -> None:
    """Start together: `start` is a time, or (barrier key, parties) in Redis, which every
    process joins once set up (spawning under load can take seconds)."""
    import time

    if not isinstance(start, (list, tuple)):
        time.sleep(max(0.0, start - time.time()))
        return
    from django_redis import get_redis_connection

    key, parties = start
    connection = get_redis_connection("default")
    connection.incr(key)
    connection.expire(key, 300)
    deadline = time.monotonic() + 60
    while int(connection.get(key) or 0) < parties and time.monotonic() < deadline:
        time.sleep(0.005)


def breaker_calls(
    database_names: dict[str, str],
    key: str,
    policy: dict,
    outcomes: list[str],
    start_at: float,
    hold_secs: float = 0.0,
) -> list[str]:
    """Make calls through a shared breaker from this process; report what happened to each.

    `outcomes`: "ok", "fail" (an upstream failure) or "client" (a 4xx: ignored). A
    listener counts the transitions this process reports in Redis.
    """
    setup_django(database_names)
    import time

    import pybreaker
    from django_redis import get_redis_connection

    from jobs.breakers import BreakerOpen, BreakerPolicy, Outcome, SharedCircuitBreaker

    class Upstream(Exception):
        pass

    class ClientError(Exception):
        pass

    class CountTransitions(pybreaker.CircuitBreakerListener):
        def state_change(self, cb, old_state, new_state) -> None:
            get_redis_connection("default").rpush(
                f"test:transitions:{key}", f"{old_state.name}->{new_state.name}"
            )

    breaker = SharedCircuitBreaker(
        key,
        BreakerPolicy(**policy),
        classify=lambda exc: Outcome.IGNORED if isinstance(exc, ClientError) else Outcome.FAILURE,
        listeners=[CountTransitions()],
    )

    def upstream(outcome: str) -> None:
        time.sleep(hold_secs)
        if outcome == "fail":
            raise Upstream()
        if outcome == "client":
            raise ClientError()

    wait_for_all(start_at)
    results = []
    for outcome in outcomes:
        try:
            breaker.call(upstream, outcome)
            results.append("ok")
        except BreakerOpen:
            results.append("rejected")
        except (Upstream, ClientError):
            results.append("called")
    return results


def hold_bulkhead(database_names: dict[str, str], key: str, limit: int, start_at: float, hold: float) -> str:
    setup_django(database_names)
    import time

    from jobs.bulkhead import BulkheadFull, bulkhead

    wait_for_all(start_at)
    try:
        with bulkhead(key, limit, lease_secs=30):
            time.sleep(hold)
            return "ran"
    except BulkheadFull:
        return "full"

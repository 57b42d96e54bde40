"""/healthz, /readyz and /metrics on real daphne processes after real traffic: API calls,
sockets, presence subscriptions, published and delivered events, breakers, jobs."""

import json
import time
import urllib.request
from urllib.error import HTTPError

import pytest
from django.test import Client, override_settings
from django_redis import get_redis_connection
from prometheus_client.parser import text_string_to_metric_families

from jobs.breakers import FORCED_OPEN, SharedCircuitBreaker, force, reset
from tests.conftest import World
from tests.rtm_client import RtmSocket, web
from tests.servers import METRICS_AUTH, running_daphne, running_worker

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture(scope="module")
def daphnes(django_db_setup, django_db_blocker):
    with running_daphne() as first, running_daphne() as second:
        yield first, second


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=10
        ) as response:
            return response.status, response.read()
    except HTTPError as error:
        return error.code, error.read()


def scrape(server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample /metrics shows, keyed by (name, sorted labels)."""
    status, body = _get(f"{server.http}/metrics", METRICS_AUTH)
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(predicate, timeout: float = 20.0, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(step)
    raise AssertionError("timed out")


def test_healthz_and_readyz_when_everything_is_up(daphnes) -> None:
    server = daphnes[0]
    assert _get(f"{server.http}/healthz") == (200, b'{"status": "ok"}')
    status, body = _get(f"{server.http}/readyz")
    report = json.loads(body)
    assert status == 200 and report["status"] == "ok", report
    assert set(report["parts"]) == {"default", "shard_0", "shard_1", "redis"}
    assert all(part["ok"] and part["ms"] < 1000 for part in report["parts"].values())


def test_metrics_count_real_traffic_across_processes(world: World, daphnes) -> None:
    first, second = daphnes
    before = scrape(first)
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    socket = RtmSocket.open(second, bob)  # a socket on the other process: the sum covers both
    assert socket.recv()["type"] == "hello"
    socket.send({"type": "presence_sub", "ids": [world.acme["alice"].user_id, world.acme["carol"].user_id]})
    client = web(first, alice)
    for n in range(3):
        client.chat_postMessage(channel=general, text=f"counted {n}")
    for _ in range(3):
        socket.until(lambda f: f.get("type") == "message")
    status, _ = _get(f"{first.http}/api/chat.postMessage?token={alice}&channel=CNOPE&text=x")
    assert status == 200
    assert _get(f"{first.http}/api/no.such.method")[0] == 404

    def settled(samples) -> bool:  # deliveries are written in batches, twice a second
        subscribed = value(samples, "chat_presence_subscriptions") - value(
            before, "chat_presence_subscriptions"
        )
        delivered = value(samples, "chat_events_delivered_total") - value(
            before, "chat_events_delivered_total"
        )
        return subscribed == 2 and delivered >= 3

    during = wait_for(lambda: (s := scrape(first)) and settled(s) and s)
    assert value(during, "chat_open_sockets") - value(before, "chat_open_sockets") == 1
    assert value(during, "chat_presence_subscriptions") - value(before, "chat_presence_subscriptions") == 2

    def grew(name: str, **labels: str) -> float:
        return value(during, name, **labels) - value(before, name, **labels)

    assert grew("chat_api_calls_total", method="chat.postMessage", error="ok") == 3
    assert grew("chat_api_calls_total", method="chat.postMessage", error="channel_not_found") == 1
    assert grew("chat_api_calls_total", method="rtm.connect", error="ok") == 1
    assert grew("chat_api_calls_total", method="unknown", error="unknown_method") == 1
    assert grew("chat_http_requests_total", method="POST", status="200") >= 4
    assert grew("chat_http_requests_total", method="GET", status="404") == 1
    assert grew("chat_events_published_total", result="published") >= 3
    assert grew("chat_events_delivered_total") >= 3

    socket.close()
    after = wait_for(
        lambda: (
            (s := scrape(first)) and value(s, "chat_open_sockets") == value(before, "chat_open_sockets") and s
        )
    )
    assert value(after, "chat_presence_subscriptions") == value(before, "chat_presence_subscriptions")


def test_metrics_show_breakers_queues_and_job_outcomes(world: World, daphnes) -> None:
    server = daphnes[0]
    key = "metrics:test-upstream"
    force(key, FORCED_OPEN)
    connection = get_redis_connection("default")
    try:
        for _ in range(2):
            with pytest.raises(Exception):  # noqa: B017 - BreakerOpen
                SharedCircuitBreaker(key).call(lambda: None)
        # A job nobody consumes yet waits in its queue.
        from jobs.tasks import prune_event_logs

        prune_event_logs.apply_async(queue="io")
        # The second rejection was made from this process's memory of the open circuit
        # (jobs.breaker_sight), and is counted in Redis within a second or so.
        samples = wait_for(
            lambda: (s := scrape(server)) and value(s, "chat_breaker_rejections_total", key=key) == 2 and s
        )
        assert value(samples, "chat_breaker_state", key=key, state=FORCED_OPEN) == 1
        assert value(samples, "chat_breaker_state", key=key, state="closed") == 0
        assert value(samples, "chat_breaker_rejections_total", key=key) == 2
        assert value(samples, "chat_queue_depth", queue="io") >= 1
        assert value(samples, "chat_redis_up") == 1

        before = value(samples, "chat_job_outcomes_total", task="jobs.prune_event_logs", outcome="succeeded")
        with running_worker("io", concurrency=1):
            wait_for(
                lambda: (
                    value(
                        scrape(server),
                        "chat_job_outcomes_total",
                        task="jobs.prune_event_logs",
                        outcome="succeeded",
                    )
                    > before
                )
            )
        assert value(scrape(server), "chat_queue_depth", queue="io") == 0
    finally:
        reset(key)
        connection.delete("io")


def test_readyz_answers_in_time_when_a_part_hangs(settings) -> None:
    """A Redis that accepts connections and never answers shows as down after the
    readiness timeout; the probe itself does not hang."""
    import socket
    import time

    from ops import health

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes handshakes; nobody ever answers
    settings.REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    settings.READY_TIMEOUT_SECS = 0.5
    health._redis.cache_clear()
    try:
        started = time.monotonic()
        report = health.readiness()
        elapsed = time.monotonic() - started
    finally:
        health._redis.cache_clear()
        silent.close()
    assert elapsed < 1.5, elapsed
    assert report["status"] == "degraded" and not report["parts"]["redis"]["ok"], report
    assert report["parts"]["shard_0"]["ok"] and report["parts"]["default"]["ok"]


def test_metrics_answer_only_the_token(daphnes) -> None:
    """Breaker keys name the hosts members link to: /metrics is not for the public, and
    where a request comes from proves nothing (a reverse proxy makes everyone local)."""
    url = f"{daphnes[0].http}/metrics"
    status, body = _get(url)
    assert status == 401 and b"CHAT_METRICS_TOKEN" in body
    assert _get(url, {"Authorization": "Bearer wrong"})[0] == 401
    status, body = _get(url, METRICS_AUTH)
    assert status == 200 and b"chat_redis_up" in body
    assert _get(f"{daphnes[0].http}/readyz")[0] in (200, 503)  # orchestrators need it

    # With no token configured, nobody, not even this machine.
    with override_settings(METRICS_TOKEN=""):
        local = Client().get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer ")
    assert local.status_code == 401 and local["WWW-Authenticate"].startswith("Bearer")

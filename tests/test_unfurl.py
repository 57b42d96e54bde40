"""Link previews through real Celery workers, a real local upstream, real Redis breakers."""

import time
from contextlib import ExitStack

import pytest
from django.conf import settings

from chatproject.launcher import worker_pools
from jobs.breakers import CLOSED, HALF_OPEN, OPEN, breaker_status
from tests.conftest import World
from tests.servers import running_worker
from tests.upstream import Upstream, holding_upstreams, running_upstream

pytestmark = [
    pytest.mark.django_db(databases="__all__", transaction=True),
    pytest.mark.usefixtures("forget_suspicion"),
]
WORKER_ENV = {
    "CHAT_UNFURL_ALLOWED_NETWORKS": "127.0.0.1/32",
    "CHAT_UNFURL_TIMEOUT_SECS": "2",
    "CHAT_JOB_BASE_BACKOFF_SECS": "0.5",
    "CHAT_JOB_MAX_BACKOFF_SECS": "2",
}


# The preview worker as `./run` starts it (its pool and concurrency).
QUEUES, POOL, CONCURRENCY = worker_pools(settings.UNFURL_WORKER_THREADS)["unfurl"]


def worker_beside_hanging_hosts(
    stack: ExitStack, threads: int, hosts: int, **env: str
) -> tuple[list[Upstream], Upstream]:
    """A preview worker of `threads` threads (fetches waiting up to 8 s, and `env`), with
    `hosts` upstreams that hold every request and one healthy one, all closed by `stack`.
    Its test must be the only one consuming the queue (a module of its own)."""
    env = {**WORKER_ENV, "CHAT_UNFURL_TIMEOUT_SECS": "8", **env}
    stack.enter_context(running_worker(QUEUES, threads, env, POOL))
    return holding_upstreams(stack, hosts)


@pytest.fixture(scope="module")
def workers(django_db_setup):
    with running_worker(QUEUES, CONCURRENCY, WORKER_ENV, POOL) as process:
        yield process


def _previews(api, token: str, channel: str) -> dict[str, list[str]]:
    history = api("conversations.history", token, channel=channel, limit=200)["messages"]
    return {m["text"]: [a.get("from_url") for a in m.get("attachments", [])] for m in history}


def _wait(predicate, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


def test_preview_appears_on_the_message(world: World, api, workers) -> None:
    token, general = world.acme["alice"].token, world.acme.channels["general"]
    with running_upstream() as upstream:
        url = f"{upstream.base}/article"
        posted = api("chat.postMessage", token, channel=general, text=f"look <{url}|this>")
        assert posted["ok"] and "attachments" not in posted["message"]  # the preview comes later
        _wait(lambda: _previews(api, token, general)[f"look <{url}|this>"], 20)
        message = api("conversations.history", token, channel=general)["messages"][0]
        attachment = message["attachments"][0]
        assert attachment["title"] == "Preview of /article" and attachment["text"] == "A page worth a glance"
        assert attachment["image_url"] == f"{upstream.base}/image.png"


def test_breaker_opens_rejects_probes_and_recovers(world: World, api, workers) -> None:
    token, general = world.acme["alice"].token, world.acme.channels["general"]
    with running_upstream() as upstream, running_upstream() as missing:
        key = f"unfurl:127.0.0.1:{upstream.port}"
        upstream.mode, missing.mode = "error", "notfound"
        post_times = []
        for n in range(12):
            started = time.monotonic()
            assert api("chat.postMessage", token, channel=general, text=f"broken {upstream.base}/p{n}")["ok"]
            assert api("chat.postMessage", token, channel=general, text=f"gone {missing.base}/p{n}")["ok"]
            post_times.append(time.monotonic() - started)
        assert max(post_times) < 2.0  # posting never waits for the failing upstream
        _wait(lambda: breaker_status(key).state in (OPEN, HALF_OPEN), 30)
        opened = breaker_status(key)
        # While open, the upstream sees nothing at all.
        time.sleep(max(0.0, opened.retry_at - time.time() - 0.3))
        assert upstream.hits_between(opened.last_transition_at + 0.3, opened.retry_at - 0.1) == 0
        # 404s: the links have no preview, and that host's breaker never opened.
        missing_status = breaker_status(f"unfurl:127.0.0.1:{missing.port}")
        assert missing_status.state == CLOSED and missing_status.calls == 0 and missing_status.trips == 0
        # Recovery, slowly: in half-open only the configured probes get through.
        upstream.mode = "slow"
        _wait(lambda: upstream.hits_between(opened.retry_at - 0.1, time.time() + 1) > 0, 30, 0.05)
        first_probe = min(at for at, _ in upstream.hits if at > opened.retry_at - 0.1)
        time.sleep(1.2)
        assert upstream.hits_between(first_probe - 0.01, first_probe + 1.2) <= 2
        upstream.mode = "ok"
        _wait(lambda: breaker_status(key).state == CLOSED, 30)
        broken = {f"broken {upstream.base}/p{n}" for n in range(12)}
        _wait(lambda: all(_previews(api, token, general).get(text) for text in broken), 60)
        assert all(not _previews(api, token, general)[f"gone {missing.base}/p{n}"] for n in range(12))

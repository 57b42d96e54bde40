"""The preview worker's lookup threads (jobs.fetch) all held by names whose name servers
never answer: another host's link does not wait its whole fetch for one, nor is that
wait held against its host (breaker, suspicion); its job is rescheduled.

The resolver is the one thing played here (as in test_fetch: a name server that never
answers cannot be set up for a test); the lookup pool, the breaker, the suspicion and the
job's rescheduling are the real ones, in this process.
"""

import concurrent.futures
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from chatproject.dbrouter import on_shard
from jobs import fetch, tasks, unfurl
from jobs.breakers import CLOSED, BreakerStatus, breaker_status, reset
from jobs.suspect import is_suspect
from messaging.models import Message
from tests.conftest import World
from tests.test_unfurl import _previews, _wait
from tests.test_unfurl_suspect import suspect_threads
from tests.upstream import running_upstream

pytestmark = [
    pytest.mark.django_db(databases="__all__", transaction=True),
    pytest.mark.usefixtures("forget_suspicion"),
]

SILENT = ".silent.example"


def _on_this_thread(alias: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # The job's database steps on the test's own thread: the worker's database threads
    # would keep connections to the test databases past the test.
    return fn(*args, **kwargs)


def test_a_busy_resolver_is_not_held_against_a_healthy_host(world: World, api, monkeypatch) -> None:
    answer = threading.Event()
    asked: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def name_servers(host: str, *args: Any, **kwargs: Any) -> Any:
        if host.endswith(SILENT):  # silent until the test lets them time out
            asked.append(host)
            answer.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real_getaddrinfo(host, *args, **kwargs)

    seen: list[tuple[str, BreakerStatus, bool]] = []
    real_reschedule = tasks._reschedule

    def reschedule(task: Any, delay: float, first_tried_at: float, attempt: int, why: str) -> Any:
        seen.append((why, breaker_status(f"unfurl:{host}"), is_suspect(host)))
        answer.set()  # the silent name servers time out: the retry finds a thread free
        return real_reschedule(task, delay, first_tried_at, attempt, why)

    monkeypatch.setattr(socket, "getaddrinfo", name_servers)
    monkeypatch.setattr(tasks, "_reschedule", reschedule)
    monkeypatch.setattr(tasks, "on_db_thread", _on_this_thread)
    monkeypatch.setattr(unfurl, "on_db_thread", _on_this_thread)
    monkeypatch.setattr(tasks, "enqueue_unfurls", lambda *args: None)  # the test runs the job
    token, general = world.acme["alice"].token, world.acme.channels["general"]
    # A fetch that outlived the suspect bar and its deadline (2 s) without a thread would
    # have made the host suspect and failed it.
    with suspect_threads(2, timeout=2), running_upstream() as upstream:
        host = f"127.0.0.1:{upstream.port}"
        reset(f"unfurl:{host}")  # a port an earlier test's upstream had
        url = f"{upstream.base}/{uuid.uuid4().hex}"  # no preview cached from an earlier run
        text = f"see {url}"
        assert api("chat.postMessage", token, channel=general, text=text)["ok"]
        shard, team_id = world.acme.team.shard, world.acme.team.id
        with on_shard(shard):
            message = Message.objects.get(team_id=team_id, text=text)
        # Lookups as fetches of those names leave them: each holds its thread after its fetch.
        held = [
            fetch._resolver.submit(socket.getaddrinfo, f"n{n}{SILENT}", 80, type=socket.SOCK_STREAM)
            for n in range(fetch.RESOLVER_THREADS)
        ]
        try:
            _wait(lambda: len(asked) == fetch.RESOLVER_THREADS, 10, 0.01)
            job = tasks.unfurl_link.apply(args=(shard, team_id, message.channel_id, message.ts, url))
            assert job.get() == "attached"  # by its retry, once a thread was free
        finally:
            answer.set()
            concurrent.futures.wait(held)
        assert len(upstream.hits) == 1
    why, status, suspect = seen[0]
    # Put off with its host's breaker and suspicion untouched, for want of a thread.
    assert (status.calls, status.failures, status.state) == (0, 0, CLOSED) and not suspect
    assert why == "resolver busy"
    after = breaker_status(f"unfurl:{host}")
    assert (after.calls, after.failures) == (1, 0)
    assert _previews(api, token, general)[text] == [url]

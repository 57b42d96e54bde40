"""A host that stops answering holds few of the preview worker's threads before anything
knows it hangs (jobs.silent): its other links are refused and rescheduled, and the
threads they would have held serve hosts that answer.

A module of its own for the same reason as test_unfurl_bulkhead: its worker must be the
only one consuming the queue.
"""

import threading
from contextlib import ExitStack

import pytest
from django.test import override_settings

from jobs.breakers import breaker_status
from jobs.silent import HostSilent
from jobs.unfurl import preview_for
from tests.conftest import World
from tests.test_unfurl import _previews, _wait, worker_beside_hanging_hosts
from tests.test_unfurl_suspect import suspect_threads
from tests.upstream import running_upstream

pytestmark = [
    pytest.mark.django_db(databases="__all__", transaction=True),
    pytest.mark.usefixtures("forget_suspicion"),
]

THREADS, SILENT = 8, 2


def test_a_host_that_stops_answering_holds_few_threads(world: World, api) -> None:
    """As many links to one hanging host as the worker has threads, and its bulkhead
    would let it take them all: it gets SILENT, the rest are refused, and a healthy
    host's link finds a thread."""
    token, general = world.acme["alice"].token, world.acme.channels["general"]
    with ExitStack() as stack:
        (hanging,), healthy = worker_beside_hanging_hosts(
            stack,
            THREADS,
            1,
            CHAT_UNFURL_HOST_CONCURRENCY=str(THREADS),
            CHAT_UNFURL_SILENT_HOST_CALLS=str(SILENT),
        )
        for n in range(THREADS):
            assert api("chat.postMessage", token, channel=general, text=f"hangs {hanging.base}/{n}")["ok"]
        _wait(lambda: hanging.hits, 20, 0.02)
        text = f"fine {healthy.base}/page"
        assert api("chat.postMessage", token, channel=general, text=text)["ok"]
        _wait(lambda: _previews(api, token, general).get(text), 20, 0.05)
        # Past the suspect bar its first call holds the host's one suspect slot, and the
        # rest stay refused: it never got more than its silent allowance.
        assert len(hanging.hits) == SILENT


def test_refused_at_once_until_the_host_answers() -> None:
    """The link past the allowance never reaches the host, nor counts against it; once
    the host answers, its links go through again."""
    with suspect_threads(2), override_settings(UNFURL_SILENT_HOST_CALLS=SILENT), running_upstream() as host:
        host.mode = "hold"
        holders = [threading.Thread(target=preview_for, args=(f"{host.base}/{n}",)) for n in range(SILENT)]
        for holder in holders:
            holder.start()
        try:
            _wait(lambda: len(host.hits) == SILENT, 5, 0.01)
            with pytest.raises(HostSilent):
                preview_for(f"{host.base}/more")
            assert len(host.hits) == SILENT
            assert breaker_status(f"unfurl:127.0.0.1:{host.port}").calls == 0
        finally:
            host.mode = "ok"
            host.release.set()
            for holder in holders:
                holder.join()
        assert preview_for(f"{host.base}/more") is not None

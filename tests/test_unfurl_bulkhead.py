"""Hosts that hang must not take every thread of the preview worker: its per-host
bulkhead leaves healthy hosts their share.

A module of its own because the premise (more hanging links than the worker has threads)
holds only when this test's worker is the one consuming the queue: test_unfurl.py's
module-scoped worker, still alive beside it, would double the threads.
"""

import time
from contextlib import ExitStack

import pytest
from django.conf import settings

from tests.conftest import World
from tests.test_unfurl import CONCURRENCY, _previews, _wait, worker_beside_hanging_hosts

pytestmark = [
    pytest.mark.django_db(databases="__all__", transaction=True),
    pytest.mark.usefixtures("forget_suspicion"),
]


def test_hosts_that_hang_leave_threads_to_healthy_hosts(world: World, api) -> None:
    """More links to hanging hosts than the worker has threads: each hanging host holds
    at most its bulkhead's slots, so a healthy host's preview comes while they hang."""
    token, general = world.acme["alice"].token, world.acme.channels["general"]
    cap = settings.UNFURL_HOST_CONCURRENCY
    hanging_hosts = CONCURRENCY // cap - 1  # together they may hold all but `cap` threads
    links_each = CONCURRENCY // hanging_hosts + 1  # more than the threads, together
    assert hanging_hosts * links_each > CONCURRENCY  # without the bulkhead they would hold every one
    # Fetches wait up to 8 s; a hanging host's circuit opens once its stuck calls pass the
    # slow-call limit (3 s), which frees them earlier.
    # A host that stops answering keeps fewer calls than its bulkhead allows (jobs.silent):
    # let it keep them all, for this test is about the bulkhead.
    with ExitStack() as stack:
        hanging, healthy = worker_beside_hanging_hosts(
            stack, CONCURRENCY, hanging_hosts, CHAT_UNFURL_SILENT_HOST_CALLS=str(cap)
        )
        for n in range(links_each):
            for upstream in hanging:
                posted = api("chat.postMessage", token, channel=general, text=f"hangs {upstream.base}/{n}")
                assert posted["ok"]
        _wait(lambda: sum(len(u.hits) for u in hanging) >= hanging_hosts * cap, 20, 0.02)
        first_hang = min(at for u in hanging for at, _ in u.hits)
        text = f"fine {healthy.base}/page"
        assert api("chat.postMessage", token, channel=general, text=text)["ok"]
        _wait(lambda: _previews(api, token, general).get(text), 20, 0.05)
        # Before any thread stuck on a hanging host could have been let go.
        assert time.time() - first_hang < 2.5
        assert all(len(u.hits) == cap for u in hanging)  # the bulkhead held the rest back

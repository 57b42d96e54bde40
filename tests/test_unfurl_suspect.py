"""Hosts not known to answer in time share a few of the preview worker's threads
(jobs.suspect): hanging hosts cannot hold every thread while their breakers judge them,
and a slow but healthy host still gets its previews while that pool has room.

A module of its own for the same reason as test_unfurl_bulkhead: its worker must be the
only one consuming the queue.
"""

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from django.test import override_settings

from jobs import fetch, suspect, unfurl
from jobs.breakers import CLOSED, DISABLED, OPEN, breaker_status, force, reset
from jobs.suspect import SuspectPoolFull, is_suspect
from jobs.unfurl import preview_for
from ops.metrics import UNFURL_SUSPECT_REFUSALS
from tests.conftest import World
from tests.test_unfurl import _previews, _wait, worker_beside_hanging_hosts
from tests.upstream import running_upstream, silent_listener

pytestmark = [
    pytest.mark.django_db(databases="__all__", transaction=True),
    pytest.mark.usefixtures("forget_suspicion"),
]

THREADS, PER_HOST, SUSPECT_THREADS = 8, 2, 2


def test_hanging_hosts_hold_only_the_suspect_threads_past_the_bar(world: World, api) -> None:
    """Links to hanging hosts could take every thread of the worker (their per-host
    bulkheads allow it); one second in, all but the suspect pool's stop waiting, so a
    healthy host's preview comes before any hanging host's breaker opens."""
    token, general = world.acme["alice"].token, world.acme.channels["general"]
    hanging_hosts = THREADS // PER_HOST
    with ExitStack() as stack:
        hanging, healthy = worker_beside_hanging_hosts(
            stack,
            THREADS,
            hanging_hosts,
            CHAT_UNFURL_HOST_CONCURRENCY=str(PER_HOST),
            CHAT_UNFURL_SUSPECT_THREADS=str(SUSPECT_THREADS),
        )
        for n in range(PER_HOST + 1):
            for upstream in hanging:
                posted = api("chat.postMessage", token, channel=general, text=f"hangs {upstream.base}/{n}")
                assert posted["ok"]
        # Their per-host bulkheads let them take every thread (the rest wait in the queue,
        # or, once a host is suspect, are refused): the healthy link comes after them.
        _wait(lambda: sum(len(u.hits) for u in hanging) >= THREADS // 2, 20, 0.02)
        text = f"fine {healthy.base}/page"
        assert api("chat.postMessage", token, channel=general, text=text)["ok"]
        _wait(lambda: _previews(api, token, general).get(text), 20, 0.05)
        # It came while every hanging host's breaker was still closed: the suspect pool,
        # not a breaker letting stuck calls go, left it a thread.
        assert all(breaker_status(f"unfurl:127.0.0.1:{u.port}").trips == 0 for u in hanging)
        # The worker's verdict is shared: every hanging host is suspect for all workers.
        assert all(is_suspect(f"127.0.0.1:{u.port}") for u in hanging)
        assert not is_suspect(f"127.0.0.1:{healthy.port}")


def _refusals() -> float:
    return sum(UNFURL_SUSPECT_REFUSALS.labels(when)._value.get() for when in ("early", "admit", "waiting"))


@contextmanager
def suspect_threads(threads: int, timeout: float = 6) -> Iterator[None]:
    """This process as a preview worker with `threads` suspect slots, fetching locally."""
    with override_settings(
        UNFURL_ALLOWED_NETWORKS=["127.0.0.1/32"],
        UNFURL_SUSPECT_THREADS=threads,
        UNFURL_TOTAL_TIMEOUT_SECS=timeout,
    ):
        unfurl._allowed_networks.cache_clear()
        suspect._slots.cache_clear()
        yield
    unfurl._allowed_networks.cache_clear()
    suspect._slots.cache_clear()


@pytest.fixture
def one_suspect_thread():
    with suspect_threads(1):
        yield


def test_a_slow_host_is_suspect_until_it_answers_in_time(one_suspect_thread) -> None:
    with running_upstream() as slow, running_upstream() as hanging:
        host = f"127.0.0.1:{slow.port}"
        slow.mode = "slow"  # answers in 1.5 s: past the bar, within the slow-call limit
        assert preview_for(f"{slow.base}/a") is not None  # the pool had room: no harm done
        assert is_suspect(host)
        assert breaker_status(f"unfurl:{host}").failures == 0
        # A hanging call takes the one suspect thread once it waits past the bar.
        hanging.mode = "hold"
        holder = threading.Thread(target=preview_for, args=(f"{hanging.base}/x",))
        holder.start()
        _wait(lambda: is_suspect(f"127.0.0.1:{hanging.port}"), 5, 0.05)
        time.sleep(0.1)
        # The slow host is refused at once, without a request, and its breaker holds no
        # grudge: the pool was full, the host did nothing wrong.
        hits, started = len(slow.hits), time.monotonic()
        refusals = _refusals()
        with pytest.raises(SuspectPoolFull):
            preview_for(f"{slow.base}/b")
        assert _refusals() == refusals + 1  # counted for the metrics
        assert time.monotonic() - started < 0.2 and len(slow.hits) == hits
        assert breaker_status(f"unfurl:{host}").failures == 0
        hanging.release.set()
        holder.join()
        # Answering within the bar again clears the suspicion.
        slow.mode = "ok"
        assert preview_for(f"{slow.base}/c") is not None
        assert not is_suspect(host)
        assert preview_for(f"{slow.base}/d") is not None


def test_a_hanging_host_holds_one_suspect_thread_at_most() -> None:
    """Its second link is refused at once: the other slot stays for other hosts."""
    with suspect_threads(2), running_upstream() as hanging, running_upstream() as slow:
        hanging.mode, slow.mode = "hold", "slow"
        holder = threading.Thread(target=preview_for, args=(f"{hanging.base}/x",))
        holder.start()
        try:
            _wait(lambda: is_suspect(f"127.0.0.1:{hanging.port}"), 5, 0.05)
            time.sleep(0.1)
            with pytest.raises(SuspectPoolFull):
                preview_for(f"{hanging.base}/y")
            # A slow host passing the bar still finds a slot.
            assert preview_for(f"{slow.base}/a") is not None
        finally:
            hanging.release.set()
            holder.join()


def test_a_probe_needs_no_suspect_thread() -> None:
    """With every suspect slot held by a hanging host, a half-open breaker still probes
    (its own max_probes bound it) and closes: it would otherwise stay half-open for good."""
    with suspect_threads(1, timeout=12), running_upstream() as hanging, running_upstream() as failing:
        key = f"unfurl:127.0.0.1:{failing.port}"
        failing.mode, hanging.mode = "error", "hold"
        for n in range(2):
            with pytest.raises(Exception, match="500"):
                preview_for(f"{failing.base}/{n}")
        opened = breaker_status(key)
        assert opened.state == OPEN
        # A holder's call stops at the slow-call limit (3 s), before the breaker's open
        # time ends: one after another keep the slot held (their host's own circuit,
        # which two such calls would open, kept out of it).
        force(f"unfurl:127.0.0.1:{hanging.port}", DISABLED)
        done = threading.Event()
        holder = threading.Thread(target=_keep_calling, args=(hanging.base, done))
        holder.start()
        try:
            _wait(lambda: is_suspect(f"127.0.0.1:{hanging.port}"), 5, 0.05)
            failing.mode = "ok"
            time.sleep(max(0.0, opened.retry_at - time.time() + 0.1))
            _wait(lambda: suspect._slots().full, 5, 0.01)
            assert preview_for(f"{failing.base}/probe") is not None
            assert breaker_status(key).state == CLOSED
        finally:
            done.set()
            hanging.release.set()
            holder.join()
            reset(f"unfurl:127.0.0.1:{hanging.port}")


def _keep_calling(base: str, done: threading.Event) -> None:
    n = 0
    while not done.is_set():
        n += 1
        with contextlib.suppress(Exception):  # stopped waiting, refused: call again
            preview_for(f"{base}/{n}")
        time.sleep(0.01)


def test_a_call_holding_a_suspect_thread_stops_at_the_slow_call_limit(one_suspect_thread) -> None:
    """Past that limit the call has failed (the breaker says so of slow calls): it lets
    its slot go and is counted, instead of holding the slot to the fetch's timeout and
    keeping the breaker from hearing of it."""
    with running_upstream() as hanging:
        hanging.mode = "hold"
        try:
            started = time.monotonic()
            with pytest.raises(fetch.UpstreamFailure, match="gave up"):
                preview_for(f"{hanging.base}/x")
            assert 3.0 < time.monotonic() - started < 3.0 + 2 * fetch.GIVE_UP_CHECK_SECS + 0.5
            assert not suspect._slots().held_by(f"127.0.0.1:{hanging.port}")
            assert breaker_status(f"unfurl:127.0.0.1:{hanging.port}").failures == 1
        finally:
            hanging.release.set()


def test_a_host_that_trickles_its_page_is_suspect(one_suspect_thread) -> None:
    """Headers at once, then a byte at a time: past the bar the call needs a suspect
    thread like one still waiting for its headers, and with none free it stops."""
    with running_upstream() as hanging, running_upstream() as trickling:
        hanging.mode, trickling.mode = "hold", "trickle"
        holder = threading.Thread(target=preview_for, args=(f"{hanging.base}/x",))
        holder.start()
        try:
            _wait(lambda: is_suspect(f"127.0.0.1:{hanging.port}"), 5, 0.05)
            with pytest.raises(SuspectPoolFull):  # not the timeout's UpstreamFailure
                preview_for(f"{trickling.base}/a")
            assert is_suspect(f"127.0.0.1:{trickling.port}")
        finally:
            hanging.release.set()
            holder.join()


@pytest.mark.parametrize("stuck", ["connecting", "shaking hands"])
def test_a_host_that_hangs_before_the_request_is_suspect(one_suspect_thread, stuck: str) -> None:
    """Connecting, or the TLS handshake, hanging is judged at the bar like a wait for
    the answer (with no suspect thread free, it stops), not at the 3 s connect limit."""
    with running_upstream() as hanging, silent_listener() as (port, first):
        hanging.mode = "hold"
        holder = threading.Thread(target=preview_for, args=(f"{hanging.base}/x",))
        holder.start()
        try:
            _wait(lambda: is_suspect(f"127.0.0.1:{hanging.port}"), 5, 0.05)
            if stuck == "connecting":
                first.connect(("127.0.0.1", port))  # the one place taken: the next SYN is dropped
            started = time.monotonic()
            with pytest.raises(SuspectPoolFull):  # not the connect limit's UpstreamFailure
                preview_for(f"https://127.0.0.1:{port}/a")
            assert time.monotonic() - started < fetch.CONNECT_TIMEOUT_SECS
            assert is_suspect(f"127.0.0.1:{port}")
        finally:
            hanging.release.set()
            holder.join()


def test_any_answer_in_time_clears_suspicion(one_suspect_thread) -> None:
    """A suspect host that answers at once, even with a 404, is not hanging."""
    with running_upstream() as upstream:
        host = f"127.0.0.1:{upstream.port}"
        upstream.mode = "slow"
        assert preview_for(f"{upstream.base}/a") is not None
        assert is_suspect(host)
        upstream.mode = "notfound"
        assert preview_for(f"{upstream.base}/gone") is None
        assert not is_suspect(host)


def test_local_sightings_are_bounded() -> None:
    """A worker sees ever new hosts: past the bound the oldest sighting goes, at once."""
    for n in range(suspect._SEEN_KEPT + 1):
        suspect._saw(f"host{n}.test:80", True)
    assert len(suspect._seen_suspect) == suspect._SEEN_KEPT
    assert "host0.test:80" not in suspect._seen_suspect
    assert f"host{suspect._SEEN_KEPT}.test:80" in suspect._seen_suspect

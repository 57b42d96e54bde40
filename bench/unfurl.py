"""Link previews when half the hosts hang: breakers on versus off, in one run.

    CHAT_DATA_DIR=./var .venv/bin/python bench/unfurl.py [--hosts 10] [--seconds 20]
        [--workers N] [--page-ms 100]

Runs against the embedded (or configured) Redis and databases of CHAT_DATA_DIR; it
starts its own local upstream web servers on 127.0.0.1 (admitted for this process
only through CHAT_UNFURL_ALLOWED_NETWORKS). Threads of this one process play the
preview worker as `./run` starts it (a Celery threads pool of CHAT_UNFURL_WORKER_THREADS,
the default --workers): each job fetches a fresh URL of a random host through the same
code the Celery task runs (jobs.unfurl.preview_for: breaker, bulkhead, SSRF-safe fetch,
parse). A job the breaker rejects is counted as rescheduled and the thread moves on, as
the task would; so is one refused by a bulkhead, the host's or the suspect pool's
(jobs.suspect: the "busy" column).

The load is closed-loop: a thread takes its next job as soon as one ends, and a rejected
(or bulkhead-refused) job is replaced at once by a fresh one rather than coming back
after its backoff. With breakers on, the healthy-host rate therefore measures the
workers' capacity left to healthy hosts, not the rate a real post stream would offer.

A healthy host answers after --page-ms, as a real one does: a fetch holds its worker for
network time, and that is what hanging hosts take from healthy ones and the breakers
give back. With instant local answers (--page-ms 0) the workers never wait: the bench
is bound by this process's CPU (its one GIL, shared with the upstream servers), and
measures how much CPU a rejection costs next to a local preview rather than worker time.

Prints: healthy-host previews/s with all hosts healthy (baseline), with half hanging
and breakers on, and with half hanging and breakers disabled; the time a call takes to
be rejected by an open breaker; and chat.postMessage p99 with and without links to the
hanging hosts (posting must not wait for previews). The target (breakers on >= 90% of
the baseline) is read over the whole phase, which includes the first second when
hanging calls still hold workers (until they pass the suspect bar); the second half of
each phase, the steady state, is printed beside it.

The ratio depends on what bounds the baseline. With threads to spare for CPU (the
default 32), hanging hosts cost healthy ones the threads they hold: every thread for
the first second, then the suspect pool's. With more threads (--workers 48 here) the
baseline is bound by this process's CPU, and the sick phases then lose by the CPU that
refusing the replaced jobs costs, not by held threads.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
os.environ["CHAT_UNFURL_ALLOWED_NETWORKS"] = "127.0.0.1/32"
os.environ.setdefault("CHAT_RATE_LIMITS", "0")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_phase(bases: list[str], healthy: set[str], seconds: float, workers: int) -> dict[str, float]:
    from jobs.breakers import BreakerOpen
    from jobs.bulkhead import BulkheadFull
    from jobs.fetch import UpstreamFailure
    from jobs.unfurl import preview_for

    counts = {"healthy_done": 0, "sick_failed": 0, "rejected": 0, "busy": 0}
    healthy_at: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()
    stop_at = started + seconds

    def worker() -> None:
        while time.monotonic() < stop_at:
            base = random.choice(bases)
            url = f"{base}/{uuid.uuid4().hex}"  # fresh URL: no cache hit
            try:
                preview_for(url)
                outcome = "healthy_done" if base in healthy else "sick_failed"
            except BreakerOpen:
                outcome = "rejected"
            except BulkheadFull:
                outcome = "busy"  # the task would reschedule itself; the worker moves on
            except UpstreamFailure:
                outcome = "sick_failed"
            with lock:
                counts[outcome] += 1
                if outcome == "healthy_done":
                    healthy_at.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The second half shows the steady state, once breakers have (or have not) opened and
    # the workers stuck on hanging hosts have timed out.
    late = sum(1 for at in healthy_at if at >= started + seconds / 2)
    return {
        **counts,
        "healthy_per_sec": counts["healthy_done"] / seconds,
        "steady_per_sec": late / (seconds / 2),
    }


def reject_latency(samples: int = 2000) -> list[float]:
    from jobs.breakers import FORCED_OPEN, BreakerOpen, force, reset
    from jobs.unfurl import host_breaker

    key_host = f"bench-open-{uuid.uuid4().hex[:6]}"
    force(f"unfurl:{key_host}", FORCED_OPEN)
    breaker = host_breaker(key_host)
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        try:
            breaker.call(lambda: None)
        except BreakerOpen:
            pass
        timings.append((time.perf_counter() - started) * 1000)
    reset(f"unfurl:{key_host}")
    return timings


def post_latency(hanging: list[str], posts: int) -> tuple[list[float], list[float]]:
    from django.test import Client

    from teams.actions import create_team

    created = create_team(
        f"bench-unfurl-{uuid.uuid4().hex[:6]}", "Bench", f"{uuid.uuid4().hex[:8]}@bench.test"
    )
    client, token = Client(), created.owner_token
    general = client.post("/api/conversations.list", HTTP_AUTHORIZATION=f"Bearer {token}").json()["channels"][
        0
    ]["id"]

    def timed(text: str) -> float:
        started = time.perf_counter()
        answer = client.post(
            "/api/chat.postMessage", {"channel": general, "text": text}, HTTP_AUTHORIZATION=f"Bearer {token}"
        ).json()
        assert answer["ok"], answer
        return (time.perf_counter() - started) * 1000

    for n in range(20):  # warm up (connections, caches) before anything is counted
        timed(f"warm-up {n}")
    # Alternated, so that whatever else loads the machine meanwhile weighs on both alike.
    plain: list[float] = []
    with_links: list[float] = []
    for n in range(posts):
        plain.append(timed(f"plain {n}"))
        with_links.append(timed(" ".join(f"{h}/{uuid.uuid4().hex}" for h in hanging[:3])))
    return plain, with_links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, help="default: the preview worker's threads")
    parser.add_argument("--page-ms", type=float, default=100, help="how long a healthy host takes")
    parser.add_argument("--posts", type=int, default=200)
    args = parser.parse_args()

    import django

    django.setup()

    from django.conf import settings

    args.workers = args.workers or settings.UNFURL_WORKER_THREADS

    from contextlib import ExitStack

    from jobs.breakers import DISABLED, force, reset
    from jobs.suspect import forget_every_suspicion
    from tests.upstream import running_upstream

    with ExitStack() as stack:
        upstreams = [stack.enter_context(running_upstream()) for _ in range(args.hosts)]
        for upstream in upstreams:
            upstream.answer_secs = args.page_ms / 1000
        bases = [u.base for u in upstreams]
        keys = [f"unfurl:{b.removeprefix('http://')}" for b in bases]
        sick = upstreams[: args.hosts // 2]
        healthy = {u.base for u in upstreams[args.hosts // 2 :]}

        print(
            f"{args.hosts} hosts answering in {args.page_ms:.0f} ms, {args.workers} workers, "
            f"{settings.UNFURL_HOST_CONCURRENCY} fetches per host, {args.seconds:.0f} s per phase",
            flush=True,
        )
        baseline = run_phase(bases, set(bases), args.seconds, args.workers)
        for upstream in sick:
            # 30 s server-side. A fetch stops waiting after 1 s if no suspect thread is free
            # for it; holding one, once its host's circuit opens (its stuck calls pass the
            # 3 s slow-call limit), or with breakers off at the 10 s deadline.
            upstream.mode = "hang"
        with_breakers = run_phase(bases, healthy, args.seconds, args.workers)
        for key in keys:
            force(key, DISABLED)
        # Both sick phases start as their hosts start hanging: none is suspect yet (the
        # first phase's verdicts would spare the second its first seconds).
        forget_every_suspicion()
        without = run_phase(bases, healthy, args.seconds, args.workers)
        for key in keys:
            reset(key)
        timings = reject_latency()
        plain, with_links = post_latency([u.base for u in sick], args.posts)

    # Only half the hosts are healthy in the sick phases: per healthy host is compared in
    # the second half of each phase (the steady state).
    phases = [
        ("all healthy (baseline)", baseline, args.hosts),
        ("half hanging, breakers on", with_breakers, len(healthy)),
        ("half hanging, breakers off", without, len(healthy)),
    ]
    header = "phase                        previews/s whole  2nd half  per healthy host  rejected  busy"
    print(f"\nload average {' / '.join(f'{n:.1f}' for n in os.getloadavg())}")
    print(f"{header}  sick calls")
    per_host = []
    for name, phase, hosts in phases:
        per_host.append(phase["steady_per_sec"] / hosts)
        print(
            f"{name:28} {phase['healthy_per_sec']:16.1f} {phase['steady_per_sec']:9.1f} "
            f"{per_host[-1]:17.2f} {phase['rejected']:9.0f} {phase['busy']:5.0f} {phase['sick_failed']:11.0f}"
        )
    # The workers, not the hosts, bound the rate: with half the hosts sick, every worker
    # the breakers keep free serves a healthy host, so the healthy-host rate should stay
    # at the all-healthy rate (the target: >= 90% of it).
    steady = [phase["steady_per_sec"] for _, phase, _ in phases]
    whole = [phase["healthy_per_sec"] for _, phase, _ in phases]
    print(
        f"\nhealthy-host previews/s versus the all-healthy baseline (target >= 90% over the whole "
        f"phase): breakers on {whole[1] / whole[0]:.0%} over the whole phase, {steady[1] / steady[0]:.0%} "
        f"in the steady state; breakers off {whole[2] / whole[0]:.0%} / {steady[2] / steady[0]:.0%}"
    )
    print(
        f"per healthy host (steady state): breakers on {per_host[1] / per_host[0]:.0%} of the "
        f"baseline's, breakers off {per_host[2] / per_host[0]:.0%}"
    )
    print(
        f"rejection by an open breaker: p50 {statistics.median(timings):.3f} ms, "
        f"p99 {_percentile(timings, 0.99):.3f} ms (target <= 10 ms)"
    )
    print(
        f"chat.postMessage p99: {_percentile(plain, 0.99):.1f} ms plain, "
        f"{_percentile(with_links, 0.99):.1f} ms with 3 links to hanging hosts "
        f"(p50 {statistics.median(plain):.1f} / {statistics.median(with_links):.1f} ms)"
    )


if __name__ == "__main__":
    main()

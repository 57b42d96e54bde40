"""The load phases of bench/post_path.py: clients posting with chat.postMessage, paced
(open loop, each post due at a fixed time) or back to back, with the CPU and PostgreSQL
sessions and commits each phase cost.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bench.api_client import HTTP_TIMEOUT_SECS, ApiClient, post_message_text
from bench.probes import STATS_SETTLE_SECS, ServerProbe, db_counters
from bench.stats import percentile

START_DELAY_SECS = 0.2  # lets every client thread reach its first sleep before the clock starts
WARMUP_POSTS = 3  # per client before each phase: opens the connection, warms the server's caches
TEXT = "bench: the quick brown fox jumps over the lazy dog"


def post(client: ApiClient, channel: str, n: int) -> str | None:
    """The n-th post of this bench; None when it succeeded, else the error."""
    return post_message_text(client, channel, f"{TEXT} #{n}")


@dataclass(frozen=True)
class Sample:
    due: float  # when the post was due (paced) or sent (max)
    sent: float
    done: float
    error: str | None


@dataclass
class PhaseResult:
    label: str
    paced: bool
    samples: list[Sample]
    start: float
    skipped: int  # paced posts never sent because the client was still waiting for earlier ones
    cpu_pct: dict[str, float] = field(default_factory=dict)  # 100 = one core
    db_per_post: dict[str, tuple[float, float]] = field(default_factory=dict)  # sessions, commits

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.error is None]

    @property
    def posts_per_sec(self) -> float:
        ok = self.ok
        return len(ok) / (max(s.done for s in ok) - self.start) if ok else 0.0

    def latency_ms(self, quantile: float) -> float:
        values = sorted((s.done - s.due) * 1000 for s in self.ok)
        return percentile(values, quantile)

    def send_lag_ms(self, quantile: float) -> float:
        return percentile(sorted((s.sent - s.due) * 1000 for s in self.samples), quantile)

    @property
    def errors(self) -> Counter[str]:
        counts = Counter(s.error for s in self.samples if s.error is not None)
        if self.skipped:
            counts["not_sent_client_behind"] = self.skipped
        return counts


Worker = Callable[[ApiClient, list[Sample]], int]


def paced_workers(
    channels: list[str], clients: int, rate: float, start: float, end: float
) -> Iterator[Worker]:
    """Post n is due at start + n/rate and belongs to client n % clients."""

    def worker(index: int) -> Worker:
        def run(client: ApiClient, out: list[Sample]) -> int:
            for n in itertools.count(index, clients):
                due = start + n / rate
                if due >= end:
                    return 0
                now = time.perf_counter()
                if now > end + HTTP_TIMEOUT_SECS:  # hopelessly behind: count the rest, stop
                    return len(range(n, math.ceil((end - start) * rate), clients))
                if due > now:
                    time.sleep(due - now)
                sent = time.perf_counter()
                error = post(client, channels[n % len(channels)], n)
                out.append(Sample(due, sent, time.perf_counter(), error))
            return 0

        return run

    return (worker(i) for i in range(clients))


def max_workers(channels: list[str], clients: int, end: float) -> Iterator[Worker]:
    counter = itertools.count()  # next() on it is atomic under the GIL

    def run(client: ApiClient, out: list[Sample]) -> int:
        while (sent := time.perf_counter()) < end:
            n = next(counter)
            error = post(client, channels[n % len(channels)], n)
            out.append(Sample(sent, sent, time.perf_counter(), error))
        return 0

    return (run for _ in range(clients))


def run_phase(
    label: str,
    clients: list[ApiClient],
    channels: list[str],
    seconds: float,
    rate: float | None,
    probe: ServerProbe | None,
) -> PhaseResult:
    for i, client in enumerate(clients):  # open every connection and warm the server
        for n in range(WARMUP_POSTS):
            post(client, channels[(i + n) % len(channels)], -1)
    db_before = db_counters()
    start = time.perf_counter() + START_DELAY_SECS
    end = start + seconds
    workers = (
        paced_workers(channels, len(clients), rate, start, end)
        if rate
        else max_workers(channels, len(clients), end)
    )
    outs: list[list[Sample]] = [[] for _ in clients]
    skipped: list[int] = []

    def run(worker: Worker, client: ApiClient, out: list[Sample]) -> None:
        if not rate:
            time.sleep(max(0.0, start - time.perf_counter()))
        skipped.append(worker(client, out))

    threads = [
        threading.Thread(target=run, args=(w, c, o), daemon=True)
        for w, c, o in zip(workers, clients, outs, strict=True)
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, start - time.perf_counter()))
    cpu_before, client_before, wall_before = (
        probe.cpu_seconds() if probe else {},
        os.times(),
        time.perf_counter(),
    )
    join_deadline = end + 2 * HTTP_TIMEOUT_SECS + 1
    for thread in threads:
        thread.join(timeout=max(0.0, join_deadline - time.perf_counter()))
    wall = time.perf_counter() - wall_before
    client_after = os.times()
    cpu_after = probe.cpu_seconds() if probe else {}
    samples = [s for out in outs for s in out]
    result = PhaseResult(label, bool(rate), samples, start, sum(skipped))
    result.cpu_pct = {name: (cpu_after[name] - cpu_before[name]) / wall * 100 for name in cpu_after}
    client_cpu = (client_after.user + client_after.system) - (client_before.user + client_before.system)
    result.cpu_pct["client"] = client_cpu / wall * 100
    # Whatever else runs on the machine competes for the same cores: show it.
    result.cpu_pct["other"] = result.cpu_pct["machine"] - sum(
        v for k, v in result.cpu_pct.items() if k != "machine"
    )
    time.sleep(STATS_SETTLE_SECS)
    db_after = db_counters()
    posts = max(1, len(samples))
    result.db_per_post = {
        alias: (
            (db_after[alias][0] - db_before[alias][0]) / posts,
            (db_after[alias][1] - db_before[alias][1]) / posts,
        )
        for alias in db_after
    }
    if any(t.is_alive() for t in threads):
        print(f"  {label}: some clients were still waiting at the deadline", file=sys.stderr)
    return result

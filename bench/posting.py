"""Posts for the realtime benches, each text carrying the run's tag and when it was sent:
paced (open loop, over several keep-alive connections) or serial. HTTP calls go through
bench/api_client.py's ApiClient.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

from bench.api_client import ApiClient, post_message_text
from bench.stats import percentile


@dataclass(frozen=True)
class PostSample:
    seq: int
    due: float
    sent: float
    done: float
    error: str | None


@dataclass
class PostRun:
    samples: list[PostSample]
    start: float
    end: float

    @property
    def ok(self) -> int:
        return sum(1 for s in self.samples if s.error is None)

    @property
    def errors(self) -> Counter[str]:
        return Counter(s.error for s in self.samples if s.error is not None)

    @property
    def last_done(self) -> float:
        return max((s.done for s in self.samples), default=self.start)

    def achieved_rate(self) -> float:
        span = max(self.end - self.start, self.last_done - self.start, 1e-6)
        return self.ok / span

    def call_ms(self, q: float) -> float:
        return percentile(sorted((s.done - s.sent) * 1000 for s in self.samples if s.error is None), q)

    def lag_ms(self, q: float) -> float:
        """How late posts were sent against their schedule (the poster falling behind)."""
        return percentile(sorted((s.sent - s.due) * 1000 for s in self.samples), q)


def post_text(tag: str, seq: int) -> str:
    """A post's text: the run's tag, its sequence number, and the monotonic time it was sent.

    CLOCK_MONOTONIC is system-wide on Linux, so receivers in other processes on this
    machine subtract it from their own time.monotonic().
    """
    return f"{tag} {seq} {time.monotonic():.6f}"


def paced_posts(
    base_urls: list[str], token: str, channel: str, tag: str, rate: float, seconds: float, threads: int
) -> PostRun:
    """Open loop: post n is due at start + n/rate, on thread n % threads (keep-alive
    connections spread over the daphnes). A post that is late is sent at once."""
    count = max(1, round(rate * seconds))
    start = time.monotonic() + 0.2
    end = start + seconds
    give_up = end + 30.0
    outs: list[list[PostSample]] = [[] for _ in range(threads)]

    def run(index: int) -> None:
        client = ApiClient(base_urls[index % len(base_urls)], token)
        try:
            for n in range(index, count, threads):
                due = start + n / rate
                now = time.monotonic()
                if now > give_up:
                    outs[index].append(PostSample(n, due, now, now, "not_sent_poster_behind"))
                    continue
                if due > now:
                    time.sleep(due - now)
                sent = time.monotonic()
                error = post_message_text(client, channel, post_text(tag, n))
                outs[index].append(PostSample(n, due, sent, time.monotonic(), error))
        finally:
            client.close()

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=max(1.0, give_up + 15 - time.monotonic()))
    return PostRun([s for out in outs for s in out], start, end)


def serial_posts(base_url: str, token: str, channel: str, tag: str, count: int) -> PostRun:
    """`count` posts back to back on one connection."""
    client = ApiClient(base_url, token)
    samples = []
    start = time.monotonic()
    try:
        for n in range(count):
            sent = time.monotonic()
            error = post_message_text(client, channel, post_text(tag, n))
            samples.append(PostSample(n, sent, sent, time.monotonic(), error))
    finally:
        client.close()
    return PostRun(samples, start, time.monotonic())

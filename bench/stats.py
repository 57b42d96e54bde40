"""Latency figures for the benches: nearest-rank percentiles, a mergeable latency histogram
(Hist), their formatting in milliseconds, and timed steps.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Iterator


def percentile(sorted_values: list[float], quantile: float) -> float:
    """Nearest-rank percentile of an already sorted list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, math.ceil(quantile * len(sorted_values)) - 1))
    return sorted_values[rank]


def fmt_ms(value: float) -> str:
    return "-" if math.isnan(value) else (f"{value:.1f}" if value < 100 else f"{value:.0f}")


def quantiles_ms(values_secs: list[float]) -> tuple[float, float, float]:
    """(p50, p99, max) in milliseconds of durations given in seconds."""
    ordered = sorted(v * 1000 for v in values_secs)
    return percentile(ordered, 0.5), percentile(ordered, 0.99), percentile(ordered, 1.0)


class Hist:
    """A latency histogram in milliseconds: 0.1 ms buckets below 100 ms, 10 ms above.

    Small enough to ship between processes whatever the spread; merged by adding.
    """

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: Counter[int] = Counter(counts or {})

    @staticmethod
    def key(ms: float) -> int:
        ms = max(0.0, ms)
        return int(ms * 10) if ms < 100 else 1000 + int((ms - 100) / 10)

    @staticmethod
    def value(key: int) -> float:
        return key / 10 + 0.05 if key < 1000 else 100 + (key - 1000) * 10 + 5

    def add(self, ms: float) -> None:
        self.counts[self.key(ms)] += 1

    def merge(self, other: dict[int, int]) -> None:
        self.counts.update(other)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float:
        total = self.total
        if not total:
            return float("nan")
        rank = max(1, math.ceil(q * total))
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                return self.value(key)
        return self.value(max(self.counts))


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"{label} ...", end=" ", flush=True)
    yield
    print(f"{time.monotonic() - started:.1f} s", flush=True)

"""A cap on the preview worker's threads that one host may hold while it is not answering.

A host that starts hanging is not suspect (jobs.suspect) until one of its calls has
waited past the suspect bar, and until then its bulkhead lets it hold as many threads as
pick its links: with half the hosts hanging, every thread of the worker within a few
hundred milliseconds, each for the whole second. So here a host with
calls in flight, none of which answered since the oldest of them started, may have at
most UNFURL_SILENT_HOST_CALLS. A host that answers (any answer: jobs.fetch.HostAnswered)
is never held to that: only one's first links, before its first answer, and one that
stopped answering. That one holds that many threads until the bar, and its other links
are refused at once (rescheduled, and not held against it by its breaker: it may merely
be slow to start).

Per process, like the suspect slots: what it protects is this process's threads.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings

from jobs.bulkhead import BulkheadFull
from jobs.fetch import HostAnswered

SILENT_POOL = "unfurl:silent"


class HostSilent(BulkheadFull):
    """The host has as many calls in flight here as it may while none of them answers."""


@dataclass
class _Host:
    started: dict[int, float] = field(default_factory=dict)  # call -> monotonic start
    answered_at: float = float("-inf")  # when its latest call answered (monotonic)

    def allows_another(self, silent_calls: int) -> bool:
        """Fewer calls in flight than a silent host may have, or the host answered since
        the oldest of them started: it is answering, however slowly its pages come."""
        return len(self.started) < silent_calls or self.answered_at >= min(self.started.values())


# Only hosts with calls in flight: an answer matters only to calls started before it, so
# the entry goes with the host's last call and the dict stays as small as the threads.
_hosts: dict[str, _Host] = {}
_lock = threading.Lock()
_calls = itertools.count()


@contextmanager
def paced(host: str) -> Iterator[None]:
    """Run a call to host as one of its calls in flight; HostSilent if it may have no more.
    The call answered when the block ends normally or with HostAnswered."""
    with _lock:
        entry = _hosts.setdefault(host, _Host())
        if not entry.allows_another(settings.UNFURL_SILENT_HOST_CALLS):
            raise HostSilent(SILENT_POOL)
        call = next(_calls)
        entry.started[call] = time.monotonic()
    answered = False
    try:
        yield
        answered = True
    except HostAnswered:
        answered = True
        raise
    finally:
        with _lock:
            del entry.started[call]
            if answered:
                entry.answered_at = time.monotonic()
            if not entry.started:
                _hosts.pop(host, None)

"""RTM receivers for the realtime benches: many sockets per process, in a few processes
(multiprocessing, spawn; bench/receiver_process.py runs in each) driven over pipes; and
waiting on what they receive, with the team's event log to explain server errors.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from bench.bulk_team import BenchTeam
from bench.cluster import Daphne
from bench.receiver_process import SocketSpec, receiver_main

REPLY_TIMEOUT_SECS = 600.0


class Receivers:
    """A few receiver processes, each holding many RTM sockets, driven over pipes.

    Commands go to every process at once and the replies are gathered, so all processes
    act together (e.g. a reconnect storm starts at one shared monotonic instant).
    """

    def __init__(
        self, specs: list[SocketSpec], processes: int, sample_every: int = 1, native: bool = False
    ) -> None:
        context = multiprocessing.get_context("spawn")
        processes = max(1, min(processes, len(specs)))
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for i in range(processes):
            parent, child = context.Pipe()
            process = context.Process(
                target=receiver_main,
                args=(child, specs[i::processes], sample_every, native),
                name=f"rtm-receiver-{i}",
                daemon=True,
            )
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def call(self, command: str, timeout: float = REPLY_TIMEOUT_SECS, **args: Any) -> list[dict[str, Any]]:
        for pipe in self.pipes:
            pipe.send((command, args))
        replies = []
        deadline = time.monotonic() + timeout
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            while not pipe.poll(0.2):
                if not process.is_alive():
                    raise SystemExit(f"{process.name} died (exit code {process.exitcode})")
                if time.monotonic() > deadline:
                    raise SystemExit(f"{process.name} did not answer {command!r} within {timeout:g} s")
            reply = pipe.recv()
            if "crash" in reply:
                raise SystemExit(f"{process.name} failed on {command!r}:\n{reply['crash']}")
            replies.append(reply)
        return replies

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("quit", {}))
        for process in self.processes:
            process.join(timeout=15)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for pipe in self.pipes:
            pipe.close()

    def __enter__(self) -> Receivers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_counters(replies: list[dict[str, Any]], key: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for reply in replies:
        total.update(reply.get(key, {}))
    return total


def socket_specs(
    tokens: list[str], daphnes: list[Daphne], connect_args: dict[str, Any] | None = None
) -> list[SocketSpec]:
    """Sockets spread over the daphnes in equal blocks of consecutive indexes. Not
    round-robin: with as many receiver processes as daphnes, a receiver (which takes every
    n-th socket) would hold only one daphne's sockets, and the sampled sockets (every
    10th by default) would all be on the first daphne, so latency would be measured on
    one daphne and parsed by one receiver."""
    count = max(1, len(tokens))
    return [
        SocketSpec(i, t, daphnes[i * len(daphnes) // count].http, dict(connect_args or {}))
        for i, t in enumerate(tokens)
    ]


def wait_for_delivery(
    receivers: Receivers, expected: int, stall_secs: float, cap_secs: float
) -> tuple[int, float]:
    """Poll until `expected` messages are delivered in total, nothing has arrived for
    `stall_secs`, or `cap_secs` have passed. Returns (delivered, when the last arrived)."""
    started = time.monotonic()
    last_total, last_change = -1, started
    while True:
        total = sum(r["delivered"] for r in receivers.call("progress"))
        now = time.monotonic()
        if total != last_total:
            last_total, last_change = total, now
        if total >= expected or now - last_change > stall_secs or now - started > cap_secs:
            return total, last_change
        time.sleep(0.2)


def wait_for_quiet(receivers: Receivers, quiet_secs: float = 2.0, cap_secs: float = 120.0) -> float:
    """Wait until no frame has arrived on any socket for `quiet_secs`; returns seconds waited."""
    started = time.monotonic()
    last, since = -1, started
    while time.monotonic() - started < cap_secs:
        frames = sum(r["frames"] for r in receivers.call("progress"))
        if frames != last:
            last, since = frames, time.monotonic()
        elif time.monotonic() - since >= quiet_secs:
            break
        time.sleep(0.25)
    return time.monotonic() - started


def event_log_state(team: BenchTeam) -> dict[str, int]:
    """The team's event log: its head (last_event_id) and the ids it holds."""
    from django.db.models import Count, Max, Min

    from chatproject.dbrouter import on_shard
    from messaging.models import Event, EventSequence

    with on_shard(team.shard):
        head = (
            EventSequence.objects.filter(team_id=team.team_id).values_list("last_event_id", flat=True).first()
        )
        span = Event.objects.filter(team_id=team.team_id).aggregate(
            first=Min("event_id"), last=Max("event_id"), rows=Count("id")
        )
    return {"head": int(head or 0), **{k: int(v or 0) for k, v in span.items()}}


def describe_error_samples(replies: list[dict[str, Any]], team: BenchTeam) -> list[str]:
    """Lines about error frames the server sent (e.g. resync_required), with the log's state."""
    samples = sorted((s for r in replies for s in r.get("error_samples", [])), key=lambda s: s["at"])
    if not samples:
        return []
    log = event_log_state(team)
    cursors = sorted(s["cursor"] for s in samples)
    spread = samples[-1]["at"] - samples[0]["at"]
    return [
        f"server error frames: {dict(merge_counters(replies, 'server_errors'))}; sampled sockets' cursors "
        f"{cursors[0]}..{cursors[-1]}, within {spread:.2f} s of each other; the event log holds ids "
        f"{log['first']}..{log['last']} ({log['rows']} rows), head {log['head']}"
    ]

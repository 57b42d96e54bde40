"""What the server's processes cost, measured from outside: CPU time per process group
(ServerProbe; CpuMeter adds the bench's own) and PostgreSQL's session and commit counters.
"""

from __future__ import annotations

import contextlib
import os
import time

import psutil

STATS_SETTLE_SECS = 1.1  # PostgreSQL backends flush their statistics at most once a second


def _cmdline(process: psutil.Process) -> list[str]:
    with contextlib.suppress(psutil.Error):
        return process.cmdline()
    return []


def _port_arg(cmdline: list[str]) -> str | None:
    for flag in ("-p", "--port"):
        if flag in cmdline[:-1]:
            return cmdline[cmdline.index(flag) + 1]
    return None


def _listens_on(process: psutil.Process, port: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return any(
            c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
            for c in process.net_connections("tcp")
        )
    return False


class ServerProbe:
    """CPU time of the server's processes (daphne, Celery, PostgreSQL, Redis) on this machine.

    A group's CPU is its root's own time, plus what its exited children used (the
    kernel adds that to the root once it reaps them), plus its live descendants': so
    short-lived PostgreSQL backends are counted too.
    """

    def __init__(self, http_port: int, db_ports: set[int], redis_port: int | None) -> None:
        self.groups: dict[str, list[psutil.Process]] = {
            g: [] for g in ("daphne", "celery", "postgres", "redis")
        }
        for process in psutil.process_iter():
            cmdline = _cmdline(process)
            text = " ".join(cmdline)
            # `./run` hands its daphnes a listening socket (--fd) rather than a port.
            if "daphne" in text and (_port_arg(cmdline) == str(http_port) or _listens_on(process, http_port)):
                self.groups["daphne"].append(process)
                with contextlib.suppress(psutil.Error):
                    launcher = process.parent()
                    siblings = launcher.children() if launcher and launcher.pid != 1 else []
                    self.groups["celery"] += [p for p in siblings if "celery" in " ".join(_cmdline(p))]
            elif (
                cmdline
                and cmdline[0].endswith("postgres")
                and ((port := _port_arg(cmdline)) and int(port) in db_ports)
            ):
                self.groups["postgres"].append(process)
            elif redis_port and "redis-server" in text and f":{redis_port}" in text:
                self.groups["redis"].append(process)
        if not self.groups["postgres"]:
            # A postgres started without -p (a packaged server): find who listens on the port.
            for process in psutil.process_iter(["name"]):
                if process.info["name"] == "postgres" and any(_listens_on(process, p) for p in db_ports):
                    self.groups["postgres"].append(process)

    def found(self) -> list[str]:
        return [name for name, roots in self.groups.items() if roots]

    def cpu_seconds(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for name, roots in self.groups.items():
            total = 0.0
            for root in roots:
                with contextlib.suppress(psutil.Error):
                    times = root.cpu_times()
                    total += times.user + times.system + times.children_user + times.children_system
                    for child in root.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            times = child.cpu_times()
                            total += times.user + times.system
            if roots:
                totals[name] = total
        machine = psutil.cpu_times()
        totals["machine"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return totals


class CpuMeter:
    """CPU % of one core per process group over an interval: the server's (ServerProbe)
    and the bench's own (this process and its receivers)."""

    def __init__(self, probe: ServerProbe, client_pids: list[int]) -> None:
        self.probe = probe
        self.client = [psutil.Process(os.getpid())] + [psutil.Process(p) for p in client_pids]

    def _client_secs(self) -> float:
        total = 0.0
        for process in self.client:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def start(self) -> None:
        self.wall = time.monotonic()
        self.before = self.probe.cpu_seconds()
        self.before["bench"] = self._client_secs()

    def stop(self) -> dict[str, float]:
        after = self.probe.cpu_seconds()
        after["bench"] = self._client_secs()
        wall = max(1e-6, time.monotonic() - self.wall)
        pct = {k: (after[k] - self.before.get(k, 0.0)) / wall * 100 for k in after}
        pct["other"] = pct["machine"] - sum(v for k, v in pct.items() if k != "machine")
        return pct


def format_cpu(pct: dict[str, float]) -> str:
    order = ["daphne", "postgres", "redis", "bench", "other", "machine"]
    return "  ".join(f"{k} {pct[k]:.0f}%" for k in order if k in pct)


def db_counters() -> dict[str, tuple[int, int]]:
    """(sessions opened, transactions committed) so far on each database, from pg_stat_database."""
    from django.db import connections

    counters = {}
    for alias in connections:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT sessions, xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
            sessions, commits = cursor.fetchone()
        counters[alias] = (int(sessions), int(commits))
    return counters

"""Real servers for tests: daphne processes serving the test databases."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connections

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _database_url(alias: str) -> str:
    config = connections[alias].settings_dict
    user = config.get("USER") or "postgres"
    return f"postgres://{user}@{config['HOST']}:{config['PORT']}/{config['NAME']}"


METRICS_TOKEN = "test-metrics-scrape"  # what the servers started here want on /metrics
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def test_environment() -> dict[str, str]:
    """Environment that points a child process at this test run's databases and Redis."""
    env = dict(os.environ)
    env.update(
        CHAT_CONTROL_DB_URL=_database_url("default"),
        CHAT_SHARD_URLS=",".join(_database_url(a) for a in settings.SHARD_ALIASES),
        CHAT_REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=settings.SECRET_KEY,
        CHAT_LOG_LEVEL="WARNING",
        CHAT_METRICS_TOKEN=METRICS_TOKEN,
    )
    return env


@dataclass
class Daphne:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def start_daphne(extra_env: dict[str, str] | None = None) -> Daphne:
    port = free_port()
    env = {**test_environment(), **(extra_env or {})}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatproject.daphne_uvloop",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "--ping-interval",
            "5",
            "chatproject.asgi:application",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Daphne(port, process)
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("daphne exited during start") from None
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("daphne did not start")


def stop_daphne(server: Daphne) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextmanager
def running_daphne(extra_env: dict[str, str] | None = None) -> Iterator[Daphne]:
    server = start_daphne(extra_env)
    try:
        yield server
    finally:
        stop_daphne(server)


@contextmanager
def running_worker(
    queues: str, concurrency: int = 4, extra_env: dict[str, str] | None = None, pool: str = "prefork"
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker (prefork unless told) on the test databases and Redis."""
    env = {**test_environment(), "CHAT_DB_POOL": "0", **(extra_env or {})}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "chatproject",
            "worker",
            "-Q",
            queues,
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        time.sleep(3)  # the worker is ready to consume; tasks sent earlier wait in the queue anyway
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

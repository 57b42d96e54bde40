"""Servers a failure-isolation test may stop and restart: a second embedded PostgreSQL
server holding one shard, a second embedded Redis, and HTTP helpers that time answers."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import psycopg
from django.conf import settings

from chatproject.embedded import EmbeddedPostgres, EmbeddedRedis, _free_port


@dataclass
class StoppableServer:
    server: EmbeddedPostgres | EmbeddedRedis
    port: int

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start(self.port)


@contextmanager
def second_postgres(database: str) -> Iterator[tuple[StoppableServer, str]]:
    """A PostgreSQL server of its own (data kept under CHAT_DATA_DIR between runs), with
    an empty `database`; yields the server and the database's URL."""
    server = StoppableServer(EmbeddedPostgres(Path(settings.DATA_DIR) / "isolation-postgres"), _free_port())
    server.start()
    base = f"postgres://postgres@127.0.0.1:{server.port}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {database}")
    try:
        yield server, f"{base}/{database}"
    finally:
        server.stop()


@contextmanager
def second_redis() -> Iterator[tuple[StoppableServer, str]]:
    server = StoppableServer(EmbeddedRedis(Path(settings.DATA_DIR) / "isolation-redis"), _free_port())
    server.start()
    try:
        yield server, f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    secs: float

    def json(self) -> Any:
        return json.loads(self.body)


def request(url: str, data: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Answer:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers={**(headers or {})})
    if body is not None:
        req.add_header("Content-Type", "application/json")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            content = response.read()
            status, response_headers = response.status, dict(response.headers)
    except HTTPError as error:
        content = error.read()
        status, response_headers = error.code, dict(error.headers)
    return Answer(status, response_headers, content, time.monotonic() - started)


def api(server: Any, method: str, token: str, **args: Any) -> Answer:
    return request(f"{server.http}/api/{method}", args, {"Authorization": f"Bearer {token}"})


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

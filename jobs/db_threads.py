"""The few threads of the preview worker that touch the databases.

The worker runs many threads because a fetch mostly waits on the network, and Celery
workers keep persistent connections: a fetching thread that stored its preview itself
would keep one per database for good. Done on these small pools instead, one per
database, the worker holds at most UNFURL_DB_THREADS x (1 + shards) connections however
many threads fetch. A pool per database, not one for all: a shard whose rows are locked
by a long transaction, or whose connection hangs, then holds only its own threads, and
the other teams' previews go on being stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import OperationalError, close_old_connections

P = ParamSpec("P")
T = TypeVar("T")

_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(alias: str) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(alias)
        if pool is None:
            pool = _pools[alias] = ThreadPoolExecutor(
                max_workers=settings.UNFURL_DB_THREADS, thread_name_prefix=f"unfurl-db-{alias}"
            )
        return pool


def on_db_thread(alias: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run fn, which touches only database `alias`, on one of that database's threads and
    return (or raise) what it did. OperationalError when it takes longer than
    UNFURL_DB_WAIT_SECS (queueing included): the job is then rescheduled like any other
    shard failure, instead of its fetching thread waiting on a stuck database for good."""

    def run() -> T:
        # What Celery does around a task, for these threads no task runs on: drop a
        # connection that broke or outlived CONN_MAX_AGE.
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    future: Future[T] = _pool(alias).submit(run)
    try:
        return future.result(timeout=settings.UNFURL_DB_WAIT_SECS)
    except FutureTimeout:
        future.cancel()  # not started yet: it never will be (started: it ends at its timeouts)
        raise OperationalError(f"{alias}: no answer within {settings.UNFURL_DB_WAIT_SECS}s") from None

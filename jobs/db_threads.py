"""The few threads of the preview worker that touch the databases.

The worker runs many threads because a fetch mostly waits on the network, and Celery
workers keep persistent connections: a fetching thread that stored its preview itself
would keep one per database for good. Done on this small pool instead, the worker holds
at most UNFURL_DB_THREADS x (1 + shards) connections however many threads fetch.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import close_old_connections

P = ParamSpec("P")
T = TypeVar("T")


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.UNFURL_DB_THREADS, thread_name_prefix="unfurl-db")


def on_db_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run fn on one of the database threads and return (or raise) what it did."""

    def run() -> T:
        # What Celery does around a task, for these threads no task runs on: drop a
        # connection that broke or outlived CONN_MAX_AGE.
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return _pool().submit(run).result()

"""The gateway's threads for blocking calls (Redis, PostgreSQL) made off the event loop."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections

# These calls mostly wait on Redis or PostgreSQL. The loop's default pool has cpu + 4
# threads, and a reconnect storm's admission checks queued on it for seconds.
GATEWAY_THREADS = 12

_pool = ThreadPoolExecutor(max_workers=GATEWAY_THREADS, thread_name_prefix="rtm")


def blocking(function: Any) -> Any:
    """`function` as a coroutine run on the gateway's threads (not thread-sensitive: many
    sockets may wait at once, each on its own thread and database connection)."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            # Back to the process's pool (settings.DB_POOL_MAX), which the HTTP threads
            # share: a thread here would otherwise hold a connection per database for good.
            connections.close_all()

    return sync_to_async(run, thread_sensitive=False, executor=_pool)

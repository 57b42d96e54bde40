"""Readiness: can this process reach the control database, every shard and Redis?

Each part is checked on its own thread under one deadline, so a part that hangs shows
as down after READY_TIMEOUT_SECS instead of hanging the probe.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.db import connections

from chatproject.dbrouter import CONTROL_DB
from chatproject.shard_outage import down_shards

# Enough threads for every part twice over: a hung check keeps its thread until its own
# timeout (the pool's), and the next probe must not queue behind it.
_checks = ThreadPoolExecutor(max_workers=16, thread_name_prefix="readyz")

logger = logging.getLogger(__name__)


@dataclass
class PartStatus:
    ok: bool
    ms: float
    error: str = ""


def _check_database(alias: str) -> None:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connections[alias].close()  # this thread's connection goes back to the pool


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    timeout = settings.READY_TIMEOUT_SECS
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout)


def _check_redis() -> None:
    _redis().ping()


def _timed(check: Any, *args: str) -> PartStatus:
    started = time.monotonic()
    try:
        check(*args)
    except Exception as exc:
        # /readyz is public: the error's class says what kind of failure without the
        # host, port or user a driver's message carries; the log has the whole message.
        logger.warning("readiness check %s failed: %s", args or check.__name__, exc)
        return PartStatus(False, round((time.monotonic() - started) * 1000, 1), type(exc).__name__)
    return PartStatus(True, round((time.monotonic() - started) * 1000, 1))


def readiness() -> dict[str, Any]:
    """`{"status": "ok"|"degraded"|"down", "parts": {name: {ok, ms, error}}}`.

    "down" when the control database is unreachable (no request can be served),
    "degraded" when a shard or Redis is (some teams or features fail, the rest work).
    """
    parts = {CONTROL_DB: (_check_database, CONTROL_DB)}
    parts.update({alias: (_check_database, alias) for alias in settings.SHARD_ALIASES})
    futures = {name: _checks.submit(_timed, check, arg) for name, (check, arg) in parts.items()}
    futures["redis"] = _checks.submit(_timed, _check_redis)
    wait(futures.values(), timeout=settings.READY_TIMEOUT_SECS)
    statuses: dict[str, PartStatus] = {}
    for name, future in futures.items():
        if future.done():
            statuses[name] = future.result()
        else:
            statuses[name] = PartStatus(False, settings.READY_TIMEOUT_SECS * 1000, "timed out")
    marked = down_shards()
    if not statuses[CONTROL_DB].ok:
        status = "down"
    elif all(s.ok for s in statuses.values()):
        status = "ok"
    else:
        status = "degraded"
    return {
        "status": status,
        "parts": {name: asdict(s) for name, s in statuses.items()},
        "failing_fast": sorted(marked),
    }

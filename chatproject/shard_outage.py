"""Fail fast for a shard whose database is unreachable, and notice by itself when it is back.

When a query on a shard fails because its server is gone (connection refused or dropped,
the pool unable to hand out a connection), the shard is marked down in this process:
`on_shard()` then refuses at once with ShardUnavailable (an OperationalError, so the Web
API answers its retryable `service_unavailable` and jobs reschedule), instead of every
request waiting out the pool's timeout. A background thread probes the server with a
plain connection; when one answers it drops the pool (whose connections died with the
server) and clears the mark. Other shards are never touched.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import psycopg_pool
from django.conf import settings
from django.db import OperationalError, connections

logger = logging.getLogger(__name__)

PROBE_INTERVAL_SECS = 0.5  # how soon after a server returns its teams are served again
PROBE_CONNECT_TIMEOUT_SECS = 2  # libpq's minimum
# Connection-level SQLSTATEs: class 08 (connection exception) and the server shutting down.
CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")

_down: dict[str, float] = {}  # alias -> when it was marked (wall clock), read lock-free
_recoveries: dict[str, int] = {}  # alias -> how many times it came back in this process
STALE_MARK = "_chat_recoveries_seen"  # on a thread's connection wrapper
_lock = threading.Lock()
_prober: threading.Thread | None = None


class ShardUnavailable(OperationalError):
    """The shard is marked down; retry in a few seconds."""

    def __init__(self, alias: str) -> None:
        super().__init__(f"shard {alias} is unavailable")
        self.alias = alias


def check(alias: str) -> None:
    """Raise ShardUnavailable when the shard is marked down (a dict lookup: every request);
    after it came back, drop this thread's connection to it if it predates the outage."""
    if alias in _down:
        from ops.metrics import SHARD_FAST_FAILURES

        SHARD_FAST_FAILURES.labels(alias).inc()
        raise ShardUnavailable(alias)
    if _recoveries:
        _forget_stale_connection(alias)


def _forget_stale_connection(alias: str) -> None:
    # Threads that keep their connection between uses (the gateway's worker threads,
    # Celery workers) would otherwise find the dead one and mark the shard down again.
    wrapper = connections[alias]
    recoveries = _recoveries.get(alias, 0)
    if getattr(wrapper, STALE_MARK, 0) == recoveries:
        return
    if wrapper.connection is not None and not wrapper.in_atomic_block:
        try:
            wrapper.close()
        except Exception as exc:  # closing a dead connection may complain; it is gone either way
            logger.debug("dropping a stale connection to %s: %s", alias, exc)
    setattr(wrapper, STALE_MARK, recoveries)


def down_shards() -> dict[str, float]:
    return dict(_down)


def is_connection_failure(exc: BaseException) -> bool:
    """Whether an error says the server is unreachable (not that one statement failed)."""
    if isinstance(exc, ShardUnavailable):
        return False
    cause = exc.__cause__ if isinstance(exc, OperationalError) and exc.__cause__ else exc
    if isinstance(cause, psycopg_pool.PoolTimeout | psycopg_pool.PoolClosed):
        return True
    if isinstance(cause, psycopg.OperationalError):
        sqlstate = cause.sqlstate
        return sqlstate is None or sqlstate.startswith(CONNECTION_SQLSTATES)
    return False


def report_failure(alias: str, exc: BaseException) -> None:
    """Called with any OperationalError seen while serving a shard."""
    from ops.metrics import SHARD_ERRORS

    if isinstance(exc, ShardUnavailable):
        return
    # A pool timeout may be exhaustion under load, and one dead connection may be a killed
    # backend: only a fresh connection that also fails marks the whole shard down (a
    # stopped server refuses it at once, so the first failure stays fast).
    unreachable = is_connection_failure(exc) and (alias in _down or not _reachable(alias))
    SHARD_ERRORS.labels(alias, "unreachable" if unreachable else "query").inc()
    if unreachable:
        _mark_down(alias, str(exc).strip())


def pool_gave_up(alias: str | None) -> None:
    """psycopg_pool's reconnect_failed: the pool could not open a connection to `alias`."""
    if alias in settings.SHARD_ALIASES:
        from ops.metrics import SHARD_ERRORS

        SHARD_ERRORS.labels(alias, "unreachable").inc()
        _mark_down(alias, "the pool could not connect")


def _mark_down(alias: str, why: str) -> None:
    global _prober
    with _lock:
        if alias not in _down:
            logger.warning("shard %s marked down: %s", alias, why)
            _down[alias] = time.time()
        if _prober is None or not _prober.is_alive():
            _prober = threading.Thread(target=_probe_until_all_back, name="shard-prober", daemon=True)
            _prober.start()


def _reachable(alias: str) -> bool:
    config = connections.settings[alias]
    try:
        with psycopg.connect(
            dbname=config["NAME"],
            user=config.get("USER") or None,
            password=config.get("PASSWORD") or None,
            host=config.get("HOST") or None,
            port=config.get("PORT") or None,
            connect_timeout=PROBE_CONNECT_TIMEOUT_SECS,
            autocommit=True,
        ) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _drop_pool(alias: str) -> None:
    """Close the shard's pool: its connections died with the server, and its waiters
    should fail now rather than at the pool timeout. Django opens a new one on next use."""
    wrapper = connections[alias]
    pools = getattr(type(wrapper), "_connection_pools", None)
    if pools is None:
        return
    pool = pools.pop(alias, None)
    if pool is not None:
        try:
            pool.close(timeout=1)
        except Exception as exc:  # a pool half torn down already: it is gone either way
            logger.info("closing the pool of %s: %s", alias, exc)


def _probe_until_all_back() -> None:
    global _prober
    dropped: set[str] = set()
    while True:
        with _lock:
            aliases = list(_down)
            if not aliases:
                _prober = None  # under the lock: a new mark starts a new prober
                return
        for alias in aliases:
            if alias not in dropped:
                _drop_pool(alias)
                dropped.add(alias)
            if _reachable(alias):
                _drop_pool(alias)  # a request that slipped past the mark may have made one
                with _lock:
                    _recoveries[alias] = _recoveries.get(alias, 0) + 1
                    _down.pop(alias, None)
                dropped.discard(alias)
                logger.warning("shard %s is reachable again", alias)
        time.sleep(PROBE_INTERVAL_SECS)

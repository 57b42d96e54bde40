"""A cap on concurrent calls to one upstream across every worker, with leases.

Each call holds a lease (a member of a sorted set scored by its expiry); a worker that
dies mid-call leaks nothing, since its lease simply expires.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django_redis import get_redis_connection
from redis import RedisError

logger = logging.getLogger(__name__)

# KEYS: lease zset. ARGV: now, limit, lease expiry, token. Returns 1 when acquired.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) - tonumber(ARGV[1])) + 1)
return 1
"""


class BulkheadFull(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"bulkhead {key} is full")
        self.key = key


@contextmanager
def bulkhead(key: str, limit: int, lease_secs: float) -> Iterator[None]:
    """Run the block holding one of `limit` slots for `key`; BulkheadFull if none is free."""
    lease_key = f"bulkhead:{key}"
    token = secrets.token_hex(8)
    connection = get_redis_connection("default")
    try:
        acquired = connection.eval(
            _ACQUIRE, 1, lease_key, time.time(), limit, time.time() + lease_secs, token
        )
    except RedisError as exc:
        logger.warning("bulkhead %s not enforced: Redis unreachable (%s)", key, exc)
        acquired = None
    if acquired == 0:
        raise BulkheadFull(key)
    try:
        yield
    finally:
        if acquired:
            try:
                connection.zrem(lease_key, token)
            except RedisError:
                pass  # the lease expires by itself


def in_use(key: str) -> int:
    connection = get_redis_connection("default")
    connection.zremrangebyscore(f"bulkhead:{key}", "-inf", time.time())
    return int(connection.zcard(f"bulkhead:{key}"))

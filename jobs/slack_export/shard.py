"""The breaker that import and export writes and reads on a shard go through: one per
shard, since its database fails for every team on it at once. Only the database failing
counts (the same rule as the search index's breaker); bad archives never trip it."""

from __future__ import annotations

from jobs.breakers import SharedCircuitBreaker
from jobs.search_tasks import classify


def shard_breaker(shard: str) -> SharedCircuitBreaker:
    return SharedCircuitBreaker(f"shard:{shard}", classify=classify)

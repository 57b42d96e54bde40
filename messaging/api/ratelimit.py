"""Per-token, per-method rate limits in fixed one-minute windows kept in Redis."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django_redis import get_redis_connection
from redis import RedisError

from messaging.api.registry import TIER_LIMITS, ApiMethod
from teams.auth import Caller
from teams.errors import ApiError

logger = logging.getLogger(__name__)
WINDOW_SECS = 60


def check_rate_limit(caller: Caller, method: ApiMethod) -> None:
    """Count this call; raise `ratelimited` (HTTP 429 with Retry-After) past the tier's limit."""
    if not settings.RATE_LIMITS_ENABLED:
        return
    limit = TIER_LIMITS[method.tier]
    now = time.time()
    window = int(now // WINDOW_SECS)
    key = f"rl:{caller.team_id}:{caller.rate_key}:{method.name}:{window}"
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECS * 2)
        count = pipe.execute()[0]
    except RedisError as exc:  # limits fail open: an outage must not stop the team
        logger.warning("rate limit not checked: %s", exc)
        return
    if count > limit:
        retry_after = max(1, int((window + 1) * WINDOW_SECS - now) + 1)
        raise ApiError("ratelimited", status=429, retry_after=retry_after)

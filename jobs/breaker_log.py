"""The latest circuit breaker transitions, automatic and manual, kept in Redis for the
admin dashboard (each transition is reported by exactly one process, so once here)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from django_redis import get_redis_connection
from redis import RedisError

logger = logging.getLogger(__name__)

TRANSITIONS_KEY = "brk:transitions"  # newest first; kept for good, trimmed to the last few
TRANSITIONS_KEPT = 200


def log_transition(key: str, transition: str, manual: bool = False) -> None:
    entry = json.dumps({"key": key, "transition": transition, "at": time.time(), "manual": manual})
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        pipe.lpush(TRANSITIONS_KEY, entry)
        pipe.ltrim(TRANSITIONS_KEY, 0, TRANSITIONS_KEPT - 1)
        pipe.execute()
    except RedisError as exc:  # the breaker itself already warns about Redis being down
        logger.debug("transition of %s not logged: %s", key, exc)


def recent_transitions(limit: int = 50) -> list[dict[str, Any]]:
    raw = get_redis_connection("default").lrange(TRANSITIONS_KEY, 0, limit - 1)
    return [json.loads(item) for item in raw]

"""Sockets catch up from the event log after a Redis outage, without waiting for a new event.

While Redis is down, publishes fail (the log keeps the events) and the channel layer's
subscriptions drop. When Redis answers again, the layer resubscribes within about a
second; events published before that reach no socket of this process, and nothing would
reveal the gap until the next event. So each daphne process watches Redis (one PING a
second), and once it is back and the layer has had time to resubscribe, every local
team's hub reads the log after its head. The ordering gate drops what also arrives
live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio
from django.conf import settings

from messaging.realtime import hubs as registry

logger = logging.getLogger(__name__)

WATCH_INTERVAL_SECS = 1.0
# channels_redis retries its subscriptions a second after an error; then some margin.
RESUBSCRIBE_GRACE_SECS = 2.0

_watcher: asyncio.Task[None] | None = None


def ensure_watching() -> None:
    """Start this process's watcher (once, on the event loop of the first socket)."""
    global _watcher
    if _watcher is None or _watcher.done():
        _watcher = asyncio.get_running_loop().create_task(_watch())


async def _reachable(client: redis.asyncio.Redis) -> bool:
    try:
        return bool(await client.ping())
    except (redis.RedisError, OSError):
        return False


async def _watch() -> None:
    client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    was_down = False
    while True:
        await asyncio.sleep(WATCH_INTERVAL_SECS)
        if not await _reachable(client):
            was_down = True
            continue
        if was_down:
            was_down = False
            await asyncio.sleep(RESUBSCRIBE_GRACE_SECS)
            hubs = registry.hubs()
            logger.warning("Redis is back: %d team hubs catch up from the event log", len(hubs))
            for team_hub in hubs:
                with contextlib.suppress(Exception):  # one team's failure is its own
                    await team_hub.catch_up()

"""Redis commands of many sockets sent as one pipeline: the gateway's connect path, without
a worker thread per call.

In a reconnect storm every socket makes the same few Redis calls (admission, ticket,
presence). Made one by one from worker threads, each costs a thread hop, a GIL hand-off
and a round trip; here every call waiting when a pipeline goes out rides in it, and the
calls made meanwhile go out in the next one, so a storm costs a few round trips per
batch instead of several per socket, and a lone socket still gets one round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from typing import Any

import redis.asyncio
from django.conf import settings
from django.core.cache import cache
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

BATCH_MAX = 500  # commands per pipeline: larger gains little and delays the first reply


class Script:
    """A Lua script called by its SHA (EVALSHA), loaded on first NOSCRIPT."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class RedisBatch:
    def __init__(self) -> None:
        # One retry on a lost connection: a pooled connection goes stale when Redis restarts,
        # and the first pipeline on it would fail every socket in it. Not on a timeout: Redis
        # may well have run a slow pipeline, and running it again counts and spends twice.
        # (A connection lost after Redis ran it still runs it twice: the ticket redemption
        # recognises its own replay, tickets.REDEEM_LUA.)
        self.client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=2,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self.encoder = self.client.connection_pool.get_encoder()
        self.waiting: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self.sender: asyncio.Task[None] | None = None

    async def call(self, *command: Any) -> Any:
        """One command's reply (a Redis error is raised to its caller only)."""
        # Arguments encoded here, so that one Redis cannot take (DataError) fails this caller
        # alone rather than the pipeline of everyone in the batch. Not the name: the
        # client picks the reply's parser by it.
        encode = self.encoder.encode
        command = (command[0], *(encode(part) for part in command[1:]))
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((command, future))
        if self.sender is None:
            self.sender = asyncio.get_running_loop().create_task(self._send())
        return await future

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted or flushed its scripts: EVAL loads it again
            return await self.call("EVAL", script.source, len(keys), *keys, *args)

    async def _send(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[:BATCH_MAX], self.waiting[BATCH_MAX:]
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for command, _ in batch:
                        pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
                except Exception as exc:
                    # Arguments were encoded in call(): what fails here is the pipeline itself
                    # (connection lost, timeout), and every caller in it hears so.
                    replies = [exc] * len(batch)
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self.sender = None


_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisBatch] = weakref.WeakKeyDictionary()


def redis_batch() -> RedisBatch:
    """The running event loop's batch (a client is bound to the loop it was used on)."""
    loop = asyncio.get_running_loop()
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = RedisBatch()
    return batch


async def cache_get_many(keys: list[str]) -> list[Any]:
    """Django cache values (django_redis: the same keys and encoding), in the batch; None
    where missing. One MGET, as `cache.get_many` makes, without a worker thread."""
    raw = await redis_batch().call("MGET", *[cache.make_key(key) for key in keys])
    client = cache.client  # type: ignore[attr-defined]
    return [None if value is None else client.decode(value) for value in raw]

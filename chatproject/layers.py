"""The channel layer: channels_redis' pub/sub layer (which never drops group messages),
decoding each published message once per process instead of once per subscriber.

Every local socket subscribed to a group receives the same raw bytes; sharing one
decoded message lets the gateway also encode each event's frame once per process.
Subscribers must treat the message as read-only (the gateway only adds a cache key).

It also tells the gateway when a subscriber connection connected again (on_reconnect):
what was published while it was away never arrives.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer

DECODED_CACHE_SIZE = 1024  # recent messages; a fan-out reaches every local socket within this


class SharedDecodePubSubLayer(RedisPubSubChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._decoded: OrderedDict[bytes, Any] = OrderedDict()
        self._watched: dict[Any, _Reconnected] = {}  # redis-py keeps only weak references

    def deserialize(self, message: bytes) -> Any:
        decoded = self._decoded.get(message)
        if decoded is None:
            decoded = super().deserialize(message)
            self._decoded[message] = decoded
            if len(self._decoded) > DECODED_CACHE_SIZE:
                self._decoded.popitem(last=False)
        return decoded

    async def receive_many(self, channel: str, limit: int) -> list[Any]:
        """The next message, and up to `limit` - 1 more already waiting, without waiting.

        A subscriber that falls behind then handles what piled up as one batch."""
        messages = [await self.receive(channel)]
        queue = self._get_layer().channels.get(channel)
        while queue is not None and not queue.empty() and len(messages) < limit:
            messages.append(self.deserialize(queue.get_nowait()))
        return messages

    async def delete_channel(self, channel: str) -> None:
        """Unsubscribe a channel no receive ever waited on (cancelling a receive is the
        only other way the layer lets go of one): a subscriber that failed to start."""
        layer = self._get_layer()
        if layer.channels.pop(channel, None) is not None:
            await layer._get_shard(channel).unsubscribe(channel)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call `callback` each time one of this event loop's subscriber connections connects
        again after it was lost (Redis restarted, or dropped it: a subscriber over its
        output buffer limit loses what the buffer held). The layer's own callback, which
        sends the subscriptions again, runs first. Only connections that exist now are
        watched (they do after the first subscription); calling again adds none twice."""
        for shard in self._get_layer()._shards:
            connection = getattr(shard._pubsub, "connection", None)
            if connection is not None and connection not in self._watched:
                watcher = self._watched[connection] = _Reconnected(callback)
                connection.register_connect_callback(watcher.connected)


class _Reconnected:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback

    def connected(self, connection: Any) -> None:
        self.callback()

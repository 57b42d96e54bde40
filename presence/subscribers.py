"""This process's presence subscriptions: one channel-layer channel for every local socket.

A member's presence changes are published to their group (`presence.<team>.<member>`).
The process joins that group once, while at least one of its sockets subscribes to the
member, and hands each change to those sockets. A socket thus costs no Redis subscription
of its own (a reconnect storm would make one per socket), and a change still reaches only
the processes, and in them only the sockets, that subscribed to that member.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

from presence.state import presence_group
from teams import ids

logger = logging.getLogger(__name__)

RECEIVE_BATCH = 200


class Subscriber(Protocol):
    """What a change is handed to (presence.gateway.PresenceLink)."""

    def changed(self, user: str, presence: str) -> None: ...


class PresenceSubscribers:
    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel = ""
        self.started: asyncio.Future[None] | None = None
        self.receiver: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference
        # Keyed like the group (team, member): a socket may name any id, and a key of the
        # member alone would let one team's subscription stand for another's group.
        self.subscribers: dict[tuple[int, int], set[Subscriber]] = {}
        self.joined: dict[tuple[int, int], asyncio.Future[None]] = {}  # done once the group is joined

    async def _start(self) -> None:
        if self.started is None:
            started = self.started = asyncio.get_running_loop().create_future()
            try:
                self.channel = await self.layer.new_channel("presence.")
            except BaseException as exc:
                # Redis is away: this add and those waiting on it fail, and the next add
                # tries again (a future left pending would hang every later one).
                self.started = None
                started.set_exception(_shared(exc))
                started.exception()  # retrieved: waiters raise it too
                raise
            self._start_receiving()
            started.set_result(None)
        await asyncio.shield(self.started)

    def _start_receiving(self) -> None:
        self.receiver = asyncio.get_running_loop().create_task(self._receive())
        self.receiver.add_done_callback(self._receiver_ended)

    def _receiver_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():  # the loop is closing
            return
        # It only ends on a bug (a subscriber raising): without it, no socket of this
        # process would hear presence again.
        logger.error("presence subscriptions stopped receiving; restarting", exc_info=task.exception())
        self._start_receiving()

    async def add(self, team_id: int, member_id: int, subscriber: Subscriber) -> None:
        """Returns once changes of the member reach `subscriber`."""
        key = (team_id, member_id)
        self.subscribers.setdefault(key, set()).add(subscriber)
        joined = self.joined.get(key)
        if joined is None:
            joined = self.joined[key] = asyncio.get_running_loop().create_future()
            try:
                await self._start()
                await self.layer.group_add(presence_group(team_id, member_id), self.channel)
            except BaseException as exc:
                self.joined.pop(key, None)
                self._forget(key, subscriber)
                joined.set_exception(_shared(exc))
                joined.exception()  # retrieved: other waiters raise it too
                raise
            joined.set_result(None)
        try:
            await asyncio.shield(joined)
        except BaseException:
            # Another add's join failed (or this wait was cancelled): not subscribed.
            self._forget(key, subscriber)
            raise

    def _forget(self, key: tuple[int, int], subscriber: Subscriber) -> None:
        subscribers = self.subscribers.get(key)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self.subscribers[key]

    async def discard(self, team_id: int, member_id: int, subscriber: Subscriber) -> None:
        key = (team_id, member_id)
        subscribers = self.subscribers.get(key)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self.subscribers[key]
            self.joined.pop(key, None)
            # No await between forgetting and leaving: a later add joins again after this.
            await self.layer.group_discard(presence_group(team_id, member_id), self.channel)

    async def _receive(self) -> None:
        while True:
            try:
                messages = await self.layer.receive_many(self.channel, RECEIVE_BATCH)
            except Exception:  # the layer reconnects on its own
                logger.exception("presence subscriptions could not receive")
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                try:
                    key = (int(message["team"]), ids.decode(message["user"], ids.USER_PREFIXES))
                    user, presence = message["user"], message["presence"]
                except (KeyError, TypeError, ValueError, ids.BadId):
                    continue
                for subscriber in list(self.subscribers.get(key, ())):
                    try:
                        subscriber.changed(user, presence)
                    except Exception:  # one socket's failure must not cost the others the batch
                        logger.exception("a presence subscriber failed")


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PresenceSubscribers] = (
    weakref.WeakKeyDictionary()
)


def presence_subscribers(layer: Any) -> PresenceSubscribers:
    """The running event loop's subscriptions (its layer's channels are bound to it)."""
    loop = asyncio.get_running_loop()
    subscribers = _by_loop.get(loop)
    if subscribers is None:
        subscribers = _by_loop[loop] = PresenceSubscribers(layer)
    return subscribers


def _shared(exc: BaseException) -> Exception:
    """The failure other waiters see: one caller's cancellation is not theirs (a
    CancelledError would end their consumers as if they had been cancelled)."""
    return exc if isinstance(exc, Exception) else ConnectionError("presence subscription was cancelled")

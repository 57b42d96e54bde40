"""One socket's presence when Redis fails under it (nothing it subscribed to outlives it),
and when a change races its subscription's first read.

The channel layer here uses a Redis of its own, which the tests stop and start; presence
state stays in the main Redis.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chatproject.layers import SharedDecodePubSubLayer
from presence import state
from presence.gateway import PresenceLink
from presence.subscribers import PresenceSubscribers
from tests.conftest import World, member_pk
from tests.outages import StoppableServer, second_redis

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture
def layer_redis(django_db_setup, django_db_blocker) -> Iterator[tuple[StoppableServer, str]]:
    with second_redis() as (server, url):
        yield server, url


async def _sent(frame: dict[str, Any]) -> None:
    pass


def test_a_socket_closing_while_redis_is_away_leaves_no_subscription(world: World, layer_redis) -> None:
    redis_server, url = layer_redis
    team, carol = world.acme.team, member_pk(world.acme["carol"].user_id)
    others = [world.acme[name].user_id for name in ("alice", "bob")]

    async def close_during_outage() -> tuple[PresenceLink, int]:
        link = PresenceLink(SharedDecodePubSubLayer(hosts=[url]), _sent, team, carol, False)
        await link.start()
        await link.subscribe(others)
        assert len(link.subscriptions.subscribers) == 2
        redis_server.stop()
        try:
            await link.stop()
        finally:
            redis_server.start()
        link.changed(others[0], "active")  # a change still on its way
        return link, state.lookup(team.id, carol).connection_count

    link, connections = asyncio.run(close_during_outage())
    assert link.subscriptions.subscribers == {}
    assert link.flush_task is None
    assert connections == 0  # the socket counted as gone all the same


def test_a_subscription_that_fails_leaves_nothing_behind(world: World, layer_redis) -> None:
    redis_server, url = layer_redis
    team, carol = world.acme.team, member_pk(world.acme["carol"].user_id)
    alice, bob = (world.acme[name].user_id for name in ("alice", "bob"))
    bob_key = (team.id, member_pk(bob))

    async def subscribe_during_outage() -> tuple[dict, set[int], dict]:
        link = PresenceLink(SharedDecodePubSubLayer(hosts=[url]), _sent, team, carol, False)
        await link.start()
        await link.subscribe([bob])
        redis_server.stop()
        try:
            # redis-py raises ConnectionError, or AttributeError when the outage tears its
            # connection's writer down in the middle of the send.
            with pytest.raises((RedisConnectionError, AttributeError)):
                await link.subscribe([bob, alice])
        finally:
            redis_server.start()
        during = {key: set(links) for key, links in link.subscriptions.subscribers.items()}
        subscribed = set(link.subscribed)
        await link.stop()
        return during, subscribed, link.subscriptions.subscribers

    during, subscribed, after_stop = asyncio.run(subscribe_during_outage())
    assert subscribed == {bob_key[1]}
    assert list(during) == [bob_key]
    assert after_stop == {}


class _Broken:
    def changed(self, user: str, presence: str) -> None:
        raise RuntimeError("a subscriber with a bug")


class _Heard:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str]] = []

    def changed(self, user: str, presence: str) -> None:
        self.changes.append((user, presence))


def test_subscriptions_keep_receiving_after_a_subscriber_raises(world: World, layer_redis) -> None:
    _, url = layer_redis
    team_id = world.acme.team.id
    alice, bob = (world.acme[name].user_id for name in ("alice", "bob"))

    async def change(layer: SharedDecodePubSubLayer, user: str) -> None:
        message = {"type": "presence.change", "team": team_id, "user": user, "presence": "active"}
        await layer.group_send(state.presence_group(team_id, member_pk(user)), message)

    async def after_a_bug() -> list[tuple[str, str]]:
        layer = SharedDecodePubSubLayer(hosts=[url])
        subscriptions, heard = PresenceSubscribers(layer), _Heard()
        await subscriptions.add(team_id, member_pk(alice), _Broken())
        await subscriptions.add(team_id, member_pk(bob), heard)
        await change(layer, alice)
        await asyncio.sleep(0.3)
        await change(layer, bob)
        for _ in range(40):
            if heard.changes:
                break
            await asyncio.sleep(0.05)
        return heard.changes

    assert asyncio.run(after_a_bug()) == [(bob, "active")]


def test_a_change_arriving_while_the_current_state_is_read_is_not_undone_by_it(
    world: World, monkeypatch
) -> None:
    """presence_sub reads the current state of the new subscriptions; a change pushed while
    that read waits may be newer than what Redis answered, and must be what the socket
    hears last."""
    from django.conf import settings

    team, carol = world.acme.team, member_pk(world.acme["carol"].user_id)
    bob = world.acme["bob"].user_id  # no socket: away
    frames: list[dict[str, Any]] = []
    read = state.current_batched

    async def sent(frame: dict[str, Any]) -> None:
        frames.append(frame)

    async def subscribe_with_a_change_during_the_read() -> None:
        link = PresenceLink(SharedDecodePubSubLayer(hosts=[settings.REDIS_URL]), sent, team, carol, True)

        async def read_then_bob_arrives(team_id: int, member_ids: list[int]) -> dict[int, str]:
            found = await read(team_id, member_ids)  # Redis answered: away
            link.changed(bob, "active")  # ... and bob's socket opened before the answer was used
            return found

        monkeypatch.setattr(state, "current_batched", read_then_bob_arrives)
        await link.start()
        try:
            await link.subscribe([bob])
            await link.flush()
        finally:
            await link.stop()

    asyncio.run(subscribe_with_a_change_during_the_read())
    told = [frame["presence"] for frame in frames if bob in frame.get("users", [])]
    assert told and told[-1] == "active", frames

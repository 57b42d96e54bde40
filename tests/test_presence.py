"""Presence and its fan-out: pushed only to subscribers, batched, across processes."""

import asyncio
import time

import pytest
from django.test import override_settings

from presence import state
from tests.conftest import World, member_pk
from tests.rtm_client import RtmSocket, web
from tests.servers import running_daphne

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture(scope="module")
def daphnes(django_db_setup, django_db_blocker):
    with running_daphne() as first, running_daphne() as second:
        yield first, second


def _open(server, token: str, **options) -> RtmSocket:
    socket = RtmSocket(web(server, token).rtm_connect(**options)["url"])
    socket.until(lambda f: f.get("type") == "hello")
    return socket


def _presence_frames(socket: RtmSocket, quiet: float = 1.0) -> list[dict]:
    return [f for f in socket.drain(quiet) if f.get("type") == "presence_change"]


def test_presence_goes_only_to_subscribers_and_follows_tabs(world: World, daphnes) -> None:
    first, second = daphnes
    alice = world.acme["alice"]
    carol = _open(first, world.acme["carol"].token)
    bob = _open(first, world.acme["bob"].token)
    carol.send({"type": "presence_sub", "ids": [alice.user_id]})
    assert carol.until(lambda f: f.get("type") == "presence_change") == {
        "type": "presence_change",
        "user": alice.user_id,
        "presence": "away",
    }
    tab_one = _open(second, alice.token)  # another daphne process
    assert carol.until(lambda f: f.get("type") == "presence_change")["presence"] == "active"
    tab_two = _open(first, alice.token)
    tab_one.close()
    assert _presence_frames(carol) == []  # one tab is still open: still active
    tab_two.close()
    assert carol.until(lambda f: f.get("type") == "presence_change")["presence"] == "away"
    assert [f for f in bob.seen if f.get("type") == "presence_change"] == []
    assert _presence_frames(bob, 0.3) == []
    carol.close()
    bob.close()


def test_batched_presence_lists_users(world: World, daphnes) -> None:
    first, _ = daphnes
    carol = _open(first, world.acme["carol"].token, batch_presence_aware=True)
    ids = [world.acme["alice"].user_id, world.acme["bob"].user_id]
    carol.send({"type": "presence_sub", "ids": ids})
    initial = carol.until(lambda f: f.get("type") == "presence_change")
    assert initial == {"type": "presence_change", "users": ids, "presence": "away"}
    alice, bob = _open(first, world.acme["alice"].token), _open(first, world.acme["bob"].token)
    batched = carol.until(lambda f: f.get("type") == "presence_change")
    assert batched["presence"] == "active" and sorted(batched["users"]) == sorted(ids)
    carol.send({"type": "presence_query", "ids": [world.acme["alice"].user_id]})
    assert carol.until(lambda f: f.get("type") == "presence_change")["users"] == [world.acme["alice"].user_id]
    for socket in (carol, alice, bob):
        socket.close()


def test_set_and_get_presence(world: World, daphnes) -> None:
    first, _ = daphnes
    alice_web = web(first, world.acme["alice"].token)
    carol = _open(first, world.acme["carol"].token)
    alice = _open(first, world.acme["alice"].token)
    carol.send({"type": "presence_sub", "ids": [world.acme["alice"].user_id]})
    # alice's socket may still be registering: her state settles on active.
    carol.until(lambda f: f.get("type") == "presence_change" and f["presence"] == "active")
    mine = alice_web.users_getPresence(user=world.acme["alice"].user_id)
    assert mine["presence"] == "active" and mine["online"] and mine["connection_count"] == 1
    alice_web.users_setPresence(presence="away")
    assert carol.until(lambda f: f.get("type") == "presence_change")["presence"] == "away"
    assert alice_web.users_getPresence(user=world.acme["alice"].user_id)["manual_away"] is True
    other = web(first, world.acme["carol"].token).users_getPresence(user=world.acme["alice"].user_id)
    assert other.data == {"ok": True, "presence": "away"}
    alice_web.users_setPresence(presence="auto")
    assert carol.until(lambda f: f.get("type") == "presence_change")["presence"] == "active"
    carol.close()
    alice.close()


def test_dead_sockets_expire_and_idle_members_go_away(world: World) -> None:
    """The sweep notices what no socket reported: a vanished process, an idle person."""
    from django_redis import get_redis_connection

    team_id, alice = world.acme.team.id, member_pk(world.acme["alice"].user_id)
    bob = member_pk(world.acme["bob"].user_id)
    assert asyncio.run(
        state.socket_seen_batched(team_id, alice, "socket-of-a-dead-process", active=True)
    ).changed
    seen = asyncio.run(state.socket_seen_batched(team_id, bob, "idle-socket", active=True))
    assert seen.presence == "active"
    redis = get_redis_connection("default")
    redis.zadd(f"pres:{team_id}:{alice}:sockets", {"socket-of-a-dead-process": time.time() - 1})
    with override_settings(AUTO_AWAY_SECS=600):
        redis.set(f"pres:{team_id}:{bob}:activity", time.time() - 601)
        assert state.sweep() >= 2
    assert asyncio.run(state.current_batched(team_id, [alice, bob])) == {alice: "away", bob: "away"}


def test_a_process_subscribes_once_per_member_while_a_socket_wants_it(world: World, daphnes) -> None:
    """Sockets of one process share its subscription to a member's presence; it ends with
    the last of them, and not before."""
    from django_redis import get_redis_connection

    from messaging.events import group_publish_args

    first, _ = daphnes
    alice = world.acme["alice"]
    redis = get_redis_connection("default")
    alice_group = group_publish_args(state.presence_group(world.acme.team.id, member_pk(alice.user_id)), {})[
        0
    ]

    def subscriptions() -> int:
        return dict(redis.pubsub_numsub(alice_group)).get(alice_group.encode(), 0)

    carol = _open(first, world.acme["carol"].token)
    bob = _open(first, world.acme["bob"].token)
    for socket in (carol, bob):
        socket.send({"type": "presence_sub", "ids": [alice.user_id]})
        socket.until(lambda f: f.get("type") == "presence_change")
    assert subscriptions() == 1
    carol.send({"type": "presence_sub", "ids": []})
    tab = _open(first, alice.token)
    assert bob.until(lambda f: f.get("type") == "presence_change")["presence"] == "active"
    assert _presence_frames(carol, 0.3) == []
    assert subscriptions() == 1
    bob.close()
    deadline = time.monotonic() + 5
    while subscriptions() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subscriptions() == 0
    for socket in (carol, tab):
        socket.close()


@pytest.mark.parametrize("outsider_first", [True, False])
def test_another_teams_member_cannot_be_subscribed(world: World, daphnes, outsider_first: bool) -> None:
    """A socket naming a member of another team hears nothing of them, and the member's own
    team still hears them, whichever subscribed first in the process."""
    first, _ = daphnes
    alice = world.acme["alice"]
    dave = _open(first, world.globex["dave"].token)
    carol = _open(first, world.acme["carol"].token)
    order = [dave, carol] if outsider_first else [carol, dave]
    for socket in order:
        socket.send({"type": "presence_sub", "ids": [alice.user_id]})
        if socket is carol:
            assert carol.until(lambda f: f.get("type") == "presence_change")["presence"] == "away"
    tab = _open(first, alice.token)
    assert carol.until(lambda f: f.get("type") == "presence_change")["presence"] == "active"
    assert _presence_frames(dave, 0.5) == []
    assert [f for f in dave.seen if f.get("type") == "presence_change"] == []
    for socket in (dave, carol, tab):
        socket.close()

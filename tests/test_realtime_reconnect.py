"""Coming back after a drop: reconnect_url, replay from the hub's ring, refusals under load."""

import json
from dataclasses import asdict, replace
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from messaging.realtime import tickets
from tests.conftest import World
from tests.rtm_client import RtmSocket, messages, refused, web
from tests.servers import running_daphne

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with running_daphne() as own:
        yield own


def with_since(url: str, since: int) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, "since": str(since)})))


def last_event_id(socket: RtmSocket) -> int:
    return max(f["event_id"] for f in socket.seen if "event_id" in f)


def drop_while_three_are_posted(world: World, server, bob: RtmSocket) -> tuple[str, int]:
    """Bob sees one message, drops, and misses three: his reconnect_url and his cursor."""
    alice = web(server, world.acme["alice"].token)
    general = world.acme.channels["general"]
    reconnect = bob.until(lambda f: f.get("type") == "reconnect_url")["url"]
    alice.chat_postMessage(channel=general, text="seen")
    bob.until(lambda f: f.get("text") == "seen")
    cursor = last_event_id(bob)
    bob.close()
    for n in range(3):
        alice.chat_postMessage(channel=general, text=f"missed {n}")
    return reconnect, cursor


def test_reconnect_url_resumes_from_the_cursor_without_rtm_connect_once(world: World, server) -> None:
    alice = web(server, world.acme["alice"].token)
    general = world.acme.channels["general"]
    bob = RtmSocket.open(server, world.acme["bob"].token)
    assert bob.recv()["type"] == "hello"
    reconnect, cursor = drop_while_three_are_posted(world, server, bob)
    assert reconnect.startswith(server.ws + "/rtm/?ticket=")
    assert "since" not in parse_qs(urlsplit(reconnect).query)  # the client adds the id it saw last
    back = RtmSocket(with_since(reconnect, cursor))
    assert back.recv()["type"] == "hello"
    back.until(lambda f: f.get("text") == "missed 2")
    alice.chat_postMessage(channel=general, text="live again")
    back.until(lambda f: f.get("text") == "live again")
    assert messages(back.seen) == ["missed 0", "missed 1", "missed 2", "live again"]
    ids = [f["event_id"] for f in back.seen if "event_id" in f]
    assert ids == sorted(set(ids)) and ids[0] == cursor + 1
    back.close()

    assert refused(with_since(reconnect, cursor)) == 403  # used once already


def test_a_tampered_reconnect_url_is_refused(world: World, server) -> None:
    bob = RtmSocket.open(server, world.acme["bob"].token)
    url = bob.until(lambda f: f.get("type") == "reconnect_url")["url"]
    bob.close()
    ticket = parse_qs(urlsplit(url).query)["ticket"][0]
    forged = ticket[:-3] + ("AAA" if not ticket.endswith("AAA") else "BBB")
    assert refused(f"{server.ws}/rtm/?ticket={forged}") == 403


def test_a_cursor_older_than_the_ring_replays_from_the_log(world: World, server) -> None:
    """A socket whose cursor predates the hub (a fresh process) reads the log, exactly once."""
    alice = web(server, world.acme["alice"].token)
    general = world.acme.channels["general"]
    boot = web(server, world.acme["bob"].token).rtm_connect()
    for n in range(5):
        alice.chat_postMessage(channel=general, text=f"old {n}")
    with running_daphne() as fresh:  # its hub starts after these events: they are not in its ring
        socket = RtmSocket(with_since(boot["url"].replace(server.ws, fresh.ws), boot["event_cursor"]))
        socket.until(lambda f: f.get("text") == "old 4")
        alice.chat_postMessage(channel=general, text="new")
        socket.until(lambda f: f.get("text") == "new")
        assert messages(socket.seen) == [f"old {n}" for n in range(5)] + ["new"]
        socket.close()


def test_sockets_beyond_the_connecting_limit_are_refused_with_retry_after(world: World) -> None:
    with running_daphne({"CHAT_SOCKETS_CONNECTING_MAX": "0"}) as own:
        socket = RtmSocket.open(own, world.acme["bob"].token)
        frame = socket.recv()
        assert frame["type"] == "error" and frame["error"]["code"] == "ratelimited"
        assert frame["error"]["retry_after"] >= 1
        socket.recv(timeout=1)
        assert socket.closed_code == 4029


def test_a_cursor_pruned_from_the_log_gets_resync_required_though_the_hub_had_it(
    world: World, server
) -> None:
    from messaging.events import prune_event_log

    bob = RtmSocket.open(server, world.acme["bob"].token)  # the team's hub now holds its events
    reconnect, cursor = drop_while_three_are_posted(world, server, bob)
    assert prune_event_log(world.acme.team.shard, 0) > 0
    back = RtmSocket(with_since(reconnect, cursor))
    back.until(lambda f: f.get("type") == "hello")
    assert back.until(lambda f: f.get("type") == "error")["error"]["code"] == "resync_required"
    assert messages(back.seen) == []


def test_a_socket_costs_no_redis_subscription_of_its_own(world: World, server) -> None:
    """What a socket hears comes from its process's team hub: a reconnect storm must not
    make one SUBSCRIBE (and later UNSUBSCRIBE) per socket."""
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    first = RtmSocket.open(server, world.acme["alice"].token)  # the team's hub is subscribed now
    first.until(lambda f: f.get("type") == "reconnect_url")
    before = set(redis.pubsub_channels())
    more = [RtmSocket.open(server, world.acme[name].token) for name in ("bob", "carol", "bob")]
    for socket in more:
        socket.until(lambda f: f.get("type") == "reconnect_url")
    assert set(redis.pubsub_channels()) == before
    web(server, world.acme["alice"].token).chat_postMessage(
        channel=world.acme.channels["general"], text="all"
    )
    for socket in [first, *more]:
        socket.until(lambda f: f.get("text") == "all")
        socket.close()


def test_a_replayed_redemption_gets_the_same_grant_and_is_counted_once() -> None:
    """The admission call may run twice in Redis (its pipeline sent again after a lost
    connection): the replay must admit with the same grant, spending and counting nothing
    more, while any other attempt finds the ticket spent."""
    import asyncio

    from django_redis import get_redis_connection

    from messaging.realtime.admission import SOCKET_BUCKET, redeem_ticket

    redis = get_redis_connection("default")
    key, grant = "rtm:ticket:replayed-redemption-test", b'{"team_id": 1}'
    redis.set(key, grant, ex=60)

    async def redeem_twice() -> tuple[list, bytes | None, list, bytes | None, list]:
        first = await redeem_ticket(key, "", "attempt-one")
        counted = redis.get(SOCKET_BUCKET)
        replay = await redeem_ticket(key, "", "attempt-one")
        return first, counted, replay, redis.get(SOCKET_BUCKET), await redeem_ticket(key, "", "attempt-two")

    first, counted, replay, counted_after_replay, other = asyncio.run(redeem_twice())
    assert first == [b"0", grant] and replay == first
    assert counted_after_replay == counted
    assert other == [b"0"]
    assert redis.get(key) is None


def test_a_bad_argument_fails_only_its_own_call_in_the_batch() -> None:
    import asyncio

    from redis.exceptions import DataError

    from messaging.realtime.redis_batch import redis_batch

    async def together() -> list:
        batch = redis_batch()
        return await asyncio.gather(
            batch.call("SET", "batch-bad-argument", {"a": 1}), batch.call("PING"), return_exceptions=True
        )

    bad, ping = asyncio.run(together())
    assert isinstance(bad, DataError)
    assert ping is True


def test_ticket_text_outside_the_token_alphabet_names_no_key() -> None:
    """A ticket is what secrets.token_urlsafe writes; anything else (':' above all, which
    could name a ticket's spent marker) is refused before Redis is asked."""
    plain, reconnect = "Ab0_-x", f"{tickets.RECONNECT_PREFIX}Sock_1.Nonce-2"
    assert tickets.ticket_location(plain) == (tickets._key(plain), "")
    assert tickets.ticket_location(reconnect) is not None
    prefix = tickets.RECONNECT_PREFIX
    for text in (f"{plain}:spent", "", f"{prefix}Sock:1.Nonce", f"{prefix}Sock.", f"{prefix}.Nonce"):
        assert tickets.ticket_location(text) is None


def test_a_ticket_of_another_release_still_admits() -> None:
    """A rolling deploy: gateways of two releases redeem each other's tickets (and reconnect
    URLs); a field one of them does not know is left out, a missing one takes its default."""
    grant = tickets.Ticket(1, 2, None, "user", 3, 40, batch_presence_aware=True, session="abc")
    newer = json.dumps({**asdict(grant), "field_of_a_later_release": True})
    assert tickets.grant_of(newer) == grant
    older = {k: v for k, v in asdict(grant).items() if k not in ("batch_presence_aware", "session")}
    assert tickets.grant_of(json.dumps(older)) == replace(grant, batch_presence_aware=False, session=None)

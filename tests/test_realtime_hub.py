"""Races and grants at the team hub: a socket ahead of the hub, revoked reconnects."""

import asyncio
import json
import time
import urllib.request

import pytest
from django.db import connections, transaction
from django.utils.crypto import get_random_string

from messaging import events
from messaging.models import ChannelMember, Event
from messaging.realtime.delivery import read_head
from messaging.realtime.hub import SUBSCRIBED_WITHIN_SECS
from messaging.realtime.wire import Frame
from teams.actions import reset_member_tokens, set_member_active
from teams.directory import forget_team
from teams.models import Team
from tests.browser import session_cookie
from tests.conftest import World, member_pk
from tests.rtm_client import RtmSocket, messages, refused, web
from tests.servers import running_daphne
from tests.test_realtime_reconnect import with_since

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with running_daphne() as own:
        yield own


def wait_for_lock_waiter(table: str, timeout: float = 10.0) -> None:
    """Until some session waits for a lock on `table` (the server's read, blocked)."""
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                [f"%{table}%"],
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError(f"nobody waited on {table}")


def test_a_socket_ahead_of_the_hub_gets_what_the_hub_passes_while_it_checks(
    world: World, server, api, monkeypatch
) -> None:
    """The socket's boot read a head this process's hub has not heard yet; while the socket
    checks its cursor against the log, the hub catches up past it. What it passed reaches
    the socket exactly once."""
    team, general = world.acme.team, world.acme.channels["general"]
    bob = RtmSocket.open(server, world.acme["bob"].token)  # the team's hub is running
    assert bob.recv()["type"] == "hello"
    held: list[events.AppendedEvent] = []
    with monkeypatch.context() as patch:  # committed, not yet published: the hub is behind
        patch.setattr(events, "publish", held.append)
        api("chat.postMessage", world.acme["alice"].token, channel=general, text="held")
        cursor = read_head(team.shard, team.id)
        api("chat.postMessage", world.acme["alice"].token, channel=general, text="after")
    url = with_since(web(server, world.acme["bob"].token).rtm_connect()["url"], cursor)
    table = Event._meta.db_table
    with transaction.atomic(using=team.shard):
        connections[team.shard].cursor().execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        back = RtmSocket(url)
        wait_for_lock_waiter(table)  # the new socket is checking its cursor
        for event in held:
            events.publish(event)
        bob.until(lambda f: f.get("text") == "after")  # the hub has passed the cursor
    back.until(lambda f: f.get("text") == "after")
    web(server, world.acme["alice"].token).chat_postMessage(channel=general, text="last")
    back.until(lambda f: f.get("text") == "last")
    assert messages(back.seen) == ["after", "last"]
    ids = [f["event_id"] for f in back.seen if "event_id" in f]
    assert ids == sorted(set(ids)) and ids[0] == cursor + 1
    back.close()
    bob.close()


def test_a_revoked_token_closes_its_sockets_and_its_reconnect_url_is_refused(world: World, server) -> None:
    first = RtmSocket.open(server, world.acme["bob"].token)
    reconnect = first.until(lambda f: f.get("type") == "reconnect_url")["url"]
    first.close()
    bob = RtmSocket(reconnect)  # the token's grant is checked (and cached as live) here
    reconnect = bob.until(lambda f: f.get("type") == "reconnect_url")["url"]
    bob.drain(0.2)
    reset_member_tokens(world.acme.team, member_pk(world.acme["bob"].user_id))
    assert bob.until(lambda f: f.get("type") == "tokens_revoked")
    bob.recv(timeout=5)
    assert bob.closed_code == 4003
    assert refused(reconnect) == 403


def test_a_deactivated_member_is_closed_and_cannot_come_back_by_reconnect_url(world: World, server) -> None:
    carol = RtmSocket.open(server, world.acme["carol"].token)
    reconnect = carol.until(lambda f: f.get("type") == "reconnect_url")["url"]
    set_member_active(world.acme.team, member_pk(world.acme["carol"].user_id), False)
    carol.until(lambda f: f.get("type") == "user_change" and f["user"].get("deleted"))
    carol.recv(timeout=5)
    assert carol.closed_code == 4003
    assert refused(reconnect) == 403


def test_a_renewed_reconnect_url_replaces_the_earlier_one(world: World) -> None:
    with running_daphne({"CHAT_RTM_RECONNECT_TTL_SECS": "4"}) as own:  # renewed every 2-3 s
        bob = RtmSocket.open(own, world.acme["bob"].token)
        first = bob.until(lambda f: f.get("type") == "reconnect_url")["url"]
        second = bob.until(lambda f: f.get("type") == "reconnect_url")["url"]
        bob.close()
        assert refused(first) == 403  # renewed: the earlier URL no longer admits
        back = RtmSocket(second)
        assert back.recv()["type"] == "hello"
        back.close()
        assert refused(second) == 403  # used once


def test_a_socket_joining_a_hub_stopped_meanwhile_joins_a_new_one(world: World) -> None:
    """The sweeper stops an idle hub while a socket reads its member's conversations."""
    with running_daphne({"CHAT_HUB_IDLE_SECS": "0.5"}) as own:
        bob = RtmSocket.open(own, world.acme["bob"].token)
        bob.until(lambda f: f.get("type") == "hello")
        bob.close()  # the hub is idle from now
        url = web(own, world.acme["carol"].token).rtm_connect()["url"]
        table = ChannelMember._meta.db_table
        with transaction.atomic(using=world.acme.team.shard):
            connections[world.acme.team.shard].cursor().execute(
                f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            )
            carol = RtmSocket(url)
            wait_for_lock_waiter(table)
            time.sleep(1.5)  # swept
        carol.until(lambda f: f.get("type") == "hello")
        web(own, world.acme["alice"].token).chat_postMessage(
            channel=world.acme.channels["general"], text="hi"
        )
        carol.until(lambda f: f.get("text") == "hi")
        carol.close()


def test_a_hub_left_on_the_old_shard_says_goodbye_to_its_sockets(world: World) -> None:
    """A socket for the team's new shard arrives while this process's hub still serves the
    old one (its team.moving never came): the old hub's sockets are told to reconnect."""
    with running_daphne() as own:
        bob = RtmSocket.open(own, world.acme["bob"].token)
        bob.until(lambda f: f.get("type") == "reconnect_url")
        url = web(own, world.acme["carol"].token).rtm_connect()["url"]
        Team.objects.filter(id=world.acme.team.id).update(shard="shard_1")  # the directory moves it
        forget_team(world.acme.team.id)
        RtmSocket(url).drain(0.2)  # joins the team's hub on shard_1
        bob.until(lambda f: f.get("type") == "goodbye")


def test_auth_revoke_closes_the_sockets_and_refuses_a_ticket_issued_before(world: World, server) -> None:
    client = web(server, world.acme["carol"].token)
    early_url = client.rtm_connect()["url"]  # a one-minute ticket, issued while the token held
    carol = RtmSocket.open(server, world.acme["carol"].token)
    carol.until(lambda f: f.get("type") == "reconnect_url")
    assert client.auth_revoke()["revoked"]
    assert carol.until(lambda f: f.get("type") == "tokens_revoked")
    carol.recv(timeout=5)
    assert carol.closed_code == 4003
    # Whatever `since` it picks, a socket of the revoked token is not admitted.
    assert refused(with_since(early_url, read_head(world.acme.team.shard, world.acme.team.id))) == 403


def _as_session(server, cookie: dict[str, str], path: str) -> bytes:
    """POST `path` to the server as a signed-in browser tab: the session cookie, and the
    CSRF token in both its cookie and the header, as the web client sends them."""
    csrf = get_random_string(32)
    request = urllib.request.Request(
        server.http + path,
        method="POST",
        headers={"Cookie": f"{cookie['name']}={cookie['value']}; csrftoken={csrf}", "X-CSRFToken": csrf},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def test_a_socket_joining_as_its_session_signs_out_is_shut_out(world: World, server) -> None:
    """A tab's socket is admitted while its session is signed in, then the session signs
    out while the socket reads its member's conversations, before it is in the hub: the
    hub hands session.ended to the sockets live by then, so this one must find the
    sign-out for itself once it joins, and close as its session's other sockets do."""
    team, general = world.acme.team, world.acme.channels["general"]
    bob = RtmSocket.open(server, world.acme["bob"].token)  # the team's hub is running
    carol = RtmSocket.open(server, world.acme["carol"].token)
    for sock in (bob, carol):
        sock.until(lambda f: f.get("type") == "reconnect_url")
    cookie = session_cookie("alice@acme.test", team.id)
    url = json.loads(_as_session(server, cookie, "/api/rtm.connect"))["url"]
    table = ChannelMember._meta.db_table
    with transaction.atomic(using=team.shard):
        connections[team.shard].cursor().execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        tab = RtmSocket(url)  # admitted: the session had not signed out
        wait_for_lock_waiter(table)  # reading alice's conversations, not yet in the hub
        _as_session(server, cookie, "/signout/")
        # Published after session.ended, so handed out by the hub after it too.
        carol.send({"type": "typing", "channel": general})
        bob.until(lambda f: f.get("type") == "user_typing")
    frames = tab.drain(2.0)  # until it closes, or stays quiet as a live socket would
    assert tab.closed_code == 4003, frames
    assert [f["type"] for f in frames] == ["hello"]  # and no reconnect_url
    bob.close()
    carol.close()


def test_a_socket_ahead_of_the_hub_misses_no_leave_it_skipped(world: World, server, api, monkeypatch) -> None:
    """Bob's membership as the hub has cached it predates his cursor; the kick between the
    two is skipped by his socket, so his view must come from the database, not that cache."""
    team, secret = world.acme.team, world.acme.channels["secret"]
    alice, general = world.acme["alice"].token, world.acme.channels["general"]
    bob = RtmSocket.open(server, world.acme["bob"].token)  # the hub caches bob's view
    bob.until(lambda f: f.get("type") == "reconnect_url")
    bob.close()
    held: list[events.AppendedEvent] = []
    with monkeypatch.context() as patch:  # committed, not yet published: the hub is behind
        patch.setattr(events, "publish", held.append)
        assert api("conversations.kick", alice, channel=secret, user=world.acme["bob"].user_id)["ok"]
        cursor = read_head(team.shard, team.id)
        api("chat.postMessage", alice, channel=secret, text="after the kick")
    back = RtmSocket(with_since(web(server, world.acme["bob"].token).rtm_connect()["url"], cursor))
    back.until(lambda f: f.get("type") == "reconnect_url")  # live, ahead of the hub
    for event in held:
        events.publish(event)
    api("chat.postMessage", alice, channel=general, text="last")
    back.until(lambda f: f.get("text") == "last")
    assert "after the kick" not in messages(back.seen)
    back.close()


def test_events_a_skip_passes_are_dropped_not_taken_for_a_gap_forever() -> None:
    """Events that arrived after a gap the log can no longer fill (pruned, or an import)
    are behind the head once the hub skips past it: left pending, each later event would
    look like a gap again and resync every socket."""
    from messaging.realtime.hub import TeamHub

    def event(event_id: int) -> dict:
        return {"event_id": event_id, "event": {"type": "message"}, "channel_id": None, "audience": None}

    async def skip() -> TeamHub:
        hub = TeamHub(1, "shard_0", lambda _hub: None)
        hub.head, hub.pending = 10, {12: event(12), 16: event(16)}
        hub._skip_to(15)
        return hub

    hub = asyncio.run(skip())
    assert (hub.head, hub.pending, [m["event_id"] for m in hub.ring]) == (16, {}, [16])


def test_an_event_a_new_hub_was_not_yet_subscribed_for_arrives_without_a_next_one(
    world: World, server, api, monkeypatch
) -> None:
    """Redis may take a new hub's subscription after an event committed past the hub's
    head was published: the hub reads the log again a moment after starting, so that
    event arrives though nothing follows it (played here by an event never published)."""
    bob = RtmSocket.open(server, world.acme["bob"].token)  # the team's first socket: a new hub
    assert bob.recv()["type"] == "hello"
    with monkeypatch.context() as patch:
        patch.setattr(events, "publish", lambda event: None)
        dm = api("conversations.open", world.acme["alice"].token, users=world.acme["bob"].user_id)
        api("chat.postMessage", world.acme["alice"].token, channel=dm["channel"]["id"], text="quiet dm")
    assert bob.until(lambda f: f.get("text") == "quiet dm", timeout=5)["type"] == "message"
    bob.close()


def test_an_event_lost_with_a_dropped_subscriber_connection_arrives_without_a_next_one(
    world: World, server, api
) -> None:
    """Redis drops a subscriber connection whose output buffer passes its limit (a slow
    process under load), losing what it held, and the layer connects again and
    resubscribes: in a quiet conversation no later event would reveal the gap. The
    reconnect makes the process's hubs read the log. (The limit is lowered here so that
    one large message drops the daphne's subscriber.)"""
    import redis
    from django.conf import settings

    bob = RtmSocket.open(server, world.acme["bob"].token)
    assert bob.recv()["type"] == "hello"
    dm = api("conversations.open", world.acme["alice"].token, users=world.acme["bob"].user_id)["channel"][
        "id"
    ]
    api("chat.postMessage", world.acme["alice"].token, channel=dm, text="before")
    bob.until(lambda f: f.get("text") == "before")
    time.sleep(SUBSCRIBED_WITHIN_SECS + 0.5)  # past the new hub's own read of the log
    client = redis.Redis.from_url(settings.REDIS_URL)
    limits = client.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
    subscribers = {c["id"] for c in client.client_list(_type="pubsub")}
    large = "lost with its connection " + "x" * 30_000
    client.config_set("client-output-buffer-limit", "pubsub 1024 1024 0")
    try:
        # Published by this process (not the daphne), through the Redis the daphne uses.
        api("chat.postMessage", world.acme["alice"].token, channel=dm, text=large)
        deadline = time.monotonic() + 5
        while subscribers <= {c["id"] for c in client.client_list(_type="pubsub")}:
            assert time.monotonic() < deadline, "Redis dropped no subscriber"
            time.sleep(0.02)
    finally:
        client.config_set("client-output-buffer-limit", limits)
    assert bob.until(lambda f: f.get("text") == large, timeout=10)["type"] == "message"
    bob.close()


class _JoiningSocket:
    """What TeamHub.join needs of a socket, recording what it is written."""

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor
        self.written: list[str] = []

    def write(self, frames: list[Frame]) -> None:
        self.written += [part.text for frame in frames for part in frame.parts]


def _join_from_the_log(
    world: World, sock: _JoiningSocket, member: str, monkeypatch: pytest.MonkeyPatch
) -> int:
    """A socket of `member` joins a hub that has just started (its ring holds nothing, so
    the replay comes from the log): the socket, and how many statements read the log."""
    from django.db.backends import utils

    from messaging.realtime.hub import TeamHub
    from messaging.realtime.pool import blocking

    team = world.acme.team
    log_reads = 0
    execute = utils.CursorWrapper.execute

    def counting(self: utils.CursorWrapper, sql: str, params: object = None) -> object:  # every thread's
        nonlocal log_reads
        log_reads += f'"{Event._meta.db_table}"' in sql
        return execute(self, sql, params)

    monkeypatch.setattr(utils.CursorWrapper, "execute", counting)

    async def join() -> None:
        hub = TeamHub(team.id, team.shard, lambda _hub: None)
        hub.head = await blocking(read_head)(team.shard, team.id)
        sock.viewer = await hub.members.viewer_for(member_pk(world.acme[member].user_id), sock.cursor)
        try:
            await hub.join(sock)
        finally:
            monkeypatch.undo()

    asyncio.run(join())
    return log_reads


def test_a_cursor_older_than_the_ring_reads_the_log_once(world: World, api, monkeypatch) -> None:
    """The check that no event after the cursor changed the member's conversations is
    made on the events the replay reads from the log, not by reading them again first."""
    team, general = world.acme.team, world.acme.channels["general"]
    cursor = read_head(team.shard, team.id)
    for n in range(3):
        api("chat.postMessage", world.acme["alice"].token, channel=general, text=f"away {n}")
    sock = _JoiningSocket(cursor)
    log_reads = _join_from_the_log(world, sock, "bob", monkeypatch)
    assert [text for text in sock.written if "away" in text] == [
        text for text in sock.written if '"type": "message"' in text
    ] and len(sock.written) == 3
    assert log_reads == 1


def test_a_change_to_the_members_conversations_in_the_log_resyncs_before_any_replay(
    world: World, api, monkeypatch
) -> None:
    """A kick after the cursor, beyond the first batch the join reads: the socket is told
    to boot again before it is written a single event (one from before the kick would be
    judged by the conversations after it)."""
    from messaging.realtime import delivery
    from messaging.realtime.delivery import ResyncRequired

    team, secret = world.acme.team, world.acme.channels["secret"]
    alice = world.acme["alice"].token
    cursor = read_head(team.shard, team.id)
    for n in range(3):
        api("chat.postMessage", alice, channel=secret, text=f"before the kick {n}")
    assert api("conversations.kick", alice, channel=secret, user=world.acme["bob"].user_id)["ok"]
    monkeypatch.setattr(delivery, "REPLAY_BATCH", 2)
    sock = _JoiningSocket(cursor)
    with pytest.raises(ResyncRequired, match="joined or left"):
        _join_from_the_log(world, sock, "bob", monkeypatch)
    assert sock.written == []


def test_sockets_resuming_from_one_cursor_share_one_worked_out_replay() -> None:
    """A reconnect storm's sockets dropped together: the ring's events after their cursor
    are worked out once, and each socket is written what it may see of them."""
    from messaging.realtime.delivery import Viewer
    from messaging.realtime.hub import TeamHub

    def message(event_id: int, channel_id: int) -> dict:
        event = {"type": "message", "channel": f"C{channel_id}", "text": f"m{event_id}"}
        return {"event_id": event_id, "event": event, "channel_id": channel_id, "audience": None}

    async def resume() -> tuple[TeamHub, list[_JoiningSocket]]:
        hub = TeamHub(1, "shard_0", lambda _hub: None)
        hub.receiver = asyncio.get_running_loop().create_future()  # as if started
        hub._take([message(n, 11 if n % 2 else 12) for n in range(1, 11)])
        sockets = []
        for member, channels, cursor in [(1, {11}, 4), (2, {11, 12}, 4), (3, {13}, 4), (4, {11}, 8)]:
            sock = _JoiningSocket(cursor)
            sock.viewer = Viewer(member, channels)
            await hub.join(sock)
            sockets.append(sock)
        hub.receiver.cancel()
        return hub, sockets

    hub, (first, both, neither, later) = asyncio.run(resume())
    assert sorted(hub.ring.replays) == [(4, 10), (8, 10)]
    texts = [[json.loads(text)["text"] for text in sock.written] for sock in (first, both, neither, later)]
    assert texts == [["m5", "m7", "m9"], ["m5", "m6", "m7", "m8", "m9", "m10"], [], ["m9"]]
    assert all(sock.cursor == 10 for sock in (first, both, neither, later))

"""The websocket gateway under real daphne processes, real Redis and PostgreSQL."""

import threading
import time

import pytest
from django_redis import get_redis_connection
from slack_sdk.errors import SlackApiError

from tests.conftest import World, without_joins
from tests.rtm_client import RtmSocket, messages, refused, web
from tests.servers import running_daphne

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture(scope="module")
def daphnes(django_db_setup, django_db_blocker):
    """Two daphne processes sharing Redis and the databases, as behind a load balancer."""
    with running_daphne() as first, running_daphne() as second:
        yield first, second


@pytest.fixture
def server(daphnes):
    return daphnes[0]


def test_rtm_connect_gives_a_one_time_url(world: World, server) -> None:
    answer = web(server, world.acme["bob"].token).rtm_connect()
    assert answer["self"] == {"id": world.acme["bob"].user_id, "name": "bob"}
    assert answer["team"]["id"] == world.acme.team.slack_id and answer["team"]["domain"] == "acme"
    assert answer["url"].startswith(server.ws + "/rtm/?ticket=") and isinstance(answer["event_cursor"], int)
    socket = RtmSocket(answer["url"])
    assert socket.recv() == {"type": "hello"}
    socket.close()
    assert refused(answer["url"]) == 403  # used once already


def test_message_posted_through_the_api_arrives(world: World, server) -> None:
    socket = RtmSocket.open(server, world.acme["bob"].token)
    assert socket.recv()["type"] == "hello"
    posted = web(server, world.acme["alice"].token).chat_postMessage(
        channel=world.acme.channels["general"], text="live one"
    )
    frame = socket.until(lambda f: f.get("type") == "message")
    assert frame["text"] == "live one" and frame["ts"] == posted["ts"]
    assert frame["channel"] == world.acme.channels["general"] and frame["user"] == world.acme["alice"].user_id
    assert isinstance(frame["event_id"], int)
    socket.close()


def test_private_and_dm_events_reach_only_members(world: World, server) -> None:
    bob = RtmSocket.open(server, world.acme["bob"].token)
    carol = RtmSocket.open(server, world.acme["carol"].token)
    alice = web(server, world.acme["alice"].token)
    alice.chat_postMessage(channel=world.acme.channels["secret"], text="secret plan")
    dm = alice.conversations_open(users=world.acme["bob"].user_id)["channel"]["id"]
    alice.chat_postMessage(channel=dm, text="just for bob")
    alice.chat_postMessage(channel=world.acme.channels["general"], text="for everyone")
    bob.until(lambda f: f.get("text") == "for everyone")
    carol.until(lambda f: f.get("text") == "for everyone")
    assert messages(bob.seen) == ["secret plan", "just for bob", "for everyone"]
    assert messages(carol.seen) == ["for everyone"]
    assert not any(f.get("type") == "im_created" for f in carol.seen)
    assert any(f.get("type") == "im_created" for f in bob.seen)
    bob.close()
    carol.close()


def test_events_between_boot_and_socket_arrive_exactly_once(world: World, server) -> None:
    bob_web, alice_web = web(server, world.acme["bob"].token), web(server, world.acme["alice"].token)
    general = world.acme.channels["general"]
    boot = bob_web.rtm_connect()
    for n in range(10):
        alice_web.chat_postMessage(channel=general, text=f"before {n}")

    def keep_posting() -> None:
        for n in range(30):
            alice_web.chat_postMessage(channel=general, text=f"during {n}")

    poster = threading.Thread(target=keep_posting)
    poster.start()
    time.sleep(0.05)
    socket = RtmSocket(boot["url"])  # connects while posts are landing
    poster.join()
    alice_web.chat_postMessage(channel=general, text="last")
    socket.until(lambda f: f.get("text") == "last")
    expected = [f"before {n}" for n in range(10)] + [f"during {n}" for n in range(30)] + ["last"]
    assert messages(socket.seen) == expected
    event_ids = [f["event_id"] for f in socket.seen if "event_id" in f]
    assert event_ids == sorted(set(event_ids))
    socket.close()


def test_delivery_across_daphne_processes(world: World, daphnes) -> None:
    first, second = daphnes
    socket = RtmSocket.open(first, world.acme["bob"].token)
    web(second, world.acme["alice"].token).chat_postMessage(
        channel=world.acme.channels["general"], text="via two"
    )
    assert socket.until(lambda f: f.get("type") == "message")["text"] == "via two"
    socket.close()


def test_send_over_the_socket_is_the_same_post(world: World, server) -> None:
    alice = RtmSocket.open(server, world.acme["alice"].token)
    bob = RtmSocket.open(server, world.acme["bob"].token)
    general = world.acme.channels["general"]
    alice.send(
        {
            "id": 1,
            "type": "message",
            "channel": general,
            "text": "over the socket",
            "client_msg_id": "5f1c0ad8-0000-4000-8000-000000000001",
        }
    )
    reply = alice.until(lambda f: f.get("reply_to") == 1)
    assert reply["ok"] and reply["text"] == "over the socket"
    alice.send(
        {
            "id": 2,
            "type": "message",
            "channel": general,
            "text": "over the socket",
            "client_msg_id": "5f1c0ad8-0000-4000-8000-000000000001",
        }
    )
    assert alice.until(lambda f: f.get("reply_to") == 2)["ts"] == reply["ts"]  # idempotent
    alice.send(
        {"id": 3, "type": "message", "channel": world.acme.channels["random"] + "X", "text": "nowhere"}
    )
    error = alice.until(lambda f: f.get("reply_to") == 3)
    assert error == {
        "ok": False,
        "reply_to": 3,
        "error": {"code": "channel_not_found", "msg": "channel_not_found"},
    }
    bob.until(lambda f: f.get("text") == "over the socket")
    history = web(server, world.acme["bob"].token).conversations_history(channel=general)["messages"]
    assert [m["text"] for m in without_joins(history)] == ["over the socket"]
    alice.send({"id": 4, "type": "ping", "time": 123})
    assert alice.until(lambda f: f.get("type") == "pong") == {"type": "pong", "reply_to": 4, "time": 123}
    alice.close()
    bob.close()


def test_typing_goes_to_members_of_that_conversation(world: World, server) -> None:
    alice = RtmSocket.open(server, world.acme["alice"].token)
    bob = RtmSocket.open(server, world.acme["bob"].token)
    carol = RtmSocket.open(server, world.acme["carol"].token)
    for socket in (alice, bob, carol):
        socket.until(lambda f: f.get("type") == "hello")
    alice.send({"type": "typing", "channel": world.acme.channels["secret"]})
    alice.send({"type": "typing", "channel": world.acme.channels["secret"]})  # throttled
    typing = bob.until(lambda f: f.get("type") == "user_typing")
    assert typing == {
        "type": "user_typing",
        "channel": world.acme.channels["secret"],
        "user": world.acme["alice"].user_id,
    }
    assert [f for f in bob.drain(0.5) if f.get("type") == "user_typing"] == []
    assert [f for f in carol.drain(0.3) if f.get("type") == "user_typing"] == []
    assert [f for f in alice.drain(0.3) if f.get("type") == "user_typing"] == []
    for socket in (alice, bob, carol):
        socket.close()


def test_typing_in_a_thread_names_the_thread(world: World, server) -> None:
    alice_api = web(server, world.acme["alice"].token)
    secret, general = world.acme.channels["secret"], world.acme.channels["general"]
    dm = alice_api.conversations_open(users=world.acme["bob"].user_id)["channel"]["id"]
    parent = alice_api.chat_postMessage(channel=secret, text="a thread")["ts"]
    alice = RtmSocket.open(server, world.acme["alice"].token)
    bob = RtmSocket.open(server, world.acme["bob"].token)
    for socket in (alice, bob):
        socket.until(lambda f: f.get("type") == "hello")

    alice.send({"type": "typing", "channel": secret, "thread_ts": parent})
    alice.send({"type": "typing", "channel": secret, "thread_ts": parent})  # throttled
    # The channel's indicator is another one: not held back by the thread's throttle ...
    alice.send({"type": "typing", "channel": secret})
    # ... but a third place in the same period is: a new thread_ts per frame gets no more.
    alice.send({"type": "typing", "channel": secret, "thread_ts": "1234567890.123456"})
    # A malformed thread_ts is left out: typing in the channel, not an error.
    alice.send({"type": "typing", "channel": general, "thread_ts": "yesterday"})
    alice.send({"type": "typing", "channel": dm, "thread_ts": 1234567890.123456})  # not a string
    # Slack's shorter form is passed on in full, as message events carry a ts.
    alice.send({"type": "typing", "channel": dm, "thread_ts": "1234567890.5"})

    user = world.acme["alice"].user_id
    typing = [bob.until(lambda f: f.get("type") == "user_typing") for _ in range(5)]
    assert typing == [
        {"type": "user_typing", "channel": secret, "thread_ts": parent, "user": user},
        {"type": "user_typing", "channel": secret, "user": user},
        {"type": "user_typing", "channel": general, "user": user},
        {"type": "user_typing", "channel": dm, "user": user},
        {"type": "user_typing", "channel": dm, "thread_ts": "1234567890.500000", "user": user},
    ]
    assert [f for f in bob.drain(0.5) if f.get("type") == "user_typing"] == []
    assert [f for f in alice.drain(0.3) if f.get("type") == "user_typing"] == []
    for socket in (alice, bob):
        socket.close()


def test_pruned_cursor_gets_resync_required(world: World, server) -> None:
    from chatproject.dbrouter import on_shard
    from messaging.models import Event

    alice_web = web(server, world.acme["alice"].token)
    boot = web(server, world.acme["bob"].token).rtm_connect()
    for n in range(3):
        alice_web.chat_postMessage(channel=world.acme.channels["general"], text=str(n))
    with on_shard("shard_0"):
        Event.objects.filter(team_id=world.acme.team.id, event_id__lte=boot["event_cursor"] + 1).delete()
    socket = RtmSocket(boot["url"])
    socket.until(lambda f: f.get("type") == "hello")
    error = socket.until(lambda f: f.get("type") == "error")
    assert error["error"]["code"] == "resync_required"
    socket.recv(timeout=2)
    assert socket.closed_code == 4002


def test_a_cursor_whose_every_later_event_was_pruned_gets_resync_required(world: World, server) -> None:
    """Nothing newer than the pruned events exists: the socket must not take the empty
    log for "caught up" and silently miss them."""
    from chatproject.dbrouter import on_shard
    from messaging.models import Event

    alice_web = web(server, world.acme["alice"].token)
    boot = web(server, world.acme["bob"].token).rtm_connect()
    for n in range(3):
        alice_web.chat_postMessage(channel=world.acme.channels["general"], text=str(n))
    with on_shard("shard_0"):
        Event.objects.filter(team_id=world.acme.team.id, event_id__gt=boot["event_cursor"]).delete()
    socket = RtmSocket(boot["url"])
    socket.until(lambda f: f.get("type") == "hello")
    error = socket.until(lambda f: f.get("type") == "error")
    assert error["error"]["code"] == "resync_required"


def test_bad_ticket_is_refused(server) -> None:
    assert refused(f"{server.ws}/rtm/?ticket=forged") == 403


def test_goodbye_on_shutdown(world: World) -> None:
    with running_daphne() as own:
        socket = RtmSocket.open(own, world.acme["bob"].token)
        socket.until(lambda f: f.get("type") == "hello")
        own.process.terminate()
        assert socket.until(lambda f: f.get("type") == "goodbye", timeout=10)["type"] == "goodbye"


def test_rtm_connect_rate_is_bounded_per_team(world: World) -> None:
    with running_daphne({"CHAT_BOOT_RATE_PER_TEAM": "2"}) as own:
        client = web(own, world.acme["bob"].token)
        statuses = []
        for _ in range(6):
            try:
                client.rtm_connect()
                statuses.append(200)
            except SlackApiError as error:
                statuses.append(error.response.status_code)
                retry_after = int(error.response.headers["Retry-After"])
                assert 1 <= retry_after <= 3
        assert statuses[:2] == [200, 200] and 429 in statuses


def test_slack_sdk_rtm_client_receives_and_stays_connected(world: World, server) -> None:
    from slack_sdk.rtm_v2 import RTMClient

    alice_web = web(server, world.acme["alice"].token)
    general = world.acme.channels["general"]
    alice_web.conversations_invite(channel=general, users=world.acme.bot.user_id)
    received: list[dict] = []
    closes: list[int] = []
    rtm = RTMClient(
        web_client=web(server, world.acme.bot.token),
        ping_interval=1,
        on_close_listeners=[lambda code, reason: closes.append(code)],
    )

    @rtm.on("message")
    def on_message(client, event: dict) -> None:
        received.append(event)

    rtm.connect()
    try:
        session = rtm.session_id()
        time.sleep(4.5)  # several ping intervals with nothing else happening
        assert rtm.is_connected() and rtm.session_id() == session and closes == []
        alice_web.chat_postMessage(channel=general, text="hello bot")
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e["text"] for e in received] == ["hello bot"]
        assert received[0]["user"] == world.acme["alice"].user_id
        assert rtm.session_id() == session
    finally:
        rtm.close()


def test_companion_events_for_joins_leaves_and_replies(world: World, server) -> None:
    carol = RtmSocket.open(server, world.acme["carol"].token)
    carol.until(lambda f: f.get("type") == "hello")
    carol_web, alice_web = web(server, world.acme["carol"].token), web(server, world.acme["alice"].token)
    random = world.acme.channels["random"]
    carol_web.conversations_join(channel=random)
    joined = carol.until(lambda f: f.get("type") == "channel_joined")
    assert joined["channel"]["id"] == random and joined["channel"]["is_member"]
    parent = alice_web.chat_postMessage(channel=random, text="thread?")["ts"]
    alice_web.chat_postMessage(channel=random, text="reply", thread_ts=parent)
    replied = carol.until(lambda f: f.get("subtype") == "message_replied")
    assert replied["message"]["ts"] == parent and replied["message"]["reply_count"] == 1
    alice_web.conversations_invite(channel=world.acme.channels["secret"], users=world.acme["carol"].user_id)
    assert carol.until(lambda f: f.get("type") == "group_joined")["channel"]["name"] == "secret"
    carol_web.conversations_leave(channel=random)
    assert carol.until(lambda f: f.get("type") == "channel_left")["channel"] == random
    assert not any(k.startswith("_") for f in carol.seen for k in f)
    carol.close()


def test_a_private_channels_system_messages_reach_only_its_members(world: World, server) -> None:
    """An invite to a private channel and a removal from it are said in it: its members
    hear them (the one added after their group_joined, the one removed before their
    group_left), someone outside it hears nothing of either."""
    bob, carol = (RtmSocket.open(server, world.acme[name].token) for name in ("bob", "carol"))
    for socket in (bob, carol):
        socket.until(lambda f: f.get("type") == "hello")
    alice = web(server, world.acme["alice"].token)
    alice_id, bob_id = world.acme["alice"].user_id, world.acme["bob"].user_id
    plans = alice.conversations_create(name="plans", is_private=True)["channel"]["id"]
    alice.conversations_invite(channel=plans, users=bob_id)
    joined = bob.until(lambda f: f.get("subtype") == "channel_join")
    assert (joined["channel"], joined["user"], joined["inviter"]) == (plans, bob_id, alice_id)
    assert joined["text"] == f"<@{bob_id}> has joined the channel"
    alice.conversations_kick(channel=plans, user=bob_id)
    bob.until(lambda f: f.get("type") == "group_left")
    said = [
        (f.get("type"), f.get("subtype"))
        for f in bob.seen
        if f.get("type") in ("message", "group_joined", "group_left")
    ]
    assert said == [
        ("group_joined", None),
        ("message", "channel_join"),
        ("message", "channel_leave"),
        ("group_left", None),
    ]
    alice.chat_postMessage(channel=world.acme.channels["general"], text="for everyone")
    carol.until(lambda f: f.get("text") == "for everyone")
    assert [f for f in carol.seen if f.get("type") == "message"] == [carol.seen[-1]]
    bob.close()
    carol.close()


def test_socket_accepts_are_bounded(world: World) -> None:
    with running_daphne({"CHAT_SOCKET_ACCEPT_RATE": "1"}) as own:
        client = web(own, world.acme["bob"].token)
        urls = [client.rtm_connect()["url"] for _ in range(4)]
        sockets = [RtmSocket(url) for url in urls]  # four at once against one per second
        frames = []
        for socket in sockets:
            frames.append(socket.recv())
            socket.recv(timeout=0.5)
            frames.append({"closed": socket.closed_code})
        busy = [f for f in frames if f and f.get("type") == "error"]
        assert busy and busy[0]["error"]["code"] == "ratelimited" and busy[0]["error"]["retry_after"] >= 1
        assert {"closed": 4029} in frames and {"type": "hello"} in frames
    # The accept bucket is shared by every daphne: one second per socket here must not
    # hold up the next test's server.
    get_redis_connection("default").delete("adm:socket:all")


def test_a_cursor_from_before_an_import_gets_resync_required(server, tmp_path) -> None:
    """An import into an existing team is one `team_imported` event, not its history: a
    client that booted before it must boot again to see the new members and channels."""
    from jobs.slack_export.importer import run_import
    from jobs.slack_export.reserve import start_import
    from teams.actions import create_team
    from tests import slack_fixtures as fx

    created = create_team("rtmimportco", "Rtm Import", "alice@old.test", password="pw", shard="shard_1")
    before = web(server, created.owner_token).rtm_connect()
    archive = fx.write_zip(tmp_path / "old.zip", fx.export_files())
    assert run_import(start_import(archive, domain="rtmimportco").id).status == "done"
    after = web(server, created.owner_token).rtm_connect()
    assert after["event_cursor"] > before["event_cursor"]
    old_cursor = f"since={before['event_cursor']}"
    stale = RtmSocket(after["url"].replace(f"since={after['event_cursor']}", old_cursor))
    stale.until(lambda f: f.get("type") == "hello")
    error = stale.until(lambda f: f.get("type") == "error")
    assert error["error"]["code"] == "resync_required"
    stale.recv(timeout=2)
    assert stale.closed_code == 4002
    fresh = RtmSocket.open(server, created.owner_token)  # a boot after the import goes live
    fresh.until(lambda f: f.get("type") == "hello")
    assert [f for f in fresh.drain(0.5) if f.get("type") == "error"] == []
    fresh.close()


def test_a_join_or_leave_after_the_cursor_makes_the_socket_boot_again(world: World, daphnes) -> None:
    """A socket judges the events after its cursor by the member's conversations as they
    stand now: an invite or a kick in between would show them a private message from
    before they were invited, or hide one from before they left. It resyncs instead, on the
    process whose hub remembers the member (from its ring) and on one that reads the log
    (its hub starts at the connect)."""
    alice = web(daphnes[0], world.acme["alice"].token)
    carol = web(daphnes[0], world.acme["carol"].token)
    secret, carol_id = world.acme.channels["secret"], world.acme["carol"].user_id
    live = RtmSocket(carol.rtm_connect()["url"])  # the first hub now holds carol's conversations
    live.until(lambda f: f.get("type") == "hello")

    def boots_again(boot_urls: list[str]) -> None:  # tickets are one-time: one per process
        for server, boot_url in zip(daphnes, boot_urls, strict=False):
            socket = RtmSocket(boot_url.replace(f":{daphnes[0].port}/", f":{server.port}/"))
            assert socket.until(lambda f: f.get("type") == "error")["error"]["code"] == "resync_required"
            assert not {"before carol", "before the kick"} & set(messages(socket.seen))
            socket.close()

    invited_boots = [carol.rtm_connect()["url"] for _ in daphnes]
    alice.chat_postMessage(channel=secret, text="before carol")
    alice.conversations_invite(channel=secret, users=carol_id)
    live.until(lambda f: f.get("type") == "group_joined")  # the first hub is past the invite
    boots_again(invited_boots)
    fresh = RtmSocket(carol.rtm_connect()["url"])  # booted again, past the invite: live
    alice.chat_postMessage(channel=secret, text="after carol")
    assert fresh.until(lambda f: f.get("text") == "after carol")

    kicked_boot = carol.rtm_connect()["url"]  # the first process only: the second's hub lives on
    alice.chat_postMessage(channel=secret, text="before the kick")
    alice.conversations_kick(channel=secret, user=carol_id)
    live.until(lambda f: f.get("type") == "group_left")
    boots_again([kicked_boot])
    live.close()
    fresh.close()

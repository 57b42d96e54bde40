"""The event log: one event per write, strictly increasing ids, published after commit."""

import json
import time

import pytest
import redis
from channels.layers import get_channel_layer
from django.conf import settings

from chatproject.dbrouter import on_shard
from messaging.events import GROUP_PREFIX, team_group
from messaging.models import ChannelMember, Event, Message, Reaction
from tests.conftest import World

pytestmark = pytest.mark.django_db(databases="__all__")


def _events(world: World) -> list[Event]:
    with on_shard(world.acme.team.shard):
        return list(Event.objects.filter(team_id=world.acme.team.id).order_by("event_id"))


def _ok(answer: dict) -> dict:
    assert answer["ok"], answer
    return answer


def test_each_write_appends_exactly_one_event(world: World, api) -> None:
    """One event per write, or the write's and its system message's (a join says so in the
    channel), appended together with consecutive ids."""
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    steps = [
        ("chat.postMessage", alice, {"channel": general, "text": "one"}, "message"),
        ("reactions.add", bob, {"channel": general, "timestamp": "{ts}", "name": "eyes"}, "reaction_added"),
        ("chat.update", alice, {"channel": general, "ts": "{ts}", "text": "uno"}, "message"),
        ("pins.add", bob, {"channel": general, "timestamp": "{ts}"}, "pin_added"),
        ("conversations.create", alice, {"name": "fresh"}, "channel_created message"),
        (
            "conversations.join",
            bob,
            {"channel": world.acme.channels["random"]},
            "member_joined_channel message",
        ),
        ("conversations.mark", bob, {"channel": general, "ts": "{ts}"}, "channel_marked"),
        (
            "reactions.remove",
            bob,
            {"channel": general, "timestamp": "{ts}", "name": "eyes"},
            "reaction_removed",
        ),
        ("chat.delete", alice, {"channel": general, "ts": "{ts}"}, "message"),
    ]
    ts = ""
    for method, token, args, event_types in steps:
        before = _events(world)
        answer = _ok(api(method, token, **{k: v.format(ts=ts) for k, v in args.items()}))
        ts = answer.get("ts", ts)
        new = _events(world)[len(before) :]
        assert [e.type for e in new] == event_types.split(), method
        assert [e.event_id for e in new] == [before[-1].event_id + 1 + i for i in range(len(new))], method
        if len(new) == 2:
            assert new[1].payload["subtype"] == "channel_join", method


def test_event_payloads_have_slack_shapes(world: World, api) -> None:
    general = world.acme.channels["general"]
    posted = _ok(api("chat.postMessage", world.acme["alice"].token, channel=general, text="shape"))
    _ok(api("chat.update", world.acme["alice"].token, channel=general, ts=posted["ts"], text="shaped"))
    _ok(api("chat.delete", world.acme["alice"].token, channel=general, ts=posted["ts"]))
    message, changed, deleted = [e.payload for e in _events(world)[-3:]]
    assert message == {
        **message,
        "type": "message",
        "channel": general,
        "ts": posted["ts"],
        "text": "shape",
        "user": world.acme["alice"].user_id,
        "channel_type": "channel",
    }
    assert changed["subtype"] == "message_changed" and changed["message"]["text"] == "shaped"
    assert changed["previous_message"]["text"] == "shape"
    assert deleted["subtype"] == "message_deleted" and deleted["deleted_ts"] == posted["ts"]


def test_private_and_dm_events_name_their_audience(world: World, api) -> None:
    secret = world.acme.channels["secret"]
    _ok(api("chat.postMessage", world.acme["bob"].token, channel=secret, text="between us"))
    dm = _ok(api("conversations.open", world.acme["alice"].token, users=world.acme["carol"].user_id))
    secret_event, dm_event = _events(world)[-2:]
    assert secret_event.channel_id is not None and secret_event.audience is None
    assert dm_event.type == "im_created" and dm_event.channel_id is None
    assert sorted(dm_event.audience) == sorted(
        [int(p) for p in _dm_key(world, dm["channel"]["id"]).split("-")]
    )


def _dm_key(world: World, channel_id: str) -> str:
    from messaging.models import Channel
    from teams import ids

    with on_shard("shard_0"):
        return Channel.objects.get(id=ids.decode(channel_id, "D")).dm_key or ""


def test_events_are_published_to_the_team_group_after_commit(
    world: World, api, django_capture_on_commit_callbacks
) -> None:
    subscriber = redis.Redis.from_url(settings.REDIS_URL).pubsub()
    subscriber.subscribe(f"{GROUP_PREFIX}__group__{team_group(world.acme.team.id)}")
    subscriber.get_message(timeout=1)  # the subscribe confirmation
    with django_capture_on_commit_callbacks(using="shard_0", execute=False) as callbacks:
        _ok(
            api(
                "chat.postMessage",
                world.acme["alice"].token,
                channel=world.acme.channels["general"],
                text="live",
            )
        )
    assert subscriber.get_message(timeout=0.2) is None  # nothing before commit
    for callback in callbacks:
        callback()
    deadline, received = time.monotonic() + 5, None
    while received is None and time.monotonic() < deadline:
        received = subscriber.get_message(timeout=0.5)
    assert received is not None
    layer_message = get_channel_layer().deserialize(received["data"])
    assert layer_message["type"] == "team.event"
    assert layer_message["event"]["text"] == "live"
    assert layer_message["event_id"] == _events(world)[-1].event_id
    subscriber.close()


def test_redis_outage_does_not_fail_the_write(world: World, api, monkeypatch, caplog) -> None:
    from messaging import events

    class DownRedis:
        def publish(self, *args, **kwargs):
            raise redis.ConnectionError("down")

    monkeypatch.setattr(events, "_redis", lambda: DownRedis())
    events.publish(events.AppendedEvent(world.acme.team.id, 1, "message", {"type": "message"}, None, None))
    assert "not published" in caplog.text


BAD_CALLS = [
    ("chat.postMessage", {"channel": "{general}", "text": "x" * 40_001}),
    ("chat.postMessage", {"channel": "{general}", "text": ""}),
    ("chat.postMessage", {"channel": "C999", "text": "hi"}),
    ("chat.postMessage", {"channel": "{general}", "text": "hi", "attachments": "not json"}),
    ("chat.postMessage", {"channel": "{general}", "text": "hi", "thread_ts": "nonsense"}),
    ("chat.update", {"channel": "{general}", "ts": "{ts}", "text": ""}),
    ("chat.update", {"channel": "{general}", "ts": "bad", "text": "x"}),
    ("chat.delete", {"channel": "{general}", "ts": "9.000001"}),
    ("reactions.add", {"channel": "{general}", "timestamp": "{ts}", "name": "bad name"}),
    ("conversations.create", {"name": "Bad Name"}),
    ("conversations.create", {"name": "general"}),
    ("conversations.invite", {"channel": "{general}", "users": "U1"}),
    ("conversations.kick", {"channel": "{general}", "user": "bogus"}),
    ("conversations.rename", {"channel": "{general}", "name": ""}),
    ("conversations.mark", {"channel": "{general}", "ts": "yesterday"}),
    ("conversations.open", {"users": "U1,U2"}),
    ("conversations.history", {"channel": "{general}", "cursor": "garbage"}),
    ("pins.add", {"channel": "{general}", "timestamp": "1.5"}),
]


def _table_counts(world: World) -> dict[str, int]:
    from messaging.models import Channel, CustomEmoji, Pin
    from teams.models import Member

    with on_shard("shard_0"):
        return {
            model.__name__: model.objects.count()
            for model in (Event, Message, Reaction, Pin, Channel, ChannelMember, Member, CustomEmoji)
        }


@pytest.mark.parametrize(("method", "args"), BAD_CALLS)
def test_bad_input_returns_an_error_and_changes_nothing(world: World, api, method, args) -> None:
    alice = world.acme["alice"].token
    general = world.acme.channels["general"]
    ts = _ok(api("chat.postMessage", alice, channel=general, text="target"))["ts"]
    before = _table_counts(world)
    answer = api(method, alice, **{k: v.format(general=general, ts=ts) for k, v in args.items()})
    assert answer["ok"] is False and isinstance(answer["error"], str) and answer["error"]
    assert _table_counts(world) == before
    json.dumps(answer)


@pytest.mark.parametrize("where", ["general", "secret", "dm"])
def test_a_post_logs_the_event_its_publish_carries(
    world: World, api, where: str, django_capture_on_commit_callbacks
) -> None:
    """Top-level posts build their event inside one SQL statement (ts, channel_type):
    what the log replays must be exactly what live sockets were sent."""
    from messaging.models import Channel
    from messaging.shapes import message_event_payload
    from teams import ids

    alice = world.acme["alice"].token
    if where == "dm":
        channel = _ok(api("conversations.open", alice, users=world.acme["bob"].user_id))["channel"]["id"]
    else:
        channel = world.acme.channels[where]
    layer_channel = f"{GROUP_PREFIX}__group__{team_group(world.acme.team.id)}"
    subscriber = redis.Redis.from_url(settings.REDIS_URL).pubsub()
    subscriber.subscribe(layer_channel)
    assert subscriber.get_message(timeout=2)["type"] == "subscribe"
    with django_capture_on_commit_callbacks(using="shard_0", execute=True):
        posted = _ok(
            api("chat.postMessage", alice, channel=channel, text="hello <@U0000000001>", client_msg_id="c-1")
        )
    published = get_channel_layer().deserialize(subscriber.get_message(timeout=2)["data"])
    subscriber.close()
    logged = _events(world)[-1]
    assert logged.payload == published["event"] and published["event_id"] == logged.event_id
    with on_shard(world.acme.team.shard):
        row = Message.objects.get(
            channel_id=ids.decode(channel, ids.CHANNEL_PREFIXES), ts=ids.parse_ts(posted["ts"])
        )
        expected = {
            "type": "message",
            **message_event_payload(row, Channel.objects.get(id=row.channel_id), ""),
        }
    expected["team"] = logged.payload["team"]
    assert logged.payload == expected
    assert logged.payload["ts"] == logged.payload["event_ts"] == posted["ts"]
    assert logged.payload["channel_type"] == {"general": "channel", "secret": "group", "dm": "im"}[where]

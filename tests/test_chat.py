"""chat.*: posting, idempotent sends, edits, deletes, permalinks, and reactions/pins/emoji."""

import uuid

import pytest

from chatproject.dbrouter import on_shard
from messaging.actions.reactions import add_emoji
from messaging.models import JOIN_LEAVE_SUBTYPES, Event, Message
from teams.auth import caller_from_token
from tests.conftest import World, member_pk, without_joins

pytestmark = pytest.mark.django_db(databases="__all__")


def _ok(answer: dict) -> dict:
    assert answer["ok"], answer
    return answer


def _post(api, token: str, channel: str, text: str = "hello", **args) -> dict:
    return _ok(api("chat.postMessage", token, channel=channel, text=text, **args))


def test_post_returns_slack_shape(world: World, api) -> None:
    general = world.acme.channels["general"]
    answer = _post(api, world.acme["alice"].token, general, "hi <@" + world.acme["bob"].user_id + ">")
    message = answer["message"]
    assert answer["channel"] == general and answer["ts"] == message["ts"]
    assert message["user"] == world.acme["alice"].user_id and message["type"] == "message"
    assert message["team"] == world.acme.team.slack_id
    with on_shard("shard_0"):
        stored = Message.objects.get(team_id=world.acme.team.id, text=message["text"])
    assert stored.mentions == [member_pk(world.acme["bob"].user_id)]


def test_post_by_channel_name_and_as_bot(world: World, api) -> None:
    bot = world.acme.bot.token
    assert api("chat.postMessage", bot, channel="#general", text="beep")["error"] == "not_in_channel"
    _ok(
        api(
            "conversations.invite",
            world.acme["alice"].token,
            channel=world.acme.channels["general"],
            users=world.acme.bot.user_id,
        )
    )
    answer = _post(
        api,
        bot,
        "#general",
        "beep",
        username="Deploy bot",
        attachments=[{"fallback": "f", "text": "build 42 passed", "color": "good"}],
    )
    assert answer["message"]["bot_id"].startswith("B") and answer["message"]["username"] == "Deploy bot"
    assert answer["message"]["attachments"][0]["text"] == "build 42 passed"
    assert api("chat.postMessage", bot, channel="#nope", text="x")["error"] == "channel_not_found"


def test_post_errors(world: World, api) -> None:
    alice = world.acme["alice"].token
    general = world.acme.channels["general"]
    assert api("chat.postMessage", alice, text="x")["error"] == "channel_not_found"
    assert api("chat.postMessage", alice, channel=general)["error"] == "no_text"
    assert api("chat.postMessage", alice, channel=general, text="   ")["error"] == "no_text"
    assert api("chat.postMessage", alice, channel=general, text="x" * 40_001)["error"] == "msg_too_long"
    assert api("chat.postMessage", alice, channel="C0", text="x")["error"] == "channel_not_found"
    assert (
        api("chat.postMessage", world.acme["carol"].token, channel=world.acme.channels["random"], text="x")[
            "error"
        ]
        == "not_in_channel"
    )
    with on_shard("shard_0"):
        said = Message.objects.filter(team_id=world.acme.team.id).exclude(subtype__in=JOIN_LEAVE_SUBTYPES)
        assert not said.exists()


def test_client_msg_id_makes_sends_idempotent(world: World, api) -> None:
    alice = world.acme["alice"].token
    general = world.acme.channels["general"]
    client_msg_id = str(uuid.uuid4())
    first = _post(api, alice, general, "once", client_msg_id=client_msg_id)
    again = _post(api, alice, general, "once", client_msg_id=client_msg_id)
    assert again["ts"] == first["ts"] and again["message"]["client_msg_id"] == client_msg_id
    other = _post(api, world.acme["bob"].token, general, "once", client_msg_id=client_msg_id)
    assert other["ts"] != first["ts"]  # ids are per sender
    with on_shard("shard_0"):
        assert Message.objects.filter(team_id=world.acme.team.id, text="once").count() == 2
        assert (
            Event.objects.filter(team_id=world.acme.team.id, type="message", payload__text="once").count()
            == 2
        )


def test_update_own_message_only(world: World, api) -> None:
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    ts = _post(api, alice, general, "draft")["ts"]
    updated = _ok(api("chat.update", alice, channel=general, ts=ts, text="final"))
    assert updated["text"] == "final" and updated["message"]["edited"]["user"] == world.acme["alice"].user_id
    assert api("chat.update", bob, channel=general, ts=ts, text="mine now")["error"] == "cant_update_message"
    assert api("chat.update", alice, channel=general, ts="1.000001", text="x")["error"] == "message_not_found"
    assert api("chat.update", alice, channel=general, ts=ts, text="y" * 40_001)["error"] == "msg_too_long"
    assert api("chat.update", alice, channel=general, text="x")["error"] == "message_not_found"
    history = _ok(api("conversations.history", bob, channel=general))["messages"]
    assert history[0]["text"] == "final" and "edited" in history[0]


def test_delete_own_message_and_admin_may_delete_any(world: World, api) -> None:
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    mine = _post(api, bob, general, "oops")["ts"]
    alices = _post(api, alice, general, "alice's")["ts"]
    assert api("chat.delete", bob, channel=general, ts=alices)["error"] == "cant_delete_message"
    assert _ok(api("chat.delete", bob, channel=general, ts=mine)) == {
        "ok": True,
        "channel": general,
        "ts": mine,
    }
    assert api("chat.delete", bob, channel=general, ts=mine)["error"] == "message_not_found"
    bobs = _post(api, bob, general, "moderate me")["ts"]
    _ok(api("chat.delete", alice, channel=general, ts=bobs))  # alice is the owner and an admin
    history = without_joins(_ok(api("conversations.history", bob, channel=general))["messages"])
    assert [m["text"] for m in history] == ["alice's"]


def test_deleting_a_thread_parent_leaves_a_tombstone(world: World, api) -> None:
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    parent = _post(api, alice, general, "parent")["ts"]
    reply = _post(api, bob, general, "reply", thread_ts=parent)["ts"]
    _ok(api("chat.delete", alice, channel=general, ts=parent))
    thread = _ok(api("conversations.replies", bob, channel=general, ts=parent))["messages"]
    assert thread[0]["subtype"] == "tombstone" and thread[0]["reply_count"] == 1
    assert [m["text"] for m in thread[1:]] == ["reply"]
    _ok(api("chat.delete", bob, channel=general, ts=reply))
    # With its last reply gone, the tombstone goes too.
    assert without_joins(_ok(api("conversations.history", bob, channel=general))["messages"]) == []


def test_deleting_a_reply_updates_the_parent(world: World, api) -> None:
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    parent = _post(api, alice, general, "parent")["ts"]
    _post(api, bob, general, "one", thread_ts=parent)
    two = _post(api, alice, general, "two", thread_ts=parent)["ts"]
    _ok(api("chat.delete", alice, channel=general, ts=two))
    head = _ok(api("conversations.replies", bob, channel=general, ts=parent))["messages"][0]
    assert head["reply_count"] == 1 and head["reply_users"] == [world.acme["bob"].user_id]


def test_permalink(world: World, api) -> None:
    general = world.acme.channels["general"]
    ts = _post(api, world.acme["alice"].token, general)["ts"]
    link = _ok(api("chat.getPermalink", world.acme["bob"].token, channel=general, message_ts=ts))["permalink"]
    assert link.endswith(f"/archives/{general}/p{ts.replace('.', '')}")
    assert api("chat.getPermalink", world.acme["bob"].token, channel=general, message_ts="1.0")["error"] == (
        "message_not_found"
    )


def test_reactions(world: World, api) -> None:
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    ts = _post(api, alice, general, "react to me")["ts"]
    _ok(api("reactions.add", bob, channel=general, timestamp=ts, name="thumbsup"))
    _ok(api("reactions.add", alice, channel=general, timestamp=ts, name=":thumbsup:"))
    _ok(api("reactions.add", alice, channel=general, timestamp=ts, name="clap::skin-tone-3"))
    assert (
        api("reactions.add", bob, channel=general, timestamp=ts, name="thumbsup")["error"]
        == "already_reacted"
    )
    assert (
        api("reactions.add", bob, channel=general, timestamp=ts, name="no spaces")["error"] == "invalid_name"
    )
    assert (
        api("reactions.add", bob, channel=general, timestamp="1.0", name="x")["error"] == "message_not_found"
    )
    assert api("reactions.add", bob, channel=general, name="x")["error"] == "no_item_specified"
    got = _ok(api("reactions.get", bob, channel=general, timestamp=ts))["message"]["reactions"]
    assert got == [
        {"name": "thumbsup", "users": [world.acme["bob"].user_id, world.acme["alice"].user_id], "count": 2},
        {"name": "clap::skin-tone-3", "users": [world.acme["alice"].user_id], "count": 1},
    ]
    _ok(api("reactions.remove", bob, channel=general, timestamp=ts, name="thumbsup"))
    assert (
        api("reactions.remove", bob, channel=general, timestamp=ts, name="thumbsup")["error"] == "no_reaction"
    )
    history = _ok(api("conversations.history", bob, channel=general))["messages"]
    assert history[0]["reactions"][0] == {
        "name": "thumbsup",
        "users": [world.acme["alice"].user_id],
        "count": 1,
    }


def test_pins(world: World, api) -> None:
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    ts = _post(api, alice, general, "pin me")["ts"]
    _ok(api("pins.add", bob, channel=general, timestamp=ts))
    assert api("pins.add", bob, channel=general, timestamp=ts)["error"] == "already_pinned"
    items = _ok(api("pins.list", alice, channel=general))["items"]
    assert [i["message"]["text"] for i in items] == ["pin me"]
    assert items[0]["created_by"] == world.acme["bob"].user_id and items[0]["message"]["pinned_to"] == [
        general
    ]
    assert _ok(api("conversations.history", alice, channel=general))["pin_count"] == 1
    _ok(api("pins.remove", alice, channel=general, timestamp=ts))
    assert api("pins.remove", alice, channel=general, timestamp=ts)["error"] == "no_pin"
    assert _ok(api("pins.list", alice, channel=general))["items"] == []


def test_emoji_list(world: World, api) -> None:
    alice = caller_from_token(world.acme["alice"].token)
    with on_shard("shard_0"):
        add_emoji(alice, "partyparrot", url="https://emoji.example/parrot.gif")
        add_emoji(alice, "parrot", alias_for="partyparrot")
    emoji = _ok(api("emoji.list", world.acme["bob"].token))["emoji"]
    assert emoji == {"partyparrot": "https://emoji.example/parrot.gif", "parrot": "alias:partyparrot"}
    assert _ok(api("emoji.list", world.globex["dave"].token))["emoji"] == {}


def test_posting_to_a_user_id_posts_in_the_dm(world: World, api) -> None:
    alice, bob = world.acme["alice"], world.acme["bob"]
    answer = _post(api, alice.token, bob.user_id, "direct")
    assert answer["channel"].startswith("D")
    opened = _ok(api("conversations.open", bob.token, users=alice.user_id))
    assert opened["channel"]["id"] == answer["channel"]
    assert api("chat.postMessage", alice.token, channel="U0", text="x")["error"] == "user_not_found"


def test_unread_and_mention_counts(world: World, api) -> None:
    alice, bob = world.acme["alice"], world.acme["bob"]
    general = world.acme.channels["general"]
    first = _post(api, alice.token, general, "no mention")["ts"]
    _ok(api("conversations.mark", bob.token, channel=general, ts=first))
    _post(api, alice.token, general, f"hey <@{bob.user_id}>")
    _post(api, alice.token, general, "<!here> standup")
    _post(api, alice.token, general, "just chatting")
    _post(api, bob.token, general, "my own message does not count")
    info = _ok(api("conversations.info", bob.token, channel=general))["channel"]
    assert (info["unread_count"], info["mention_count"]) == (3, 2)
    dm = _post(api, alice.token, bob.user_id, "ping")["channel"]
    dm_info = _ok(api("conversations.info", bob.token, channel=dm))["channel"]
    assert (dm_info["unread_count"], dm_info["mention_count"]) == (1, 1)

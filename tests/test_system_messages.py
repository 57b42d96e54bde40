"""Slack's system messages in a channel's history: who joined (and who added them), who left
or was removed, archiving, un-archiving and renames; once per change, none for a no-op,
joins and leaves left out of the unread count clients show, and a newcomer's read position
at their own join."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from chatproject.dbrouter import on_shard
from messaging.actions import channels, posting
from messaging.models import Channel, ChannelMember, Event, Message
from messaging.queries import conversation
from teams.actions import create_member
from tests.conftest import Api, World

pytestmark = pytest.mark.django_db(databases="__all__")


def _ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["ok"], answer
    return answer


def _history(api, token: str, channel: str) -> list[dict[str, Any]]:
    """Oldest first, as it reads."""
    return _ok(api("conversations.history", token, channel=channel, limit=100))["messages"][::-1]


def _said(message: dict[str, Any]) -> tuple[Any, ...]:
    """What a system message says: subtype, about whom, its text and its subtype's fields."""
    fields = {k: message[k] for k in ("inviter", "old_name", "name") if k in message}
    return message.get("subtype"), message["user"], message["text"], fields


def _joined(user_id: str, **fields: str) -> tuple[Any, ...]:
    return "channel_join", user_id, f"<@{user_id}> has joined the channel", fields


def _left(user_id: str) -> tuple[Any, ...]:
    return "channel_leave", user_id, f"<@{user_id}> has left the channel", {}


def _read_state(api, token: str, channel: str) -> tuple[str, int, int, int]:
    """last_read, unread_count, unread_count_display and mention_count of a channel, as
    conversations.info and rtm.start (which must agree) tell them."""
    info = _ok(api("conversations.info", token, channel=channel))["channel"]
    boot = _ok(api("rtm.start", token))
    boot_state = {c["id"]: c for c in boot["channels"] + boot["groups"]}[channel]
    keys = ("last_read", "unread_count", "unread_count_display", "mention_count")
    shown = [tuple(c[k] for k in keys) for c in (info, boot_state)]
    assert shown[0] == shown[1]
    return shown[0]  # type: ignore[return-value]


def test_join_and_leave_are_said_once_each(world: World, api) -> None:
    carol, carol_id = world.acme["carol"].token, world.acme["carol"].user_id
    random = world.acme.channels["random"]
    assert _history(api, carol, random) == []
    _ok(api("conversations.join", carol, channel=random))
    again = _ok(api("conversations.join", carol, channel=random))
    assert again["warning"] == "already_in_channel"
    _ok(api("conversations.leave", carol, channel=random))
    assert _ok(api("conversations.leave", carol, channel=random))["not_in_channel"]
    assert [_said(m) for m in _history(api, carol, random)] == [_joined(carol_id), _left(carol_id)]


def test_creating_a_channel_says_its_creator_joined(world: World, api) -> None:
    alice, alice_id = world.acme["alice"].token, world.acme["alice"].user_id
    for private in (False, True):
        channel = _ok(api("conversations.create", alice, name=f"made-{int(private)}", is_private=private))
        history = _history(api, alice, channel["channel"]["id"])
        assert [_said(m) for m in history] == [_joined(alice_id)]


def test_invite_and_kick_say_who_was_added_by_whom_and_who_left(world: World, api) -> None:
    """In a private channel too: modern Slack's subtypes are channel_*, not group_*."""
    alice, alice_id = world.acme["alice"].token, world.acme["alice"].user_id
    bob_id, carol_id = world.acme["bob"].user_id, world.acme["carol"].user_id
    for private in (False, True):
        channel = _ok(api("conversations.create", alice, name=f"team-{int(private)}", is_private=private))
        channel_id = channel["channel"]["id"]
        _ok(api("conversations.invite", alice, channel=channel_id, users=f"{bob_id},{carol_id}"))
        refused = api("conversations.invite", alice, channel=channel_id, users=bob_id)
        assert refused["error"] == "already_in_channel"
        _ok(api("conversations.kick", alice, channel=channel_id, user=carol_id))
        assert (
            api("conversations.kick", alice, channel=channel_id, user=carol_id)["error"] == "not_in_channel"
        )
        assert [_said(m) for m in _history(api, alice, channel_id)] == [
            _joined(alice_id),
            _joined(bob_id, inviter=alice_id),
            _joined(carol_id, inviter=alice_id),
            _left(carol_id),
        ]


def test_archive_unarchive_and_rename_are_said_once(world: World, api) -> None:
    alice, alice_id = world.acme["alice"].token, world.acme["alice"].user_id
    channel = _ok(api("conversations.create", alice, name="old"))["channel"]["id"]
    _ok(api("conversations.rename", alice, channel=channel, name="new"))
    _ok(api("conversations.rename", alice, channel=channel, name="new"))  # the name it has
    assert api("conversations.rename", alice, channel=channel, name="general")["error"] == "name_taken"
    _ok(api("conversations.archive", alice, channel=channel))
    assert api("conversations.archive", alice, channel=channel)["error"] == "already_archived"
    _ok(api("conversations.unarchive", alice, channel=channel))
    assert api("conversations.unarchive", alice, channel=channel)["error"] == "not_archived"
    mention = f"<@{alice_id}>"
    assert [_said(m) for m in _history(api, alice, channel)] == [
        _joined(alice_id),
        (
            "channel_name",
            alice_id,
            f'{mention} has renamed the channel from "old" to "new"',
            {"old_name": "old", "name": "new"},
        ),
        ("channel_archive", alice_id, f"{mention} archived the channel", {}),
        ("channel_unarchive", alice_id, f"{mention} un-archived the channel", {}),
    ]


def test_topic_and_purpose_messages_carry_the_new_value(world: World, api) -> None:
    """As Slack's: channel_topic has the new `topic`, channel_purpose the new `purpose`
    (a client need not cut it out of the text); clearing one says so with an empty value."""
    alice, alice_id = world.acme["alice"].token, world.acme["alice"].user_id
    general = world.acme.channels["general"]
    _ok(api("conversations.setTopic", alice, channel=general, topic="Launch *today*"))
    _ok(api("conversations.setPurpose", alice, channel=general, purpose="Everyone"))
    _ok(api("conversations.setTopic", alice, channel=general, topic=""))
    said = [
        {k: m[k] for k in ("subtype", "user", "text", "topic", "purpose") if k in m}
        for m in _history(api, alice, general)[-3:]
    ]
    assert said == [
        {
            "subtype": "channel_topic",
            "user": alice_id,
            "text": "set the channel topic: Launch *today*",
            "topic": "Launch *today*",
        },
        {
            "subtype": "channel_purpose",
            "user": alice_id,
            "text": "set the channel purpose: Everyone",
            "purpose": "Everyone",
        },
        {"subtype": "channel_topic", "user": alice_id, "text": "set the channel topic: ", "topic": ""},
    ]


def test_each_system_message_is_a_message_event_in_the_log(world: World, api) -> None:
    alice, carol = world.acme["alice"].token, world.acme["carol"]
    secret = world.acme.channels["secret"]
    _ok(api("conversations.invite", alice, channel=secret, users=carol.user_id))
    with on_shard(world.acme.team.shard):
        said, joined = Event.objects.filter(team_id=world.acme.team.id).order_by("-event_id")[:2]
    assert joined.type == "member_joined_channel" and said.type == "message"
    # Scoped to the channel, so only its members' sockets hear it (realtime.delivery).
    assert said.channel_id == joined.channel_id and said.audience is None
    assert said.payload["channel"] == secret and said.payload["channel_type"] == "group"
    assert (said.payload["subtype"], said.payload["user"]) == ("channel_join", carol.user_id)
    assert said.payload["inviter"] == world.acme["alice"].user_id
    assert said.payload["ts"] == _history(api, alice, secret)[-1]["ts"]


def test_joining_the_team_is_said_in_general(world: World, api) -> None:
    """A new member's channel_join in #general (the world's bob and carol have theirs); a
    new team's owner has none, so the team stays empty for an import into it."""
    acme = world.acme
    erin, _ = create_member(acme.team, "erin@acme.test", name="Erin")
    history = _history(api, acme["alice"].token, acme.channels["general"])
    assert [_said(m) for m in history] == [
        _joined(acme["bob"].user_id),
        _joined(acme["carol"].user_id),
        _joined(erin.slack_id),
    ]
    assert _history(api, world.globex["dave"].token, world.globex.channels["general"]) == []


def test_joins_and_leaves_are_not_shown_as_unread(world: World, api) -> None:
    """Slack's unread_count counts them, unread_count_display (what clients show) does not;
    one's own join is not unread at all."""
    alice, bob, carol = (world.acme[name].token for name in ("alice", "bob", "carol"))
    random = world.acme.channels["random"]

    def counts(token: str) -> tuple[int, int, int]:
        return _read_state(api, token, random)[1:]

    _ok(api("conversations.join", bob, channel=random))
    assert counts(bob) == (0, 0, 0)  # his own join
    assert counts(alice) == (1, 0, 0)
    _ok(api("conversations.join", carol, channel=random))
    _ok(api("conversations.leave", carol, channel=random))
    assert counts(bob) == (2, 0, 0)
    _ok(api("chat.postMessage", alice, channel=random, text="news"))
    assert counts(bob) == (3, 1, 0)


def test_a_newcomer_has_read_up_to_their_own_join(world: World, api) -> None:
    """As in Slack: what a channel said before someone joined (by themselves, added by
    someone, with the team, or as its creator) is not unread to them, mentions included;
    their read position is their own join message, and what comes after is unread."""
    acme = world.acme
    alice = acme["alice"].token
    bob, bob_id, carol_id = acme["bob"].token, acme["bob"].user_id, acme["carol"].user_id
    random, general = acme.channels["random"], acme.channels["general"]

    def said_before(channel: str) -> None:
        for text in ("before", f"<@{bob_id}> <@{carol_id}> before", "<!here> before"):
            _ok(api("chat.postMessage", alice, channel=channel, text=text))

    def joined_at(token: str, channel: str) -> str:
        """The ts of the channel's newest message: the join just made."""
        last = _history(api, token, channel)[-1]
        assert last["subtype"] == "channel_join"
        return last["ts"]

    said_before(random)
    _ok(api("conversations.join", bob, channel=random))
    assert _read_state(api, bob, random) == (joined_at(bob, random), 0, 0, 0)
    _ok(api("chat.postMessage", alice, channel=random, text=f"<@{bob_id}> after"))
    assert _read_state(api, bob, random)[1:] == (1, 1, 1)

    plans = _ok(api("conversations.create", alice, name="plans", is_private=True))["channel"]["id"]
    assert _read_state(api, alice, plans) == (joined_at(alice, plans), 0, 0, 0)
    said_before(plans)
    _ok(api("conversations.invite", alice, channel=plans, users=carol_id))
    carol = acme["carol"].token
    assert _read_state(api, carol, plans) == (joined_at(carol, plans), 0, 0, 0)

    said_before(general)
    _, erin = create_member(acme.team, "erin@acme.test", name="Erin")
    assert _read_state(api, erin, general) == (joined_at(erin, general), 0, 0, 0)
    _ok(api("chat.postMessage", alice, channel=general, text="<!channel> after"))
    assert _read_state(api, erin, general)[1:] == (1, 1, 1)


def _at_once(shard: str, calls: list[Callable[[Api], dict[str, Any]]]) -> list[Any]:
    """Each call through the Web API in its own thread (so its own database connection),
    held back until all of them are about to take the channel's row lock, which their
    transaction starts with: each has found the person not in the channel yet, as two
    requests that truly race do. An answer, or the exception that the request raised."""
    lined_up = threading.Barrier(len(calls))
    answers: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        waited = False

        def at_the_insert(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            nonlocal waited
            if not waited and "FOR NO KEY UPDATE" in sql and Channel._meta.db_table in sql:
                waited = True
                lined_up.wait(timeout=10)
            return execute(sql, params, many, context)

        try:
            with connections[shard].execute_wrapper(at_the_insert):
                answers[index] = calls[index](Api(Client()))
        except Exception as exc:  # the loser failing is what the test looks for
            answers[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def _joins_of(world: World, user_id: str, channel: str) -> tuple[int, int]:
    """How many member_joined_channel events and channel_join message events the log has
    of this person in this channel."""
    with on_shard(world.acme.team.shard):
        events = list(
            Event.objects.filter(team_id=world.acme.team.id, type__in=["member_joined_channel", "message"])
        )
    joined = [e for e in events if e.type == "member_joined_channel"]
    said = [e for e in events if e.type == "message" and e.payload.get("subtype") == "channel_join"]
    return (
        sum(e.payload["user"] == user_id and e.payload["channel"] == channel for e in joined),
        sum(e.payload["user"] == user_id and e.payload["channel"] == channel for e in said),
    )


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_two_joins_at_once_join_once(world: World, api) -> None:
    """The second of two racing joins answers as a join of someone already in the channel
    does (ok, warning already_in_channel), with no second message nor event."""
    carol, carol_id = world.acme["carol"].token, world.acme["carol"].user_id
    random = world.acme.channels["random"]
    join = lambda client: client("conversations.join", carol, channel=random)  # noqa: E731
    answers = _at_once(world.acme.team.shard, [join, join])
    assert all(isinstance(a, dict) and a["ok"] for a in answers), answers
    assert sorted(a.get("warning", "") for a in answers) == ["", "already_in_channel"]
    assert [_said(m) for m in _history(api, carol, random)] == [_joined(carol_id)]
    assert _joins_of(world, carol_id, random) == (1, 1)


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_two_invites_at_once_add_once(world: World, api) -> None:
    """alice and bob add carol to #secret at the same moment: one adds her, the other hears
    already_in_channel, as if it had come second."""
    alice, bob = world.acme["alice"], world.acme["bob"]
    carol_id = world.acme["carol"].user_id
    secret = world.acme.channels["secret"]
    answers = _at_once(
        world.acme.team.shard,
        [
            lambda client: client("conversations.invite", alice.token, channel=secret, users=carol_id),
            lambda client: client("conversations.invite", bob.token, channel=secret, users=carol_id),
        ],
    )
    assert all(isinstance(a, dict) for a in answers), answers
    assert sorted(a.get("error", "") for a in answers) == ["", "already_in_channel"]
    inviter = next(p.user_id for p, a in zip((alice, bob), answers, strict=True) if a["ok"])
    assert [_said(m) for m in _history(api, alice.token, secret)][-1] == _joined(carol_id, inviter=inviter)
    assert _joins_of(world, carol_id, secret) == (1, 1)


# Each action as alice, bob or carol calls it in #doomed (alice's, with bob; carol is not in
# it), with bob's message `parent` to reply to.
_ACTIONS_IN_DOOMED: dict[str, Callable[[Api, World, str, str], dict[str, Any]]] = {
    "join": lambda api, w, ch, _: api("conversations.join", w.acme["carol"].token, channel=ch),
    "leave": lambda api, w, ch, _: api("conversations.leave", w.acme["bob"].token, channel=ch),
    "invite": lambda api, w, ch, _: api(
        "conversations.invite", w.acme["alice"].token, channel=ch, users=w.acme["carol"].user_id
    ),
    "kick": lambda api, w, ch, _: api(
        "conversations.kick", w.acme["alice"].token, channel=ch, user=w.acme["bob"].user_id
    ),
    "rename": lambda api, w, ch, _: api(
        "conversations.rename", w.acme["alice"].token, channel=ch, name="saved"
    ),
    "topic": lambda api, w, ch, _: api(
        "conversations.setTopic", w.acme["alice"].token, channel=ch, topic="hi"
    ),
    "reply": lambda api, w, ch, parent: api(
        "chat.postMessage", w.acme["alice"].token, channel=ch, text="too late", thread_ts=parent
    ),
}


@pytest.mark.parametrize("action", list(_ACTIONS_IN_DOOMED))
def test_an_action_refuses_a_channel_archived_after_it_looked(
    world: World, api, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """The channel is archived between the action's first read, which found it open, and its
    transaction (as when it waited on the archive's row lock): it answers is_archived and
    changes nothing, says nothing after the archive."""
    alice = world.acme["alice"].token
    doomed = _ok(api("conversations.create", alice, name="doomed"))["channel"]["id"]
    _ok(api("conversations.invite", alice, channel=doomed, users=world.acme["bob"].user_id))
    parent = _ok(api("chat.postMessage", world.acme["bob"].token, channel=doomed, text="parent"))["ts"]
    with on_shard(world.acme.team.shard):
        channel_id = Channel.objects.get(name="doomed").id

        def state() -> tuple[Any, ...]:
            row = Channel.objects.values_list("name", "topic").get(id=channel_id)
            members = sorted(
                ChannelMember.objects.filter(channel_id=channel_id).values_list("member_id", flat=True)
            )
            said = list(Message.objects.filter(channel_id=channel_id).values_list("id", "reply_count"))
            return row, members, said

        before = state()

    def then_archived(*args: Any, **kwargs: Any) -> Any:
        access = conversation(*args, **kwargs)
        Channel.objects.filter(id=channel_id).update(is_archived=True)
        return access

    monkeypatch.setattr(channels, "conversation", then_archived)
    monkeypatch.setattr(posting, "conversation", then_archived)
    answer = _ACTIONS_IN_DOOMED[action](api, world, doomed, parent)
    assert answer == {"ok": False, "error": "is_archived"}
    with on_shard(world.acme.team.shard):
        assert state() == before

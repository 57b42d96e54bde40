"""conversations.*: creating, listing, membership, visibility, history and threads."""

import pytest

from chatproject.dbrouter import on_shard
from messaging.models import Event
from tests.conftest import World, without_joins

pytestmark = pytest.mark.django_db(databases="__all__")


def _ok(answer: dict) -> dict:
    assert answer["ok"], answer
    return answer


def test_create_public_and_private(world: World, api) -> None:
    alice = world.acme["alice"].token
    public = _ok(api("conversations.create", alice, name="design"))["channel"]
    assert public["id"].startswith("C") and public["name"] == "design" and public["is_channel"]
    assert public["is_member"] and public["creator"] == world.acme["alice"].user_id
    private = _ok(api("conversations.create", alice, name="plans", is_private="true"))["channel"]
    assert private["id"].startswith("G") and private["is_private"] and private["is_group"]
    assert api("conversations.create", alice, name="design")["error"] == "name_taken"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "invalid_name_required"),
        ("Has Space", "invalid_name_specials"),
        ("UPPER", "invalid_name_specials"),
        ("x" * 81, "invalid_name_maxlength"),
        ("bad!name", "invalid_name_specials"),
    ],
)
def test_create_rejects_bad_names(world: World, api, name: str, error: str) -> None:
    assert api("conversations.create", world.acme["alice"].token, name=name) == {"ok": False, "error": error}


def test_missing_name(world: World, api) -> None:
    assert api("conversations.create", world.acme["alice"].token)["error"] == "invalid_name_required"


def test_list_shows_public_and_only_my_private(world: World, api) -> None:
    alice, carol = world.acme["alice"].token, world.acme["carol"].token
    names = lambda answer: {c["name"] for c in answer["channels"]}  # noqa: E731
    assert names(api("conversations.list", carol)) == {"general", "random"}
    both = "public_channel,private_channel"
    assert names(api("conversations.list", carol, types=both)) == {"general", "random"}
    assert names(api("conversations.list", alice, types=both)) == {"general", "random", "secret"}
    general = next(c for c in api("conversations.list", carol)["channels"] if c["name"] == "general")
    assert general["is_member"] and general["num_members"] == 3 and general["is_general"]
    assert api("conversations.list", carol, types="nope")["error"] == "invalid_types"


def test_list_pages_and_excludes_archived(world: World, api) -> None:
    alice = world.acme["alice"].token
    for n in range(5):
        _ok(api("conversations.create", alice, name=f"room-{n}"))
    archived = _ok(api("conversations.create", alice, name="old"))["channel"]["id"]
    _ok(api("conversations.archive", alice, channel=archived))
    seen, cursor = [], ""
    while True:
        page = _ok(api("conversations.list", alice, limit=3, cursor=cursor, exclude_archived=True))
        seen += [c["name"] for c in page["channels"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(["general", "random", *[f"room-{n}" for n in range(5)]])


def test_private_channel_is_invisible_to_non_members(world: World, api) -> None:
    carol = world.acme["carol"].token
    secret = world.acme.channels["secret"]
    for method, args in [
        ("conversations.info", {}),
        ("conversations.history", {}),
        ("conversations.members", {}),
        ("conversations.join", {}),
        ("chat.postMessage", {"text": "hi"}),
        ("conversations.mark", {"ts": "1.0"}),
    ]:
        assert api(method, carol, channel=secret, **args)["error"] == "channel_not_found", method
    assert api("conversations.info", world.acme["bob"].token, channel=secret)["channel"]["name"] == "secret"


def test_join_leave_invite_kick(world: World, api) -> None:
    alice, carol = world.acme["alice"].token, world.acme["carol"].token
    random = world.acme.channels["random"]
    joined = _ok(api("conversations.join", carol, channel=random))
    assert joined["channel"]["is_member"] and "warning" not in joined
    assert _ok(api("conversations.join", carol, channel=random))["warning"] == "already_in_channel"
    assert _ok(api("conversations.leave", carol, channel=random)) == {"ok": True}
    assert _ok(api("conversations.leave", carol, channel=random)) == {"ok": True, "not_in_channel": True}
    assert (
        api("conversations.leave", carol, channel=world.acme.channels["general"])["error"]
        == "cant_leave_general"
    )

    _ok(api("conversations.invite", alice, channel=random, users=world.acme["carol"].user_id))
    members = _ok(api("conversations.members", alice, channel=random))["members"]
    assert world.acme["carol"].user_id in members
    assert api("conversations.invite", alice, channel=random, users=world.acme["carol"].user_id)["error"] == (
        "already_in_channel"
    )
    assert api("conversations.invite", alice, channel=random, users="U999")["error"] == "user_not_found"
    assert api("conversations.invite", alice, channel=random)["error"] == "no_user"
    assert api("conversations.invite", alice, channel=random, users=world.acme["alice"].user_id)["error"] == (
        "cant_invite_self"
    )
    _ok(api("conversations.kick", alice, channel=random, user=world.acme["carol"].user_id))
    assert world.acme["carol"].user_id not in api("conversations.members", alice, channel=random)["members"]
    assert api("conversations.kick", alice, channel=random, user=world.acme["alice"].user_id)["error"] == (
        "cant_kick_self"
    )
    # An archived channel is read-only: nobody is removed from it either.
    bob = world.acme["bob"].user_id
    _ok(api("conversations.invite", alice, channel=random, users=bob))
    _ok(api("conversations.archive", alice, channel=random))
    assert api("conversations.kick", alice, channel=random, user=bob)["error"] == "is_archived"
    assert bob in api("conversations.members", alice, channel=random)["members"]


def test_private_invite_lets_the_invitee_see_it(world: World, api) -> None:
    alice, carol = world.acme["alice"].token, world.acme["carol"].token
    secret = world.acme.channels["secret"]
    assert api("conversations.invite", carol, channel=secret, users=world.acme["carol"].user_id)["error"] == (
        "channel_not_found"
    )
    _ok(api("conversations.invite", alice, channel=secret, users=world.acme["carol"].user_id))
    assert _ok(api("conversations.info", carol, channel=secret))["channel"]["is_member"]


def test_archive_unarchive_rename_topic_purpose(world: World, api) -> None:
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    channel = _ok(api("conversations.create", alice, name="project"))["channel"]["id"]
    renamed = _ok(api("conversations.rename", alice, channel=channel, name="project-x"))["channel"]
    assert renamed["name"] == "project-x"
    assert api("conversations.rename", alice, channel=channel, name="general")["error"] == "name_taken"
    topic = _ok(api("conversations.setTopic", alice, channel=channel, topic="Ship it"))
    assert topic["channel"]["topic"]["value"] == "Ship it"
    assert topic["channel"]["topic"]["creator"] == world.acme["alice"].user_id
    _ok(api("conversations.setPurpose", alice, channel=channel, purpose="Where X happens"))
    info = _ok(api("conversations.info", bob, channel=channel))["channel"]
    assert info["purpose"]["value"] == "Where X happens" and info["topic"]["value"] == "Ship it"
    history = _ok(api("conversations.history", alice, channel=channel))["messages"]
    # Newest first: purpose, topic, one rename (not the refused one), the creator's join.
    assert [m["subtype"] for m in history] == [
        "channel_purpose",
        "channel_topic",
        "channel_name",
        "channel_join",
    ]
    assert api("conversations.setTopic", alice, channel=channel, topic="x" * 251)["error"] == "too_long"
    assert api("conversations.setTopic", bob, channel=channel, topic="mine")["error"] == "not_in_channel"

    _ok(api("conversations.archive", alice, channel=channel))
    assert api("conversations.archive", alice, channel=channel)["error"] == "already_archived"
    assert api("chat.postMessage", alice, channel=channel, text="hi")["error"] == "is_archived"
    assert _ok(api("conversations.info", alice, channel=channel))["channel"]["is_archived"]
    with on_shard(world.acme.team.shard):  # every member's channel list changes, not only its members'
        archived = Event.objects.filter(team_id=world.acme.team.id, type="channel_archive").latest("event_id")
        assert archived.channel_id is None and archived.audience is None
    assert api("conversations.unarchive", bob, channel=channel)["error"] == "not_in_channel"
    _ok(api("conversations.unarchive", alice, channel=channel))
    assert api("conversations.unarchive", alice, channel=channel)["error"] == "not_archived"
    assert api("conversations.archive", alice, channel=world.acme.channels["general"])["error"] == (
        "cant_archive_general"
    )
    general = world.acme.channels["general"]
    assert api("conversations.rename", bob, channel=general, name="mine")["error"] == "restricted_action"


def test_archived_channels_stay_readable(world: World, api) -> None:
    """The client shows an archived channel read-only: its history and threads still load
    (a public one for anyone, a private one only for its members), and it takes no posts."""
    alice, carol = world.acme["alice"].token, world.acme["carol"].token
    public = _ok(api("conversations.create", alice, name="done"))["channel"]["id"]
    head = _ok(api("chat.postMessage", alice, channel=public, text="what we decided"))["ts"]
    _ok(api("chat.postMessage", alice, channel=public, text="and why", thread_ts=head))
    private = _ok(api("conversations.create", alice, name="done-secret", is_private=True))["channel"]["id"]
    _ok(api("chat.postMessage", alice, channel=private, text="between us"))
    for channel in (public, private):
        _ok(api("conversations.archive", alice, channel=channel))

    archived = f"<@{world.acme['alice'].user_id}> archived the channel"
    for token in (alice, carol):  # carol never joined the public one
        history = without_joins(_ok(api("conversations.history", token, channel=public))["messages"])
        assert [m["text"] for m in history] == [archived, "what we decided"]
        replies = _ok(api("conversations.replies", token, channel=public, ts=head))["messages"]
        assert [m["text"] for m in replies] == ["what we decided", "and why"]
    assert api("conversations.join", carol, channel=public)["error"] == "is_archived"
    history = _ok(api("conversations.history", alice, channel=private))["messages"]
    assert [m["text"] for m in without_joins(history)] == [archived, "between us"]
    assert api("conversations.history", carol, channel=private)["error"] == "channel_not_found"
    assert api("conversations.unarchive", carol, channel=private)["error"] == "channel_not_found"


def test_open_dm_and_group_dm(world: World, api) -> None:
    alice, bob = world.acme["alice"], world.acme["bob"]
    dm = _ok(api("conversations.open", alice.token, users=bob.user_id))
    assert dm["channel"]["id"].startswith("D") and dm["already_open"] is False
    again = _ok(api("conversations.open", bob.token, users=alice.user_id))
    assert again["channel"]["id"] == dm["channel"]["id"] and again["already_open"] is True
    assert again["channel"]["user"] == alice.user_id
    group = _ok(api("conversations.open", alice.token, users=f"{bob.user_id},{world.acme['carol'].user_id}"))
    assert group["channel"]["is_mpim"] and group["channel"]["id"].startswith("G")
    _ok(api("chat.postMessage", bob.token, channel=dm["channel"]["id"], text="psst"))
    assert api("conversations.history", world.acme["carol"].token, channel=dm["channel"]["id"])["error"] == (
        "channel_not_found"
    )
    assert api("conversations.open", alice.token)["error"] == "users_list_not_supplied"
    ims = _ok(api("conversations.list", alice.token, types="im,mpim"))["channels"]
    assert {c["id"] for c in ims} == {dm["channel"]["id"], group["channel"]["id"]}


def test_history_order_window_and_pages(world: World, api) -> None:
    alice = world.acme["alice"].token
    general = world.acme.channels["random"]  # no one has said anything there yet
    stamps = [_ok(api("chat.postMessage", alice, channel=general, text=f"m{n}"))["ts"] for n in range(7)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 7
    newest_first = [m["ts"] for m in _ok(api("conversations.history", alice, channel=general))["messages"]]
    assert newest_first == stamps[::-1]
    window = _ok(api("conversations.history", alice, channel=general, oldest=stamps[1], latest=stamps[4]))
    assert [m["ts"] for m in window["messages"]] == stamps[2:4][::-1]
    inclusive = _ok(
        api(
            "conversations.history",
            alice,
            channel=general,
            oldest=stamps[1],
            latest=stamps[4],
            inclusive=True,
        )
    )
    assert [m["ts"] for m in inclusive["messages"]] == stamps[1:5][::-1]
    pages, cursor = [], ""
    while True:
        page = _ok(api("conversations.history", alice, channel=general, limit=3, cursor=cursor))
        pages.append([m["ts"] for m in page["messages"]])
        assert page["has_more"] == bool(page["response_metadata"]["next_cursor"])
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert [ts for page in pages for ts in page] == stamps[::-1] and len(pages) == 3


def test_threads_replies_and_broadcast(world: World, api) -> None:
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    parent = _ok(api("chat.postMessage", alice, channel=general, text="question?"))["ts"]
    first = _ok(api("chat.postMessage", bob, channel=general, text="answer", thread_ts=parent))
    assert first["message"]["thread_ts"] == parent
    # A reply to a reply lands in the same thread.
    second = _ok(api("chat.postMessage", alice, channel=general, text="thanks", thread_ts=first["ts"]))
    assert second["message"]["thread_ts"] == parent
    broadcast = _ok(
        api("chat.postMessage", bob, channel=general, text="fyi all", thread_ts=parent, reply_broadcast=True)
    )
    assert broadcast["message"]["subtype"] == "thread_broadcast"

    thread = _ok(api("conversations.replies", alice, channel=general, ts=parent))["messages"]
    assert [m["text"] for m in thread] == ["question?", "answer", "thanks", "fyi all"]
    head = thread[0]
    assert head["reply_count"] == 3 and head["latest_reply"] == broadcast["ts"]
    assert set(head["reply_users"]) == {world.acme["alice"].user_id, world.acme["bob"].user_id}
    history = without_joins(_ok(api("conversations.history", alice, channel=general))["messages"])
    assert [m["text"] for m in history] == ["fyi all", "question?"]  # plain replies stay in the thread
    assert api("conversations.replies", alice, channel=general, ts="1.000001")["error"] == "thread_not_found"
    assert api("chat.postMessage", alice, channel=general, text="x", thread_ts="1.000001")["error"] == (
        "thread_not_found"
    )


def test_mark_moves_last_read(world: World, api) -> None:
    bob = world.acme["bob"].token
    general = world.acme.channels["general"]
    ts = _ok(api("chat.postMessage", world.acme["alice"].token, channel=general, text="read me"))["ts"]
    _ok(api("conversations.mark", bob, channel=general, ts=ts))
    assert _ok(api("conversations.info", bob, channel=general))["channel"]["last_read"] == ts
    assert api("conversations.mark", bob, channel=general, ts="soon")["error"] == "invalid_timestamp"
    assert (
        api("conversations.mark", bob, channel=world.acme.channels["random"], ts=ts)["error"]
        == "not_in_channel"
    )

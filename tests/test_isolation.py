"""Two teams on two shards never see each other's members, channels or messages."""

import pytest

from messaging.api.registry import REGISTRY
from tests.conftest import World, without_joins

pytestmark = pytest.mark.django_db(databases="__all__")

# Every method that takes an id of another team's object, with the answer Slack gives
# for an object that does not exist.
CROSS_TEAM_CALLS = [
    ("users.info", {"user": "{acme_user}"}, "user_not_found"),
    ("users.profile.get", {"user": "{acme_user}"}, "user_not_found"),
    ("users.lookupByEmail", {"email": "alice@acme.test"}, "users_not_found"),
    ("users.getPresence", {"user": "{acme_user}"}, "user_not_found"),
    ("conversations.info", {"channel": "{acme_general}"}, "channel_not_found"),
    ("conversations.history", {"channel": "{acme_general}"}, "channel_not_found"),
    ("conversations.replies", {"channel": "{acme_general}", "ts": "{acme_ts}"}, "channel_not_found"),
    ("conversations.members", {"channel": "{acme_general}"}, "channel_not_found"),
    ("conversations.join", {"channel": "{acme_general}"}, "channel_not_found"),
    ("conversations.leave", {"channel": "{acme_general}"}, "channel_not_found"),
    ("conversations.invite", {"channel": "{globex_general}", "users": "{acme_user}"}, "user_not_found"),
    ("conversations.kick", {"channel": "{acme_general}", "user": "{acme_user}"}, "channel_not_found"),
    ("conversations.archive", {"channel": "{acme_random}"}, "channel_not_found"),
    ("conversations.unarchive", {"channel": "{acme_random}"}, "channel_not_found"),
    ("conversations.rename", {"channel": "{acme_random}", "name": "mine"}, "channel_not_found"),
    ("conversations.setTopic", {"channel": "{acme_general}", "topic": "x"}, "channel_not_found"),
    ("conversations.setPurpose", {"channel": "{acme_general}", "purpose": "x"}, "channel_not_found"),
    ("conversations.open", {"users": "{acme_user}"}, "user_not_found"),
    ("conversations.open", {"channel": "{acme_general}"}, "channel_not_found"),
    ("conversations.mark", {"channel": "{acme_general}", "ts": "{acme_ts}"}, "channel_not_found"),
    ("chat.postMessage", {"channel": "{acme_general}", "text": "hi"}, "channel_not_found"),
    ("chat.postMessage", {"channel": "{acme_user}", "text": "hi"}, "user_not_found"),
    (
        "chat.postMessage",
        {"channel": "{acme_general}", "text": "hi", "thread_ts": "{acme_ts}"},
        "channel_not_found",
    ),
    ("chat.update", {"channel": "{acme_general}", "ts": "{acme_ts}", "text": "x"}, "channel_not_found"),
    ("chat.delete", {"channel": "{acme_general}", "ts": "{acme_ts}"}, "channel_not_found"),
    ("chat.getPermalink", {"channel": "{acme_general}", "message_ts": "{acme_ts}"}, "channel_not_found"),
    (
        "reactions.add",
        {"channel": "{acme_general}", "timestamp": "{acme_ts}", "name": "x"},
        "channel_not_found",
    ),
    (
        "reactions.remove",
        {"channel": "{acme_general}", "timestamp": "{acme_ts}", "name": "x"},
        "channel_not_found",
    ),
    ("reactions.get", {"channel": "{acme_general}", "timestamp": "{acme_ts}"}, "channel_not_found"),
    ("pins.add", {"channel": "{acme_general}", "timestamp": "{acme_ts}"}, "channel_not_found"),
    ("pins.remove", {"channel": "{acme_general}", "timestamp": "{acme_ts}"}, "channel_not_found"),
    ("pins.list", {"channel": "{acme_general}"}, "channel_not_found"),
]


@pytest.fixture
def acme_refs(world: World, api) -> dict[str, str]:
    general = world.acme.channels["general"]
    posted = api("chat.postMessage", world.acme["alice"].token, channel=general, text="acme only")
    return {
        "acme_user": world.acme["bob"].user_id,
        "acme_general": general,
        "acme_random": world.acme.channels["random"],
        "acme_ts": posted["ts"],
        "globex_general": world.globex.channels["general"],
    }


@pytest.mark.parametrize(("method", "args", "error"), CROSS_TEAM_CALLS)
def test_other_teams_objects_do_not_exist(world: World, api, acme_refs, method, args, error) -> None:
    filled = {key: value.format(**acme_refs) for key, value in args.items()}
    answer = api(method, world.globex["dave"].token, **filled)
    assert answer == {"ok": False, "error": error}


def test_every_method_with_an_id_argument_is_covered() -> None:
    covered = {method for method, _, _ in CROSS_TEAM_CALLS}
    takes_ids = {
        name
        for name, method in REGISTRY.items()
        if set(method.args.model_fields) & {"channel", "user", "users", "email"}
    }
    assert takes_ids <= covered


def test_lists_show_only_the_callers_team(world: World, api) -> None:
    dave = world.globex["dave"].token
    users = {m["id"] for m in api("users.list", dave)["members"]}
    assert world.globex["dave"].user_id in users
    assert not users & {p.user_id for p in world.acme.people.values()}
    channels = api("conversations.list", dave, types="public_channel,private_channel,im,mpim")["channels"]
    assert {c["id"] for c in channels} == {world.globex.channels["general"], world.globex.channels["random"]}
    assert api("team.info", dave)["team"]["id"] == world.globex.team.slack_id
    assert api("emoji.list", dave)["emoji"] == {}


def test_acme_history_is_untouched_by_globex_attempts(world: World, api, acme_refs) -> None:
    for method, args, _ in CROSS_TEAM_CALLS:
        api(method, world.globex["dave"].token, **{k: v.format(**acme_refs) for k, v in args.items()})
    history = api("conversations.history", world.acme["bob"].token, channel=acme_refs["acme_general"])
    assert [(m["text"], m.get("reactions"), m.get("edited")) for m in without_joins(history["messages"])] == [
        ("acme only", None, None)
    ]
    assert api("pins.list", world.acme["bob"].token, channel=acme_refs["acme_general"])["items"] == []

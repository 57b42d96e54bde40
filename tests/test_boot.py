"""rtm.start: the state of the world, consistent with its event cursor, cached per team."""

import json
from contextlib import ExitStack

import pytest
from django.db import connections
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from chatproject.dbrouter import on_shard
from messaging.models import Channel
from teams.actions import create_member
from tests.conftest import World

pytestmark = pytest.mark.django_db(databases="__all__")


def _start(api, token: str, **args) -> dict:
    answer = api("rtm.start", token, **args)
    assert answer["ok"], answer
    return answer


def test_rtm_start_shape(world: World, api) -> None:
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    posted = api("chat.postMessage", alice, channel=general, text=f"hi <@{world.acme['bob'].user_id}>")
    dm = api("conversations.open", alice, users=world.acme["bob"].user_id)["channel"]["id"]
    api("chat.postMessage", alice, channel=dm, text="psst")
    boot = _start(api, bob)
    assert boot["self"]["id"] == world.acme["bob"].user_id and boot["team"]["domain"] == "acme"
    assert boot["url"].startswith("ws://testserver/rtm/?ticket=") and boot["event_cursor"] > 0
    assert {u["name"] for u in boot["users"]} == {"alice", "bob", "carol", "chatbot"}
    assert boot["bots"][0]["id"].startswith("B") and boot["emoji"] == {}
    channels = {c["name"]: c for c in boot["channels"]}
    assert set(channels) == {"general", "random"}
    assert channels["general"]["is_member"] and not channels["random"]["is_member"]
    # alice's message, and carol's join, which Slack counts but does not show as unread
    general_state = channels["general"]
    assert (general_state["unread_count"], general_state["unread_count_display"]) == (2, 1)
    assert general_state["mention_count"] == 1
    assert channels["general"]["latest"]["ts"] == posted["ts"]
    assert [g["name"] for g in boot["groups"]] == ["secret"]
    assert [i["id"] for i in boot["ims"]] == [dm] and boot["ims"][0]["unread_count"] == 1
    assert boot["ims"][0]["mention_count"] == 1 and boot["ims"][0]["latest"]["text"] == "psst"
    carol = _start(api, world.acme["carol"].token)
    assert carol["groups"] == [] and carol["ims"] == []


def test_no_latest_and_lean(world: World, api) -> None:
    bob = world.acme["bob"].token
    api("chat.postMessage", bob, channel=world.acme.channels["general"], text="x")
    boot = _start(api, bob, no_latest=True, lean=True)
    assert "latest" not in boot["channels"][0]
    assert [u["id"] for u in boot["users"]] == [world.acme["bob"].user_id]
    api("conversations.open", bob, users=world.acme["carol"].user_id)
    lean = _start(api, bob, lean=True)
    assert {u["id"] for u in lean["users"]} == {world.acme["bob"].user_id, world.acme["carol"].user_id}


def test_cursor_is_the_last_event_the_state_includes(world: World, api) -> None:
    alice = world.acme["alice"].token
    api("conversations.create", alice, name="before-boot")
    boot = _start(api, alice)
    api("conversations.create", alice, name="after-boot")
    from chatproject.dbrouter import on_shard
    from messaging.models import Event

    with on_shard("shard_0"):
        later = list(Event.objects.filter(team_id=world.acme.team.id, event_id__gt=boot["event_cursor"]))
    assert [e.type for e in later] == ["channel_created", "message"]  # the creator's channel_join
    assert later[0].payload["channel"]["name"] == "after-boot"
    assert "before-boot" in {c["name"] for c in boot["channels"]}


def test_team_wide_part_is_cached_and_invalidated_by_events(world: World, api) -> None:
    bob = world.acme["bob"].token
    first = _start(api, bob)
    again = _start(api, bob)
    assert again["cache_version"] == first["cache_version"]
    api("conversations.create", world.acme["alice"].token, name="brand-new")
    after = _start(api, bob)
    assert after["cache_version"] != first["cache_version"]
    assert "brand-new" in {c["name"] for c in after["channels"]}
    create_member(world.acme.team, "newbie@acme.test")
    assert "newbie" in {u["name"] for u in _start(api, bob)["users"]}


def test_a_public_topic_change_reaches_the_cached_boot(world: World, api) -> None:
    """A topic is announced by a message, not a team-wide event: it must still invalidate."""
    bob, general = world.acme["bob"].token, world.acme.channels["general"]
    before = _start(api, bob)
    with ExitStack() as stack:
        captures = [stack.enter_context(CaptureQueriesContext(connections[a])) for a in connections]
        assert api("conversations.setTopic", bob, channel=general, topic="launch day")["ok"]
    statements = [q["sql"] for c in captures for q in c.captured_queries]
    after = _start(api, bob)
    assert int(after["cache_version"][1:]) == int(before["cache_version"][1:]) + 1
    assert next(c for c in after["channels"] if c["id"] == general)["topic"]["value"] == "launch day"
    # The bump rides on the event's own statement (its row lock, its frozen-team guard).
    assert sum("messaging_eventsequence" in sql for sql in statements) == 1
    secret = world.acme.channels["secret"]
    assert api("conversations.setPurpose", bob, channel=secret, purpose="hush")["ok"]
    assert _start(api, bob)["cache_version"] == after["cache_version"]  # in no one else's boot


def test_num_members_follows_joins_and_leaves(world: World, api) -> None:
    """Joins and leaves bump no boot_version: the cached channels must not carry the count."""
    bob, carol, random = world.acme["bob"].token, world.acme["carol"].token, world.acme.channels["random"]

    def seen(token: str) -> tuple[dict, dict[str, int]]:
        boot = _start(api, token)
        return boot, {c["id"]: c["num_members"] for c in boot["channels"]}

    def actual() -> dict[str, int]:
        with on_shard("shard_0"):
            public = Channel.objects.filter(team_id=world.acme.team.id, kind=Channel.Kind.PUBLIC)
            return {c.slack_id: c.n for c in public.annotate(n=Count("memberships"))}

    before, counts = seen(bob)
    assert counts == actual()
    assert api("conversations.join", bob, channel=random)["ok"]
    after, joined = seen(carol)
    assert after["cache_version"] == before["cache_version"]  # the people part was not rebuilt
    assert joined[random] == counts[random] + 1 and joined == actual()
    assert api("conversations.leave", bob, channel=random)["ok"]
    assert seen(bob)[1] == counts


def _boot_queries(api, token: str) -> int:
    with ExitStack() as stack:
        captures = [stack.enter_context(CaptureQueriesContext(connections[a])) for a in connections]
        _start(api, token)
    return sum(len(c.captured_queries) for c in captures)


def test_boot_queries_do_not_grow_with_team_size(world: World, api) -> None:
    bob = world.acme["bob"].token
    _start(api, bob)
    small_cached = _boot_queries(api, bob)
    for n in range(25):
        create_member(world.acme.team, f"many{n}@acme.test")
        api("conversations.create", world.acme["alice"].token, name=f"room-{n}")
    api("auth.test", bob)
    cold = _boot_queries(api, bob)  # the events above changed the team: cache rebuilt
    cached = _boot_queries(api, bob)
    assert cached == small_cached <= 7
    assert cold <= cached + 5
    body = json.dumps(_start(api, bob))
    assert body.count('"name": "many') == 25

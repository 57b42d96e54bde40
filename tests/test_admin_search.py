"""Search and filters on team-scoped admin pages: text, pasted Slack ids and ts, list filters,
always within the chosen team."""

from typing import Any

import pytest
from django.test import Client

from chatproject.dbrouter import on_shard
from messaging.models import CustomEmoji, Event, Pin
from teams import ids
from teams.models import Account
from tests.conftest import Api, World

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def staff(client: Client, world: World) -> Client:
    client.force_login(Account.objects.create_superuser("root@staff.test", "pw"))
    return client


def listed(staff: Client, model: str, team_id: int, **params: Any) -> list[Any]:
    """The rows a changelist shows for the team, with these search/filter parameters."""
    response = staff.get(f"/admin/{model}/", {"team_id": team_id, **params})
    assert response.status_code == 200, response
    return list(response.context["cl"].result_list)


def _channel_pk(slack_id: str) -> int:
    return ids.decode(slack_id, ids.CHANNEL_PREFIXES)


def test_members_are_found_by_text_and_by_pasted_user_id(world: World, staff: Client) -> None:
    acme = world.acme
    assert [m.name for m in listed(staff, "teams/member", acme.team.id, q="carol@")] == ["carol"]
    assert [m.name for m in listed(staff, "teams/member", acme.team.id, q=acme["bob"].user_id)] == ["bob"]
    # Another team's member is not found through this team's page, by id or by name.
    assert listed(staff, "teams/member", acme.team.id, q=world.globex["dave"].user_id) == []
    assert listed(staff, "teams/member", acme.team.id, q="dave") == []
    assert [m.name for m in listed(staff, "teams/member", acme.team.id, is_bot__exact=1)] == ["chatbot"]


def test_messages_by_channel_id_author_ts_and_filters(world: World, api: Api, staff: Client) -> None:
    acme = world.acme
    alice, bob = acme["alice"].token, acme["bob"].token
    general, random = acme.channels["general"], acme.channels["random"]
    first = api("chat.postMessage", alice, channel=general, text="first words")["ts"]
    api("chat.postMessage", bob, channel=general, text="a reply", thread_ts=first)
    assert api("chat.postMessage", alice, channel=random, text="elsewhere")["ok"]
    second = api("chat.postMessage", alice, channel=general, text="second words")["ts"]
    api("chat.update", alice, channel=general, ts=second, text="second words, edited")

    def texts(**params: Any) -> list[str]:
        return sorted(m.text for m in listed(staff, "messaging/message", acme.team.id, **params))

    assert texts(q="words") == ["first words", "second words, edited"]
    assert texts(q=random) == ["elsewhere"]
    bob_joined = f"<@{acme['bob'].user_id}> has joined the channel"  # the world's #general and #secret
    assert texts(q=acme["bob"].user_id) == [bob_joined, bob_joined, "a reply"]
    assert texts(q=first) == ["a reply", "first words"]  # the message and its thread
    assert texts(q=second) == ["second words, edited"]
    assert texts(thread_ts__isempty=0) == ["a reply", "first words"]
    assert texts(edited_ts__isempty=0) == ["second words, edited"]
    assert texts(channel__id__exact=_channel_pk(random)) == ["elsewhere"]
    assert texts(q=world.globex.channels["general"]) == []


def test_pins_emoji_and_events_have_search_and_filters(world: World, api: Api, staff: Client) -> None:
    acme = world.acme
    alice, general, random = acme["alice"].token, acme.channels["general"], acme.channels["random"]
    ts = api("chat.postMessage", alice, channel=general, text="pin me")["ts"]
    api("pins.add", alice, channel=general, timestamp=ts)
    elsewhere = api("chat.postMessage", alice, channel=random, text="pinned elsewhere")["ts"]
    api("pins.add", alice, channel=random, timestamp=elsewhere)
    with on_shard("shard_0"):
        CustomEmoji.objects.create(team_id=acme.team.id, name="img", url="https://example.test/i.png")
        CustomEmoji.objects.create(team_id=acme.team.id, name="alias", alias_for="img")
        pin, other_pin = Pin.objects.filter(team_id=acme.team.id).order_by("id")
        posted = Event.objects.get(team_id=acme.team.id, type="message", payload__text="pin me")

    assert [p.pk for p in listed(staff, "messaging/pin", acme.team.id, q="pin me")] == [pin.pk]
    assert [p.pk for p in listed(staff, "messaging/pin", acme.team.id, q=general)] == [pin.pk]
    in_random = listed(staff, "messaging/pin", acme.team.id, channel__id__exact=_channel_pk(random))
    assert [p.pk for p in in_random] == [other_pin.pk]
    emoji = listed(staff, "messaging/customemoji", acme.team.id, alias_for__isempty=1)
    assert [e.name for e in emoji] == ["img"]
    by_number = listed(staff, "messaging/event", acme.team.id, q=str(posted.event_id))
    assert [e.pk for e in by_number] == [posted.pk]
    joins = listed(staff, "messaging/event", acme.team.id, type__exact="team_join")
    assert {e.type for e in joins} == {"team_join"} and len(joins) == 3
    api("reactions.add", acme["bob"].token, channel=general, timestamp=ts, name="tada")
    by_member = listed(staff, "messaging/reaction", acme.team.id, q=acme["bob"].user_id)
    assert [r.name for r in by_member] == ["tada"]
    assert listed(staff, "messaging/reaction", acme.team.id, q=acme["carol"].user_id) == []

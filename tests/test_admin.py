"""Django admin: every model registered, team-scoped pages on the chosen team's shard and only
that team's rows, and admin writes going through the actions (rows plus events)."""

from urllib.parse import quote

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client

from chatproject.dbrouter import is_shard_model, on_shard
from messaging.models import Channel, CustomEmoji, Event, Message
from teams import ids
from teams.actions import create_team, set_team_status
from teams.admin_shards import SESSION_TEAM_KEY
from teams.models import Account, ApiToken, Member, Team
from tests.conftest import World

pytestmark = pytest.mark.django_db(databases="__all__")

PROJECT_APPS = ("teams", "messaging", "presence", "jobs")


@pytest.fixture
def staff(client: Client, world: World) -> Client:
    account = Account.objects.create_superuser("root@staff.test", "pw")
    client.force_login(account)
    return client


def _pk(slack_id: str) -> int:
    return ids.decode(slack_id, (*ids.USER_PREFIXES, *ids.CHANNEL_PREFIXES))


def _list_url(model: str, team_id: int) -> str:
    return f"/admin/{model}/?team_id={team_id}"


def _object_url(model: str, pk: int, team_id: int, page: str = "change") -> str:
    # As Django's own change links carry the list's query (and with it the team).
    return f"/admin/{model}/{pk}/{page}/?_changelist_filters={quote(f'team_id={team_id}')}"


def _post(api, token: str, channel: str, text: str) -> str:
    answer = api("chat.postMessage", token, channel=channel, text=text)
    assert answer["ok"], answer
    return answer["ts"]


def _message(team_id: int, ts: str) -> Message | None:
    with on_shard("shard_0"):
        return Message.objects.filter(team_id=team_id, ts=ids.parse_ts(ts)).first()


def _events(team_id: int, shard: str = "shard_0") -> list[Event]:
    with on_shard(shard):
        return list(Event.objects.filter(team_id=team_id).order_by("event_id"))


def test_every_model_is_registered() -> None:
    models = [m for label in PROJECT_APPS for m in apps.get_app_config(label).get_models()]
    assert len(models) >= 13  # Account, Team, ApiToken, Member, Bot and the eight of messaging
    assert [m.__name__ for m in models if not admin.site.is_registered(m)] == []


def test_member_list_shows_only_the_chosen_teams_members(world: World, staff: Client) -> None:
    # A second team on acme's shard: isolation must come from team_id, not only the shard.
    create_team("initech", "Initech", "bill@initech.test", shard="shard_0")
    acme = staff.get(_list_url("teams/member", world.acme.team.id))
    assert acme.status_code == 200
    page = acme.content.decode()
    assert "bob@acme.test" in page and "carol@acme.test" in page and "alice@acme.test" in page
    assert "dave@globex.test" not in page and "bill@initech.test" not in page

    globex = staff.get(_list_url("teams/member", world.globex.team.id)).content.decode()
    assert "dave@globex.test" in globex
    assert "bob@acme.test" not in globex and "bill@initech.test" not in globex


def test_a_team_is_chosen_first_and_remembered(world: World, staff: Client) -> None:
    chooser = staff.get("/admin/teams/member/")
    assert chooser.status_code == 200
    assert "admin/team_scoped/choose_team.html" in [t.name for t in chooser.templates]
    page = chooser.content.decode()
    assert f"?team_id={world.acme.team.id}" in page and f"?team_id={world.globex.team.id}" in page
    assert "bob@acme.test" not in page

    staff.get(_list_url("teams/member", world.globex.team.id))
    assert staff.session[SESSION_TEAM_KEY] == world.globex.team.id
    # Another model's list opened bare goes to the remembered team, named in its URL.
    redirect = staff.get("/admin/messaging/channel/")
    assert redirect.status_code == 302
    assert redirect.url == f"/admin/messaging/channel/?team_id={world.globex.team.id}"
    # A page other than the list needs a team too.
    fresh = Client()
    fresh.force_login(Account.objects.get(email="root@staff.test"))
    assert fresh.get("/admin/teams/member/add/").url == "/admin/teams/member/"


def test_object_pages_of_another_team_are_not_found(world: World, staff: Client) -> None:
    bill = create_team("initech", "Initech", "bill@initech.test", shard="shard_0").owner_id
    same_shard = staff.get(_object_url("teams/member", bill, world.acme.team.id))
    assert same_shard.status_code == 302 and same_shard.url == "/admin/"
    dave = _pk(world.globex["dave"].user_id)
    wrong_team = staff.get(_object_url("teams/member", dave, world.acme.team.id))
    assert wrong_team.status_code == 302 and wrong_team.url == "/admin/"  # "does not exist"
    right_team = staff.get(_object_url("teams/member", dave, world.globex.team.id))
    assert right_team.status_code == 200 and "dave@globex.test" in right_team.content.decode()


def test_every_team_scoped_page_renders_on_the_teams_shard(world: World, api, staff: Client) -> None:
    # The queries of rendering (results, related rows, filters) must run on the shard too.
    acme = world.acme
    _post(api, acme["bob"].token, acme.channels["general"], "hello")
    for model in admin.site._registry:
        if not is_shard_model(model):
            continue
        base = f"{model._meta.app_label}/{model._meta.model_name}"
        listing = staff.get(_list_url(base, acme.team.id))
        assert listing.status_code == 200, base
        with on_shard(acme.team.shard):
            row = model._default_manager.filter(team_id=acme.team.id).first()
        if row is None:
            continue
        for page in ("change", "history"):
            response = staff.get(_object_url(base, row.pk, acme.team.id, page))
            assert response.status_code == 200, (base, page)


def test_deactivate_member_revokes_tokens(world: World, api, staff: Client) -> None:
    acme = world.acme
    bob = _pk(acme["bob"].user_id)
    before = len(_events(acme.team.id))
    response = staff.post(
        _list_url("teams/member", acme.team.id),
        {"action": "deactivate_members", "_selected_action": [bob], "index": 0},
    )
    assert response.status_code == 302
    with on_shard("shard_0"):
        assert Member.objects.get(id=bob).deleted
    assert not ApiToken.objects.filter(member_id=bob, revoked_at__isnull=True).exists()
    assert api("auth.test", acme["bob"].token)["ok"] is False
    assert [e.type for e in _events(acme.team.id)[before:]] == ["user_change"]

    # The owner is refused by the action, and stays active.
    alice = _pk(acme["alice"].user_id)
    refused = staff.post(
        _list_url("teams/member", acme.team.id),
        {"action": "deactivate_members", "_selected_action": [alice], "index": 0},
        follow=True,
    )
    assert "cant_disable_owner" in refused.content.decode()
    with on_shard("shard_0"):
        assert not Member.objects.get(id=alice).deleted
    assert api("auth.test", acme["alice"].token)["ok"] is True


def test_reset_tokens_shows_a_new_token_once(world: World, api, staff: Client) -> None:
    acme = world.acme
    carol = _pk(acme["carol"].user_id)
    before = len(_events(acme.team.id))
    response = staff.post(
        _list_url("teams/member", acme.team.id),
        {"action": "reset_tokens", "_selected_action": [carol], "index": 0},
    )
    assert response.status_code == 200
    page = response.content.decode()
    new_token = page.split("<code>")[1].split("</code>")[0]
    assert new_token.startswith(f"xoxp-{acme.team.id}-{carol}-")
    assert api("auth.test", acme["carol"].token)["ok"] is False
    assert api("auth.test", new_token)["user_id"] == acme["carol"].user_id
    # Through the reset_member_tokens action: carol's own sockets hear Slack's tokens_revoked.
    [event] = _events(acme.team.id)[before:]
    assert (event.type, event.audience) == ("tokens_revoked", [carol])
    assert event.payload["tokens"] == {"oauth": [acme["carol"].user_id]}


def test_add_member_goes_through_create_member(world: World, api, staff: Client) -> None:
    acme = world.acme
    response = staff.post(
        f"/admin/teams/member/add/?_changelist_filters={quote(f'team_id={acme.team.id}')}",
        {"email": "Erin@Acme.test", "name": "Erin", "password": ""},
    )
    assert response.status_code == 200, response.content
    token = response.content.decode().split("<code>")[1].split("</code>")[0]
    assert api("auth.test", token)["user"] == "erin"
    with on_shard("shard_0"):
        erin = Member.objects.get(team_id=acme.team.id, email="erin@acme.test")
    join, said = _events(acme.team.id)[-2:]
    assert join.type == "team_join" and join.payload["user"]["id"] == erin.slack_id
    # #general says so, as Slack does when someone joins the team.
    assert said.type == "message" and said.channel_id == _pk(acme.channels["general"])
    assert (said.payload["subtype"], said.payload["user"]) == ("channel_join", erin.slack_id)


def test_message_delete_action_deletes_through_the_action(world: World, api, staff: Client) -> None:
    acme = world.acme
    ts = _post(api, acme["bob"].token, acme.channels["general"], "delete me")
    message = _message(acme.team.id, ts)
    assert message is not None
    url = _list_url("messaging/message", acme.team.id)
    form = {"action": "delete_selected", "_selected_action": [message.pk]}
    confirm = staff.post(url, form)
    assert confirm.status_code == 200 and f"{message.channel_id}/{ts}" in confirm.content.decode()
    assert staff.post(url, {**form, "post": "yes"}).status_code == 302
    assert _message(acme.team.id, ts) is None
    last = _events(acme.team.id)[-1]
    assert last.type == "message" and last.payload["subtype"] == "message_deleted"
    assert last.payload["deleted_ts"] == ts and last.channel_id == _pk(acme.channels["general"])


def test_message_delete_in_a_dm_the_owner_cannot_see(world: World, api, staff: Client) -> None:
    acme = world.acme
    dm = api("conversations.open", acme["bob"].token, users=acme["carol"].user_id)["channel"]["id"]
    ts = _post(api, acme["bob"].token, dm, "psst")
    message = _message(acme.team.id, ts)
    assert message is not None
    response = staff.post(
        _object_url("messaging/message", message.pk, acme.team.id, "delete"), {"post": "yes"}
    )
    assert response.status_code == 302
    assert _message(acme.team.id, ts) is None
    assert _events(acme.team.id)[-1].payload["subtype"] == "message_deleted"


def test_message_edit_goes_through_update_message(world: World, api, staff: Client) -> None:
    acme = world.acme
    ts = _post(api, acme["bob"].token, acme.channels["general"], "typo")
    message = _message(acme.team.id, ts)
    assert message is not None
    url = _object_url("messaging/message", message.pk, acme.team.id)
    response = staff.post(url, {"text": "fixed", "_save": "Save"})
    assert response.status_code == 302
    edited = _message(acme.team.id, ts)
    assert edited is not None and edited.text == "fixed"
    assert edited.edited_ts is not None and edited.edited_by == _pk(acme["bob"].user_id)
    last = _events(acme.team.id)[-1]
    assert last.type == "message" and last.payload["subtype"] == "message_changed"
    assert last.payload["message"]["text"] == "fixed" and last.payload["previous_message"]["text"] == "typo"


def test_archive_channel_action(world: World, staff: Client) -> None:
    acme = world.acme
    random = _pk(acme.channels["random"])
    response = staff.post(
        _list_url("messaging/channel", acme.team.id),
        {"action": "archive_channels", "_selected_action": [random], "index": 0},
    )
    assert response.status_code == 302
    with on_shard("shard_0"):
        assert Channel.objects.get(id=random).is_archived
    last = _events(acme.team.id)[-1]
    assert last.type == "channel_archive" and last.payload["channel"] == acme.channels["random"]


def test_read_only_models_refuse_writes(world: World, staff: Client) -> None:
    acme = world.acme
    with on_shard("shard_0"):
        event = Event.objects.filter(team_id=acme.team.id).first()
    assert event is not None
    url = _object_url("messaging/event", event.pk, acme.team.id)
    assert staff.get(url).status_code == 200  # a "view" page
    assert staff.post(url, {"type": "forged"}).status_code == 403
    assert staff.get(f"/admin/messaging/reaction/add/?team_id={acme.team.id}").status_code == 403
    with on_shard("shard_0"):
        assert Event.objects.get(pk=event.pk).type == event.type


def test_moving_team_refuses_admin_writes(world: World, staff: Client) -> None:
    acme = world.acme
    set_team_status(acme.team.id, Team.Status.MOVING)
    bob = _pk(acme["bob"].user_id)
    staff.post(
        _list_url("teams/member", acme.team.id),
        {"action": "deactivate_members", "_selected_action": [bob], "index": 0},
    )
    with on_shard("shard_0"):
        assert not Member.objects.get(id=bob).deleted


def test_team_created_from_admin_goes_through_create_team(world: World, api, staff: Client) -> None:
    response = staff.post(
        "/admin/teams/team/add/",
        {"domain": "Initech", "name": "Initech", "owner_email": "bill@initech.test", "shard": "shard_1"},
    )
    assert response.status_code == 200, response.content
    team = Team.objects.get(domain="initech")
    assert team.shard == "shard_1"
    owner_token = response.content.decode().split("<code>")[1].split("</code>")[0]
    assert api("auth.test", owner_token)["team_id"] == team.slack_id
    with on_shard("shard_1"):
        assert Channel.objects.filter(team_id=team.id, name="general").exists()


def test_control_pages_and_add_forms_render(world: World, staff: Client) -> None:
    acme = world.acme.team.id
    alice = Account.objects.get(email="alice@acme.test")
    for url in (
        "/admin/",
        "/admin/teams/team/",
        f"/admin/teams/team/{acme}/change/",
        "/admin/teams/team/add/",
        "/admin/teams/account/",
        f"/admin/teams/account/{alice.pk}/change/",
        "/admin/teams/account/add/",
        "/admin/teams/apitoken/",
        "/admin/teams/apitoken/?q=not-a-number",
        f"/admin/teams/apitoken/?q={acme}",
        "/admin/admin/logentry/",
        "/admin/teams/teammembership/",
        f"/admin/teams/member/add/?team_id={acme}",
        f"/admin/messaging/channel/add/?team_id={acme}",
        f"/admin/messaging/customemoji/add/?team_id={acme}",
    ):
        assert staff.get(url).status_code == 200, url
    added = staff.post(
        "/admin/teams/account/add/",
        {
            "email": "New@Staff.test",
            "usable_password": "true",
            "password1": "a-Long-pw-1",
            "password2": "a-Long-pw-1",
        },
    )
    assert added.status_code == 302 and Account.objects.get(email="new@staff.test").check_password(
        "a-Long-pw-1"
    )


def test_channel_and_emoji_writes_go_through_actions(world: World, staff: Client) -> None:
    acme = world.acme
    add = f"?_changelist_filters={quote(f'team_id={acme.team.id}')}"
    response = staff.post(f"/admin/messaging/channel/add/{add}", {"name": "ops", "is_private": "on"})
    assert response.status_code == 302
    with on_shard("shard_0"):
        ops = Channel.objects.get(team_id=acme.team.id, name="ops")
    assert ops.kind == Channel.Kind.PRIVATE and ops.creator_id == _pk(acme["alice"].user_id)
    joined, said = _events(acme.team.id)[-2:]
    assert joined.type == "group_joined" and said.payload["subtype"] == "channel_join"
    taken = staff.post(f"/admin/messaging/channel/add/{add}", {"name": "general"})
    assert taken.status_code == 200 and "exists in this team" in taken.content.decode()

    staff.post(f"/admin/messaging/customemoji/add/{add}", {"name": "party", "url": "https://x.test/p.png"})
    assert _events(acme.team.id)[-1].payload["subtype"] == "add"
    with on_shard("shard_0"):
        party = CustomEmoji.objects.get(team_id=acme.team.id, name="party")
    staff.post(_object_url("messaging/customemoji", party.pk, acme.team.id, "delete"), {"post": "yes"})
    with on_shard("shard_0"):
        assert not CustomEmoji.objects.filter(pk=party.pk).exists()
    last = _events(acme.team.id)[-1]
    assert last.type == "emoji_changed" and last.payload["subtype"] == "remove"
    assert last.payload["names"] == ["party"]

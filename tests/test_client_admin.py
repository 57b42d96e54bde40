"""Owner/admin pages: inviting people by link, and who may open them."""

import re

import pytest
from django.test import Client

from teams.models import Account, TeamMembership
from tests.browser import TIMEOUT_MS, screenshot, session_cookie
from tests.conftest import World

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True)]


def _signed_in(email: str, team_id: int) -> Client:
    client = Client()
    client.cookies["sessionid"] = session_cookie(email, team_id)["value"]
    return client


def _invite_link(client: Client, email: str) -> str:
    page = client.post("/team-admin/", {"email": email}).content.decode()
    found = re.search(r'id="invite-link"[^>]*value="([^"]+)"', page)
    assert found, page
    return found.group(1).replace("http://testserver", "")


def test_only_owners_and_admins_open_the_admin_page(world: World) -> None:
    assert _signed_in("alice@acme.test", world.acme.team.id).get("/team-admin/").status_code == 200
    assert _signed_in("bob@acme.test", world.acme.team.id).get("/team-admin/").status_code == 403
    assert b"Team admin" in _signed_in("alice@acme.test", world.acme.team.id).get("/").content
    assert b"Team admin" not in _signed_in("bob@acme.test", world.acme.team.id).get("/").content


def test_an_invitation_never_resets_an_existing_password(world: World) -> None:
    link = _invite_link(_signed_in("alice@acme.test", world.acme.team.id), "dave@globex.test")
    before = Account.objects.get(email="dave@globex.test").password
    stranger = Client()
    answer = stranger.post(link, {"name": "Mallory", "password": "attacker-pw"})
    assert b"already has an account" in answer.content
    assert Account.objects.get(email="dave@globex.test").password == before
    assert not TeamMembership.objects.filter(account__email="dave@globex.test", team_id=world.acme.team.id)
    # With dave's own password the same link adds him to acme.
    joined = stranger.post(link, {"name": "Dave", "password": "pw"})
    assert joined.status_code == 302 and joined["Location"] == "/"
    assert TeamMembership.objects.filter(account__email="dave@globex.test", team_id=world.acme.team.id)


def test_a_tampered_invitation_is_refused(world: World) -> None:
    link = _invite_link(_signed_in("alice@acme.test", world.acme.team.id), "x@acme.test")
    answer = Client().get(link[:-3] + "abc/")
    assert answer.status_code == 400 and b"not valid" in answer.content


@pytest.mark.browser
def test_invite_link_signs_a_new_person_up_into_the_team(world: World, chromium, web_server) -> None:
    admin = chromium.new_context()
    admin.set_default_timeout(TIMEOUT_MS)
    admin.add_cookies([{**session_cookie("alice@acme.test", world.acme.team.id), "url": web_server.http}])
    page = admin.new_page()
    page.goto(web_server.http + "/")
    page.click("text=Team admin")
    page.fill("#id_email", "erin@acme.test")
    page.click("#invite button[type=submit]")
    link = page.input_value("#invite-link")
    screenshot(page, "team-admin")
    admin.close()

    newcomer = chromium.new_context()
    newcomer.set_default_timeout(TIMEOUT_MS)
    page = newcomer.new_page()
    page.goto(link)
    assert page.inner_text("#invite-email") == "erin@acme.test"
    page.fill("#id_name", "Erin")
    page.fill("#id_password", "short")
    page.click("button[type=submit]")
    assert "at least 8" in page.inner_text("[role=alert]")
    page.fill("#id_password", "long enough secret")
    screenshot(page, "invite-sign-up")
    page.click("button[type=submit]")
    page.wait_for_selector("#client[data-state=live]")
    assert page.inner_text("#channel-title") == "#general"
    assert TeamMembership.objects.filter(account__email="erin@acme.test", team_id=world.acme.team.id).exists()
    newcomer.close()

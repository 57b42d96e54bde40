"""Signing in through the form in Chromium, choosing a team, and signing out."""

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from teams.actions import create_member
from teams.models import Account
from tests.browser import TIMEOUT_MS, screenshot, session_cookie
from tests.conftest import World
from tests.rtm_client import web

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]


def _password(email: str, password: str) -> None:
    # The server processes check passwords with the real hasher (the tests' own is MD5).
    hashed = PBKDF2PasswordHasher().encode(password, "browsertestsalt", iterations=1000)
    Account.objects.filter(email=email).update(password=hashed)


def test_sign_in_choose_team_and_sign_out(world: World, chromium, web_server) -> None:
    create_member(world.globex.team, "bob@acme.test", name="Bob")  # bob is in two teams
    _password("bob@acme.test", "s3cret")
    page = chromium.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(web_server.http + "/")
    assert page.url.endswith("/signin/?next=/")
    page.fill("#id_username", "bob@acme.test")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    assert "Wrong email or password" in page.inner_text("[role=alert]")
    page.fill("#id_password", "s3cret")
    screenshot(page, "sign-in")
    page.click("button[type=submit]")
    page.wait_for_url("**/teams/")
    screenshot(page, "choose-team")
    page.click("text=Globex")
    page.wait_for_selector("#client")
    assert page.inner_text(".topbar strong") == "Globex"
    page.click("text=Sign out")
    page.wait_for_url("**/signin/")
    page.close()


def test_signing_out_ends_the_sessions_other_tabs(world: World, chromium, web_server) -> None:
    """Two tabs of one signed-in session: signing out in one closes the other's socket, and
    that tab goes to the sign-in page instead of reconnecting (or hearing the team) on."""
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.add_cookies([{**session_cookie("alice@acme.test", world.acme.team.id), "url": web_server.http}])
    tabs = [context.new_page(), context.new_page()]
    for tab in tabs:
        tab.goto(web_server.http + "/")
        tab.wait_for_selector("#client[data-state=live]")
    tabs[0].click("text=Sign out")
    tabs[0].wait_for_url("**/signin/")
    tabs[1].wait_for_url("**/signin/**")
    context.close()


def test_two_teams_in_two_tabs_each_post_to_their_own(world: World, chromium, web_server) -> None:
    """Opening a second team in another tab leaves the first tab on its team: what it sends
    still goes to its own team (the session's team is the one opened last)."""
    create_member(world.globex.team, "bob@acme.test", name="Bob")
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.add_cookies([{**session_cookie("bob@acme.test", world.acme.team.id), "url": web_server.http}])
    acme_tab, globex_tab = context.new_page(), context.new_page()
    acme_tab.goto(f"{web_server.http}/client/{world.acme.team.slack_id}/#/{world.acme.channels['general']}")
    acme_tab.wait_for_selector("#client[data-state=live]")
    globex_tab.goto(f"{web_server.http}/client/{world.globex.team.slack_id}/")
    globex_tab.wait_for_selector("#client[data-state=live]")
    assert globex_tab.inner_text(".topbar strong") == "Globex"
    acme_tab.fill("#composer textarea", "still in Acme")
    acme_tab.press("#composer textarea", "Enter")
    acme_tab.wait_for_selector("#messages .msg:not(.pending) >> text=still in Acme")
    alice = web(web_server, world.acme["alice"].token)
    history = alice.conversations_history(channel=world.acme.channels["general"])
    assert "still in Acme" in [m["text"] for m in history["messages"]]
    assert acme_tab.inner_text(".topbar strong") == "Acme"
    assert acme_tab.is_hidden("#banner")
    context.close()

"""Signing in with email and password, choosing a team, and the API over the session."""

import json

import pytest
from django.test import Client

from teams.actions import create_member
from tests.conftest import World

pytestmark = pytest.mark.django_db(databases="__all__")


def _csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def _sign_in(client: Client, email: str, password: str):
    client.get("/signin/")
    return client.post(
        "/signin/",
        {"username": email, "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
    )


def test_sign_in_with_one_team_goes_straight_to_it(world: World) -> None:
    client = _csrf_client()
    response = _sign_in(client, "bob@acme.test", "pw")
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200 and b"Acme" in page.content
    assert "script-src 'self'" in page["Content-Security-Policy"]


def test_wrong_password_is_a_readable_error(world: World) -> None:
    response = _sign_in(_csrf_client(), "bob@acme.test", "nope")
    assert response.status_code == 200 and b"Wrong email or password" in response.content


def test_person_in_two_teams_chooses(world: World) -> None:
    create_member(world.globex.team, "bob@acme.test", name="Bob")  # same account, second team
    client = _csrf_client()
    assert _sign_in(client, "bob@acme.test", "pw")["Location"] == "/teams/"
    page = client.get("/teams/").content.decode()
    assert "Acme" in page and "Globex" in page
    client.post(
        "/teams/", {"team_id": world.globex.team.id, "csrfmiddlewaretoken": client.cookies["csrftoken"].value}
    )
    assert b"Globex" in client.get("/").content
    # A team the account is not in cannot be chosen.
    other = _csrf_client()
    _sign_in(other, "carol@acme.test", "pw")
    other.post(
        "/teams/", {"team_id": world.globex.team.id, "csrfmiddlewaretoken": other.cookies["csrftoken"].value}
    )
    assert b"Acme" in other.get("/").content


def test_session_api_calls_need_the_csrf_token(world: World) -> None:
    client = _csrf_client()
    _sign_in(client, "alice@acme.test", "pw")
    body = json.dumps({"channel": world.acme.channels["general"], "text": "from the browser"})
    refused = client.post("/api/chat.postMessage", body, content_type="application/json")
    assert refused.status_code == 403 and refused.json() == {"ok": False, "error": "invalid_csrf"}
    accepted = client.post(
        "/api/chat.postMessage",
        body,
        content_type="application/json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )
    assert accepted.json()["message"]["user"] == world.acme["alice"].user_id
    # A GET carries the cookie too (an image in a message, a link from another site): it
    # calls nothing, whatever the method, token in the query or not.
    private = world.acme.channels["secret"]
    for url in (
        f"/api/conversations.invite?channel={private}&users={world.acme['carol'].user_id}",
        f"/api/chat.postMessage?channel={world.acme.channels['general']}&text=forged",
        "/api/auth.revoke",
    ):
        forged = client.get(url)
        assert forged.status_code == 403 and forged.json() == {"ok": False, "error": "invalid_csrf"}, url
    assert client.post("/api/auth.test", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value).json()["ok"]


def test_signed_out_api_call_is_not_authed(world: World) -> None:
    assert _csrf_client().post("/api/auth.test").json() == {"ok": False, "error": "not_authed"}


def test_deactivated_member_session_is_refused(world: World) -> None:
    from teams.actions import set_member_active
    from tests.conftest import member_pk

    client = _csrf_client()
    _sign_in(client, "carol@acme.test", "pw")
    set_member_active(world.acme.team, member_pk(world.acme["carol"].user_id), False)
    answer = client.post("/api/auth.test", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value).json()
    assert answer == {"ok": False, "error": "account_inactive"}
    assert (
        world.acme["carol"].token
        and Client()
        .post("/api/auth.test", HTTP_AUTHORIZATION=f"Bearer {world.acme['carol'].token}")
        .json()["error"]
        == "token_revoked"
    )


def test_password_guessing_is_throttled(world: World) -> None:
    """Ten wrong passwords for an email, and even the right one is refused for a while,
    without being checked; other people signing in from the same address are not."""
    create_member(world.acme.team, "dan@acme.test", name="Dan", password="the right one")
    client = _csrf_client()
    for _ in range(10):
        assert b"Wrong email or password" in _sign_in(client, "dan@acme.test", "a guess").content
    refused = _sign_in(client, "dan@acme.test", "the right one")
    assert refused.status_code == 200 and b"Too many failed sign-ins: try again in" in refused.content
    assert _sign_in(_csrf_client(), "bob@acme.test", "pw").status_code == 302

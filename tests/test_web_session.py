"""Signing in with email and password, choosing a team, and the API over the session."""

import json
from ipaddress import ip_network
from typing import Any

import pytest
from django.test import Client, RequestFactory, override_settings

from teams import sign_in_limits
from teams.actions import create_member
from teams.invites import invite_token
from teams.models import Team
from teams.sign_in_limits import client_address
from tests.conftest import World

pytestmark = [pytest.mark.django_db(databases="__all__"), pytest.mark.usefixtures("fresh_sign_in_counts")]

# Documentation ranges (RFC 5737): an attacker's address, its victim's, a proxy's.
ATTACKER, VICTIM, PROXY = "203.0.113.9", "198.51.100.7", "192.0.2.1"


def _csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def _sign_in(client: Client, email: str, password: str, **headers: Any):
    """`headers`: request META for both requests (REMOTE_ADDR, HTTP_X_FORWARDED_FOR)."""
    client.get("/signin/", **headers)
    return client.post(
        "/signin/",
        {"username": email, "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
        **headers,
    )


def _throttled(response: Any) -> bool:
    assert response.status_code in (200, 302), response.status_code
    return b"Too many failed sign-ins: try again in" in response.content


def test_sign_in_with_one_team_goes_straight_to_it(world: World) -> None:
    client = _csrf_client()
    response = _sign_in(client, "bob@acme.test", "pw")
    assert response.status_code == 302 and response["Location"] == f"/client/{world.acme.team.slack_id}/"
    page = client.get(response["Location"])
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
    chosen = client.post(
        "/teams/", {"team_id": world.globex.team.id, "csrfmiddlewaretoken": client.cookies["csrftoken"].value}
    )
    assert chosen["Location"] == f"/client/{world.globex.team.slack_id}/"
    assert b"Globex" in client.get("/", follow=True).content
    # A team the account is not in cannot be chosen.
    other = _csrf_client()
    _sign_in(other, "carol@acme.test", "pw")
    other.post(
        "/teams/", {"team_id": world.globex.team.id, "csrfmiddlewaretoken": other.cookies["csrftoken"].value}
    )
    assert b"Acme" in other.get("/", follow=True).content
    # Nor opened by its address.
    assert other.get(f"/client/{world.globex.team.slack_id}/")["Location"] == "/teams/"
    assert other.get("/client/not-a-team/").status_code == 404


def _post_as_tab(client: Client, team: str, channel: str, text: str) -> dict[str, Any]:
    body = json.dumps({"channel": channel, "text": text})
    headers = {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value, "HTTP_X_CHAT_TEAM": team}
    return client.post("/api/chat.postMessage", body, content_type="application/json", **headers).json()


def test_each_tab_keeps_its_own_team(world: World) -> None:
    """Two teams open in two tabs of one session: each tab's calls name its team, so opening
    the second does not turn the first one's posts to it (they would fail as channel_not_found)."""
    create_member(world.globex.team, "bob@acme.test", name="Bob")
    client = _csrf_client()
    _sign_in(client, "bob@acme.test", "pw")
    acme, globex = world.acme.team.slack_id, world.globex.team.slack_id
    assert client.get(f"/client/{acme}/").status_code == 200
    assert client.get(f"/client/{globex}/").status_code == 200  # opened last: the session's team
    posted = _post_as_tab(client, acme, world.acme.channels["general"], "from the Acme tab")
    assert posted["ok"], posted
    assert _post_as_tab(client, globex, world.globex.channels["general"], "from the Globex tab")["ok"]
    # Without the header, the team opened last.
    assert _post_as_tab(client, "", world.acme.channels["general"], "no tab")["error"] == "channel_not_found"
    assert client.get("/")["Location"] == f"/client/{globex}/"


def test_a_tab_cannot_name_a_team_it_is_not_in(world: World) -> None:
    client = _csrf_client()
    _sign_in(client, "carol@acme.test", "pw")
    general, refused = world.globex.channels["general"], {"ok": False, "error": "not_authed"}
    assert _post_as_tab(client, world.globex.team.slack_id, general, "x") == refused
    assert _post_as_tab(client, "T0", general, "x") == refused
    assert _post_as_tab(client, "nonsense", general, "x") == refused
    # Nor whether the team is moving (503 team_is_moving to its own members).
    Team.objects.filter(id=world.globex.team.id).update(status=Team.Status.MOVING)
    assert _post_as_tab(client, world.globex.team.slack_id, general, "x") == refused


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
    """Ten wrong passwords for an email from one address, and even the right one is refused
    from there for a while, without being checked; other people signing in from the same
    address are not."""
    create_member(world.acme.team, "dan@acme.test", name="Dan", password="the right one")
    client = _csrf_client()
    for _ in range(10):
        assert b"Wrong email or password" in _sign_in(client, "dan@acme.test", "a guess").content
    refused = _sign_in(client, "dan@acme.test", "the right one")
    assert refused.status_code == 200 and b"Too many failed sign-ins: try again in" in refused.content
    assert _sign_in(_csrf_client(), "bob@acme.test", "pw").status_code == 302


def test_guesses_from_elsewhere_do_not_pause_the_owner(world: World) -> None:
    """Ten wrong passwords for dan from the attacker's address pause dan's sign-in from
    there only: dan signs in from his own address, and his success does not lift the
    attacker's pause."""
    create_member(world.acme.team, "dan@acme.test", name="Dan", password="the right one")
    attacker = _csrf_client()
    for _ in range(10):
        assert (
            b"Wrong email or password"
            in _sign_in(attacker, "dan@acme.test", "a guess", REMOTE_ADDR=ATTACKER).content
        )
    assert _throttled(_sign_in(attacker, "dan@acme.test", "the right one", REMOTE_ADDR=ATTACKER))
    dan = _sign_in(_csrf_client(), "dan@acme.test", "the right one", REMOTE_ADDR=VICTIM)
    assert dan.status_code == 302
    assert _throttled(_sign_in(_csrf_client(), "dan@acme.test", "the right one", REMOTE_ADDR=ATTACKER))


def test_one_address_guessing_many_emails_is_paused(world: World) -> None:
    """Fifty failures from one address, each for a different email, pause that address for
    everyone behind it (signing in to an account of one's own on the way does not reset the
    count); other addresses sign in as before."""
    client = _csrf_client()
    for n in range(50):
        if n == 49:
            assert _sign_in(_csrf_client(), "carol@acme.test", "pw", REMOTE_ADDR=ATTACKER).status_code == 302
        assert not _throttled(_sign_in(client, f"nobody{n}@acme.test", "a guess", REMOTE_ADDR=ATTACKER))
    assert _throttled(_sign_in(client, "bob@acme.test", "pw", REMOTE_ADDR=ATTACKER))
    assert _sign_in(_csrf_client(), "bob@acme.test", "pw", REMOTE_ADDR=VICTIM).status_code == 302


def test_guessing_one_email_from_many_addresses_is_paused(world: World) -> None:
    """Nine failures from each of eleven addresses stay under each address's limits; the
    hundredth for the one email, from a twelfth, pauses it from every address, its
    owner's too. Other emails still sign in from the addresses that guessed."""
    create_member(world.acme.team, "dan@acme.test", name="Dan", password="the right one")
    client = _csrf_client()
    for n in range(11):
        for _ in range(9):
            assert not _throttled(_sign_in(client, "dan@acme.test", "a guess", REMOTE_ADDR=f"203.0.113.{n}"))
    assert _sign_in(_csrf_client(), "dan@acme.test", "the right one", REMOTE_ADDR=VICTIM).status_code == 302
    assert not _throttled(_sign_in(client, "dan@acme.test", "a guess", REMOTE_ADDR="203.0.113.11"))
    assert _throttled(_sign_in(_csrf_client(), "dan@acme.test", "the right one", REMOTE_ADDR=VICTIM))
    assert _sign_in(_csrf_client(), "bob@acme.test", "pw", REMOTE_ADDR="203.0.113.0").status_code == 302


def test_behind_a_proxy_the_address_is_the_one_it_forwarded(world: World) -> None:
    """With one trusted proxy every request comes from its address; the client's is the
    last X-Forwarded-For entry, which the proxy appended. Entries left of it are the
    client's own say: varying them does not escape the pause."""
    create_member(world.acme.team, "dan@acme.test", name="Dan", password="the right one")
    with override_settings(TRUSTED_PROXY_HOPS=1, TRUSTED_PROXIES=[ip_network(f"{PROXY}/32")]):
        attacker = _csrf_client()
        for n in range(10):
            spoofed = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"10.9.8.{n}, {ATTACKER}"}
            assert not _throttled(_sign_in(attacker, "dan@acme.test", "a guess", **spoofed))
        spoofed = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"{VICTIM},{ATTACKER}"}
        assert _throttled(_sign_in(attacker, "dan@acme.test", "the right one", **spoofed))
        dan = _sign_in(
            _csrf_client(), "dan@acme.test", "the right one", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=VICTIM
        )
        assert dan.status_code == 302


def test_without_trusted_proxies_x_forwarded_for_is_ignored(world: World) -> None:
    """With CHAT_TRUSTED_PROXY_HOPS at 0 (the default) X-Forwarded-For is whatever the
    client wrote: a new one for every guess does not make a new address."""
    create_member(world.acme.team, "dan@acme.test", name="Dan", password="the right one")
    with override_settings(TRUSTED_PROXY_HOPS=0):
        attacker = _csrf_client()
        for n in range(10):
            made_up = {"REMOTE_ADDR": ATTACKER, "HTTP_X_FORWARDED_FOR": f"10.9.8.{n}"}
            assert not _throttled(_sign_in(attacker, "dan@acme.test", "a guess", **made_up))
        made_up = {"REMOTE_ADDR": ATTACKER, "HTTP_X_FORWARDED_FOR": VICTIM}
        assert _throttled(_sign_in(attacker, "dan@acme.test", "the right one", **made_up))


@pytest.mark.parametrize(
    ("hops", "forwarded", "address"),
    [
        (0, "10.0.0.1, 198.51.100.7", PROXY),
        (1, "10.0.0.1, 198.51.100.7", "198.51.100.7"),
        (2, "10.0.0.1,198.51.100.7, 192.0.2.9", "198.51.100.7"),
        (2, "2001:db8::1, 192.0.2.9", "2001:db8::1"),
        (2, "192.0.2.9", PROXY),  # fewer entries than proxies: it did not come through them
        (1, "", PROXY),
        (1, None, PROXY),
    ],
)
def test_client_address(hops: int, forwarded: str | None, address: str) -> None:
    meta = {"REMOTE_ADDR": PROXY} | ({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {})
    with override_settings(TRUSTED_PROXY_HOPS=hops, TRUSTED_PROXIES=[ip_network("192.0.2.0/24")]):
        assert client_address(RequestFactory().post("/signin/", **meta)) == address


def test_x_forwarded_for_counts_only_from_a_trusted_proxy_and_only_as_an_address() -> None:
    """A request straight to daphne (not from CHAT_TRUSTED_PROXIES) names whatever it
    likes in X-Forwarded-For, and so may a proxy that passes the client's header on: it is
    read only from a proxy, and only an IP address there is taken."""
    with override_settings(TRUSTED_PROXY_HOPS=1, TRUSTED_PROXIES=[ip_network("192.0.2.0/24")]):
        direct = RequestFactory().post("/signin/", REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=VICTIM)
        assert client_address(direct) == ATTACKER
        junk = RequestFactory().post("/signin/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="x y:z")
        assert client_address(junk) == PROXY


def test_an_ipv6_client_is_counted_by_its_64(world: World) -> None:
    """Guesses from addresses of one /64 (one host's, usually) share the address's count."""
    for n in range(sign_in_limits.FAILURES_PER_EMAIL_FROM_ADDRESS):
        sign_in_limits.failed("dan@acme.test", f"2001:db8:1:2::{n + 1:x}")
    assert sign_in_limits.wait_secs("dan@acme.test", "2001:db8:1:2:ffff::9")
    assert not sign_in_limits.wait_secs("dan@acme.test", "2001:db8:1:3::1")


def test_invitation_password_guesses_pause_only_their_address(world: World) -> None:
    """Accepting an invitation with an existing account's password counts as signing in:
    guesses from one address pause it there with the same message, not from the owner's."""
    create_member(world.acme.team, "dan@acme.test", name="Dan", password="the right one")
    url = f"/invite/{invite_token(world.globex.team, 'dan@acme.test')}/"
    attacker = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(10):
        assert b"already has an account" in attacker.post(url, {"name": "Dan", "password": "a guess"}).content
    refused = attacker.post(url, {"name": "Dan", "password": "the right one"})
    assert _throttled(refused)
    assert (
        Client(REMOTE_ADDR=VICTIM).post(url, {"name": "Dan", "password": "the right one"}).status_code == 302
    )

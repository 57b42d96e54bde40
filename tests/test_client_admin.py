"""Owner/admin pages: inviting people by link, and who may open them."""

import re
from pathlib import Path

import pytest
from django.core import mail
from django.test import Client

from jobs.slack_export.exporter import run_export, start_export
from jobs.slack_export.progress import job_json
from teams.actions import set_member_active
from teams.models import Account, TeamMembership
from tests.browser import TIMEOUT_MS, screenshot, session_cookie
from tests.conftest import World, member_pk

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
    assert b"Team admin" in _signed_in("alice@acme.test", world.acme.team.id).get("/", follow=True).content
    assert b"Team admin" not in _signed_in("bob@acme.test", world.acme.team.id).get("/", follow=True).content


def test_the_admin_page_is_for_the_team_its_tab_names(world: World) -> None:
    """Alice owns Acme and is a plain member of Globex, opened last: the Acme tab's link
    still opens Acme's admin page, and the session's own team (Globex) is refused."""
    from teams.actions import create_member

    create_member(world.globex.team, "alice@acme.test", name="Alice")
    client = _signed_in("alice@acme.test", world.globex.team.id)
    acme_tab = client.get(f"/client/{world.acme.team.slack_id}/").content.decode()
    link = f"/team-admin/?team={world.acme.team.slack_id}"
    assert f'href="{link}"' in acme_tab
    client.get(f"/client/{world.globex.team.slack_id}/")  # the team opened last
    page = client.get(link)
    assert page.status_code == 200 and b"Acme" in page.content
    assert client.get("/team-admin/").status_code == 403
    assert client.get(f"/team-admin/?team={world.globex.team.slack_id}").status_code == 403
    assert client.get("/team-admin/?team=nonsense").status_code == 403


def test_the_export_download_is_for_the_team_its_link_names(world: World, tmp_path: Path) -> None:
    """Alice owns Acme and is a plain member of Globex, opened last: the download link of
    Acme's export (from Acme's admin page) names Acme and works; the same export through
    a team she does not administer, or one she is not in, is refused."""
    from teams.actions import create_member, create_team

    create_member(world.globex.team, "alice@acme.test", name="Alice")
    acme = world.acme.team
    job = run_export(start_export(acme, output=tmp_path / "acme.zip").id)
    link = job_json(job)["download_url"]
    path = link.split("?")[0]
    assert link == f"{path}?team={acme.slack_id}"
    client = _signed_in("alice@acme.test", world.globex.team.id)
    response = client.get(link)
    assert (
        response.status_code == 200
        and b"".join(response.streaming_content) == (tmp_path / "acme.zip").read_bytes()
    )
    assert client.get(path).status_code == 403  # the session's team, Globex: not hers to administer
    assert client.get(f"{path}?team={world.globex.team.slack_id}").status_code == 403
    other = create_team("initech", "Initech", "peter@initech.test", shard="shard_1").team
    assert client.get(f"{path}?team={other.slack_id}").json()["error"] == "not_authed"  # not hers at all
    assert client.get(f"{path}?team=nonsense").status_code == 403
    assert _signed_in("bob@acme.test", acme.id).get(link).json()["error"] == "not_an_admin"
    assert (
        _signed_in("dave@globex.test", world.globex.team.id)
        .get(f"{path}?team={world.globex.team.slack_id}")
        .status_code
        == 404
    )


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


def _emailed_link(email: str) -> str:
    sent = [m for m in mail.outbox if m.to == [email]]
    assert len(sent) == 1 and "acme" in sent[0].subject.lower(), [m.subject for m in mail.outbox]
    found = re.search(r"(http://testserver\S+)", sent[0].body)
    assert found, sent[0].body
    return found.group(1).replace("http://testserver", "")


def test_an_account_nobody_signed_in_to_is_claimed_only_through_the_emailed_link(world: World) -> None:
    """An import makes accounts for its archive's emails that nobody has signed in to.
    Claiming one sets its password, so an admin (of any team) must never hold a link that
    can: the admin page emails the link and shows none, and a link it showed for an
    address before such an account existed cannot claim it afterwards."""
    admin = _signed_in("alice@acme.test", world.acme.team.id)
    shown_before = _invite_link(admin, "carol@elsewhere.test")
    Account.objects.create_user("carol@elsewhere.test", None)  # what an import makes
    mail.outbox.clear()

    page = admin.post("/team-admin/", {"email": "carol@elsewhere.test"}).content.decode()
    assert "Invitation emailed to" in page and 'id="invite-link"' not in page
    emailed = _emailed_link("carol@elsewhere.test")

    admins_try = Client().post(shown_before, {"name": "Mallory", "password": "attacker-pw"})
    assert b"emailed to it" in admins_try.content
    assert not Account.objects.get(email="carol@elsewhere.test").has_usable_password()

    claimed = Client().post(emailed, {"name": "Carol", "password": "carol's own pw"})
    assert claimed.status_code == 302 and claimed["Location"] == "/"
    assert Account.objects.get(email="carol@elsewhere.test").check_password("carol's own pw")
    assert TeamMembership.objects.filter(account__email="carol@elsewhere.test", team_id=world.acme.team.id)


def test_every_invitation_is_emailed_and_a_new_address_also_gets_a_link_to_copy(world: World) -> None:
    shown = _invite_link(_signed_in("alice@acme.test", world.acme.team.id), "erin@acme.test")
    emailed = _emailed_link("erin@acme.test")
    assert shown.startswith("/invite/") and emailed.startswith("/invite/")
    joined = Client().post(shown, {"name": "Erin", "password": "long enough secret"})
    assert joined.status_code == 302
    assert TeamMembership.objects.filter(account__email="erin@acme.test", team_id=world.acme.team.id)


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


def test_a_password_reaches_an_existing_account_only_as_the_invitation_may_set_it(world: World) -> None:
    """Decided where the password is written, on the locked account: accept_invite's
    earlier look can be overtaken (an import makes the account, or its owner claims it,
    while the form is being submitted)."""
    from teams.actions import create_member
    from teams.directory import team_entry
    from teams.errors import ApiError

    globex = team_entry(world.globex.team.id)
    Account.objects.create_user("made@import.test", None)  # what an import makes
    with pytest.raises(ApiError, match="emailed to it"):
        create_member(globex, "made@import.test", password="admin's pick", claim=False)
    assert not Account.objects.get(email="made@import.test").has_usable_password()
    with pytest.raises(ApiError, match="use its password"):
        create_member(globex, "alice@acme.test", password="overwrite", claim=True)
    assert Account.objects.get(email="alice@acme.test").check_password("pw")
    member, _ = create_member(globex, "made@import.test", password="owner's own", claim=True)
    assert Account.objects.get(email="made@import.test").check_password("owner's own")
    assert TeamMembership.objects.filter(account__email="made@import.test", member_id=member.id).exists()


def _mail_server_away(settings) -> None:
    """Mail goes by SMTP to a port nothing listens on."""
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", port, False


def test_an_invitation_the_mail_server_refuses_says_so_on_the_page(world: World, settings) -> None:
    """A mail server that is away: the admin reads that the invitation was not sent."""
    _mail_server_away(settings)
    page = _signed_in("alice@acme.test", world.acme.team.id).post("/team-admin/", {"email": "erin@acme.test"})
    assert page.status_code == 200
    assert b"could not be emailed" in page.content and b'id="invite-link"' not in page.content


def test_an_invitation_that_was_not_sent_does_not_count_against_the_hour(
    world: World, settings, monkeypatch
) -> None:
    from teams import invites

    monkeypatch.setattr(invites, "INVITES_PER_HOUR", 1)
    admin = _signed_in("alice@acme.test", world.acme.team.id)
    backend = settings.EMAIL_BACKEND
    _mail_server_away(settings)
    for _ in range(3):
        assert b"could not be emailed" in admin.post("/team-admin/", {"email": "erin@acme.test"}).content
    settings.EMAIL_BACKEND = backend
    assert b"Invitation emailed" in admin.post("/team-admin/", {"email": "erin@acme.test"}).content
    assert b"too many invitations this hour" in admin.post("/team-admin/", {"email": "p@acme.test"}).content
    assert [m.to for m in mail.outbox] == [["erin@acme.test"]]


def test_a_team_sends_a_bounded_number_of_invitations_an_hour(world: World, monkeypatch) -> None:
    from teams import invites

    monkeypatch.setattr(invites, "INVITES_PER_HOUR", 2)
    admin = _signed_in("alice@acme.test", world.acme.team.id)
    for n in range(2):
        assert b"Invitation emailed" in admin.post("/team-admin/", {"email": f"p{n}@acme.test"}).content
    refused = admin.post("/team-admin/", {"email": "p3@acme.test"}).content
    assert b"too many invitations this hour" in refused
    assert [m.to for m in mail.outbox] == [["p0@acme.test"], ["p1@acme.test"]]


def test_inviting_someone_already_in_the_team_says_so_and_sends_nothing(world: World) -> None:
    admin = _signed_in("alice@acme.test", world.acme.team.id)
    page = admin.post("/team-admin/", {"email": "Bob@acme.test"}).content
    assert b"bob@acme.test is already a member of this team" in page
    assert b'id="invite-link"' not in page and mail.outbox == []
    # A deactivated member's link would be refused (create_member): reactivate instead.
    set_member_active(world.acme.team, member_pk(world.acme["carol"].user_id), False)
    page = admin.post("/team-admin/", {"email": "carol@acme.test"}).content
    assert b"carol@acme.test is deactivated in this team" in page and mail.outbox == []
    # Someone of another team is not in this one: invited as anyone else.
    assert b"Invitation emailed" in admin.post("/team-admin/", {"email": "dave@globex.test"}).content
    assert [m.to for m in mail.outbox] == [["dave@globex.test"]]

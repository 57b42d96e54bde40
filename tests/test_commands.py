"""The management commands scripts rely on: create_team and create_member."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

pytestmark = pytest.mark.django_db(databases="__all__")


def _run(*args: str) -> dict:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue())


def test_create_team_and_member_print_json_with_working_tokens(settings) -> None:
    team = _run(
        "create_team",
        "--domain",
        "umbrella",
        "--name",
        "Umbrella",
        "--owner-email",
        "al@umb.test",
        "--password",
        "pw",
        "--shard",
        "shard_1",
        "--json",
    )
    assert set(team) == {"team_id", "domain", "shard", "owner", "bot"}
    assert team["shard"] == "shard_1" and team["team_id"].startswith("T")
    assert team["owner"]["token"].startswith("xoxp-") and team["bot"]["token"].startswith("xoxb-")
    assert team["bot"]["bot_id"].startswith("B") and team["bot"]["user_id"].startswith("U")
    member = _run(
        "create_member",
        "--team",
        "umbrella",
        "--email",
        "jill@umb.test",
        "--name",
        "Jill",
        "--admin",
        "--json",
    )
    assert set(member) == {"user_id", "token"}
    client = Client()
    me = client.post("/api/auth.test", HTTP_AUTHORIZATION=f"Bearer {member['token']}").json()
    assert me["user_id"] == member["user_id"] and me["team_id"] == team["team_id"]
    info = client.post(
        "/api/users.info", {"user": member["user_id"]}, HTTP_AUTHORIZATION=f"Bearer {team['bot']['token']}"
    ).json()
    assert info["user"]["is_admin"] and info["user"]["name"] == "jill"
    assert client.login(username="al@umb.test", password="pw")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["create_team", "--domain", "Bad Domain", "--name", "X", "--owner-email", "a@b.test"],
            "invalid_domain",
        ),
        (["create_team", "--domain", "ok", "--name", "X", "--owner-email", "not-an-email"], "invalid_email"),
        (
            [
                "create_team",
                "--domain",
                "ok",
                "--name",
                "X",
                "--owner-email",
                "a@b.test",
                "--shard",
                "shard_7",
            ],
            "invalid_shard",
        ),
        (["create_member", "--team", "nosuchteam", "--email", "a@b.test"], "team_not_found"),
    ],
)
def test_commands_fail_with_a_readable_error(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command(*args, stdout=io.StringIO())


def test_member_cannot_join_twice() -> None:
    _run("create_team", "--domain", "twice", "--name", "Twice", "--owner-email", "o@twice.test", "--json")
    _run("create_member", "--team", "twice", "--email", "m@twice.test", "--json")
    with pytest.raises(CommandError, match="already_in_team"):
        call_command("create_member", "--team", "twice", "--email", "M@twice.test", stdout=io.StringIO())


def test_seed_demo_is_idempotent() -> None:
    for _ in range(2):
        out = io.StringIO()
        call_command("seed_demo", stdout=out)
        assert "alice@example.com" in out.getvalue()
    client = Client()
    assert client.login(username="bob@example.com", password="demo-password")

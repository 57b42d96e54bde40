"""The Web API's envelope: parsing, authentication, errors, pagination, rate limits."""

import json

import pytest

from chatproject.dbrouter import on_shard
from messaging.models import Event
from teams.tokens import revoke_tokens
from tests.conftest import member_pk

pytestmark = pytest.mark.django_db(databases="__all__")


def test_api_test_echoes_arguments_and_errors(api) -> None:
    assert api("api.test", foo="bar") == {"ok": True, "args": {"foo": "bar"}}
    assert api("api.test", error="my_error") == {"ok": False, "error": "my_error"}


def test_auth_test_for_user_and_bot(world, api) -> None:
    alice = api("auth.test", world.acme["alice"].token)
    assert alice["ok"] and alice["user_id"] == world.acme["alice"].user_id
    assert alice["team_id"] == world.acme.team.slack_id and alice["team"] == "Acme"
    assert alice["user"] == "alice" and alice["url"].startswith("http://")
    assert "bot_id" not in alice
    bot = api("auth.test", world.acme.bot.token)
    assert bot["bot_id"].startswith("B") and bot["user_id"] == world.acme.bot.user_id


def test_token_in_form_body_or_query_string(world, client) -> None:
    token = world.acme["bob"].token
    by_form = client.post("/api/auth.test", {"token": token}).json()
    by_query = client.get(f"/api/auth.test?token={token}").json()
    assert by_form["user_id"] == by_query["user_id"] == world.acme["bob"].user_id


def test_form_and_query_arguments(world, client) -> None:
    token = world.acme["alice"].token
    general = world.acme.channels["general"]
    posted = client.post(
        "/api/chat.postMessage", {"channel": general, "text": "form"}, HTTP_AUTHORIZATION=f"Bearer {token}"
    ).json()
    assert posted["ok"] and posted["message"]["text"] == "form"
    history = client.get(
        f"/api/conversations.history?channel={general}&limit=1", HTTP_AUTHORIZATION=f"Bearer {token}"
    ).json()
    assert history["messages"][0]["ts"] == posted["ts"]


@pytest.mark.parametrize(
    ("token", "error"),
    [
        (None, "not_authed"),
        ("xoxp-1-2-nope", "invalid_auth"),
        ("garbage", "invalid_auth"),
        ("", "not_authed"),
    ],
)
def test_bad_tokens(world, api, token, error) -> None:
    assert api("auth.test", token) == {"ok": False, "error": error}


def test_token_naming_another_team_is_refused(world, api) -> None:
    # Swap the team part of a valid token: the hash no longer matches anything.
    parts = world.acme["alice"].token.split("-")
    parts[1] = str(world.globex.team.id)
    assert api("auth.test", "-".join(parts))["error"] == "invalid_auth"


def test_revoked_token(world, api) -> None:
    token = world.acme["carol"].token
    assert api("auth.test", token)["ok"]
    revoke_tokens(world.acme.team.id, member_pk(world.acme["carol"].user_id))
    assert api("auth.test", token) == {"ok": False, "error": "token_revoked"}


def test_auth_revoke(world, api) -> None:
    token = world.acme["bob"].token
    assert api("auth.revoke", token, test=True) == {"ok": True, "revoked": False}
    assert api("auth.revoke", token) == {"ok": True, "revoked": True}
    assert api("auth.test", token)["error"] == "token_revoked"


def test_unknown_method(api, world) -> None:
    response = api.raw("chat.explode", world.acme["alice"].token)
    assert response.status_code == 404 and response.json() == {"ok": False, "error": "unknown_method"}


def test_malformed_bodies_change_nothing(world, client) -> None:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {world.acme['alice'].token}"}
    before = _event_count(world)
    bad_json = client.post(
        "/api/chat.postMessage", data="{not json", content_type="application/json", **headers
    )
    assert bad_json.json() == {"ok": False, "error": "invalid_json"}
    not_object = client.post(
        "/api/chat.postMessage", data="[1, 2]", content_type="application/json", **headers
    )
    assert not_object.json() == {"ok": False, "error": "json_not_object"}
    wrong_type = client.post(
        "/api/chat.postMessage", data="channel=C1&text=x", content_type="text/csv", **headers
    )
    assert wrong_type.json() == {"ok": False, "error": "invalid_post_type"}
    assert _event_count(world) == before


def _event_count(world) -> int:
    with on_shard(world.acme.team.shard):
        return Event.objects.filter(team_id=world.acme.team.id).count()


def test_wrong_argument_types(world, api) -> None:
    token = world.acme["alice"].token
    general = world.acme.channels["general"]
    assert api("chat.postMessage", token, channel=["C1"], text="x")["error"] == "channel_not_found"
    assert api("chat.postMessage", token, channel=general, text={"a": 1})["error"] == "invalid_arguments"
    assert api("chat.postMessage", token, channel=general, text="x", attachments="{oops")["error"] == (
        "invalid_attachments"
    )
    assert api("conversations.history", token, channel=general, limit="many")["error"] == "invalid_arguments"


def test_users_list_pages_with_cursor(world, api) -> None:
    token = world.acme["alice"].token
    seen, cursor, pages = [], "", 0
    while True:
        page = api("users.list", token, limit=2, cursor=cursor)
        assert page["ok"], page
        seen += [m["id"] for m in page["members"]]
        pages += 1
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert pages == 2 and len(seen) == len(set(seen)) == 4
    assert api("users.list", token, cursor="!!!")["error"] == "invalid_cursor"


def test_users_info_profile_and_lookup(world, api) -> None:
    token = world.acme["alice"].token
    bob = world.acme["bob"]
    info = api("users.info", token, user=bob.user_id)["user"]
    assert info["name"] == "bob" and info["profile"]["email"] == "bob@acme.test" and not info["is_bot"]
    assert api("users.profile.get", token, user=bob.user_id)["profile"]["real_name"] == "Bob"
    assert api("users.profile.get", token)["profile"]["email"] == "alice@acme.test"
    assert api("users.lookupByEmail", token, email="BOB@acme.test")["user"]["id"] == bob.user_id
    assert api("users.lookupByEmail", token, email="nobody@acme.test")["error"] == "users_not_found"
    assert api("users.info", token)["error"] == "user_not_found"
    assert api("users.info", token, user="U123")["error"] == "user_not_found"


def test_team_info(world, api) -> None:
    team = api("team.info", world.acme["bob"].token)["team"]
    assert team == {**team, "id": world.acme.team.slack_id, "domain": "acme", "name": "Acme"}


def test_rate_limit_gives_429_with_retry_after(world, api, settings) -> None:
    from messaging.api import registry

    token = world.acme["carol"].token
    original = registry.TIER_LIMITS[4]
    registry.TIER_LIMITS[4] = 3
    try:
        answers = [api.raw("auth.test", token) for _ in range(4)]
    finally:
        registry.TIER_LIMITS[4] = original
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[-1].json() == {"ok": False, "error": "ratelimited"}
    assert 1 <= int(answers[-1]["Retry-After"]) <= 61
    # Another member's budget is their own.
    assert api("auth.test", world.acme["bob"].token)["ok"]


def test_openapi_document_lists_every_method(client) -> None:
    from messaging.api.registry import REGISTRY

    document = client.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {f"/api/{name}" for name in REGISTRY}
    post = document["paths"]["/api/chat.postMessage"]["post"]
    schema_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["channel"]
    assert {"text", "thread_ts", "client_msg_id", "attachments", "blocks"} <= set(schema["properties"])
    json.dumps(document)

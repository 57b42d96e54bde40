"""Slack's own SDK drives the Web API over real HTTP, with a user token and a bot token."""

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.conftest import World

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture
def clients(world: World, live_server) -> dict[str, WebClient]:
    base_url = f"{live_server.url}/api/"
    return {
        "user": WebClient(token=world.acme["alice"].token, base_url=base_url),
        "bot": WebClient(token=world.acme.bot.token, base_url=base_url),
        "bob": WebClient(token=world.acme["bob"].token, base_url=base_url),
    }


@pytest.mark.parametrize("who", ["user", "bot"])
def test_sdk_round_trip(world: World, clients, who: str) -> None:
    client, bob = clients[who], clients["bob"]
    me = client.auth_test()
    assert me["team_id"] == world.acme.team.slack_id
    if who == "bot":
        assert me["bot_id"].startswith("B") and me["user_id"] == world.acme.bot.user_id
    else:
        assert me["user_id"] == world.acme["alice"].user_id and "bot_id" not in me.data

    created = client.conversations_create(name=f"sdk-{who}")["channel"]
    client.conversations_invite(channel=created["id"], users=[world.acme["bob"].user_id])
    listed = [c["id"] for c in client.conversations_list(types="public_channel")["channels"]]
    assert created["id"] in listed

    posted = client.chat_postMessage(channel=created["id"], text="hello from the SDK")
    assert posted["message"]["text"] == "hello from the SDK"
    reply = bob.chat_postMessage(channel=created["id"], text="a reply", thread_ts=posted["ts"])
    client.chat_update(channel=created["id"], ts=posted["ts"], text="edited by the SDK")
    client.reactions_add(channel=created["id"], timestamp=reply["ts"], name="tada")
    bob.reactions_add(channel=created["id"], timestamp=posted["ts"], name="eyes")
    bob.reactions_remove(channel=created["id"], timestamp=posted["ts"], name="eyes")

    history = client.conversations_history(channel=created["id"])["messages"]
    assert [m["text"] for m in history[:1]] == ["edited by the SDK"]
    assert history[0]["reply_count"] == 1 and "reactions" not in history[0]
    # Then, older, who came: bob, added by the creator, and the creator.
    bob_id = world.acme["bob"].user_id
    joins = [(m["subtype"], m["user"], m.get("inviter")) for m in history[1:]]
    assert joins == [("channel_join", bob_id, me["user_id"]), ("channel_join", me["user_id"], None)]
    thread = client.conversations_replies(channel=created["id"], ts=posted["ts"])["messages"]
    assert [m["text"] for m in thread] == ["edited by the SDK", "a reply"]
    assert thread[1]["reactions"] == [{"name": "tada", "users": [me["user_id"]], "count": 1}]

    bob.chat_delete(channel=created["id"], ts=reply["ts"])
    client.chat_delete(channel=created["id"], ts=posted["ts"])
    assert client.conversations_history(channel=created["id"])["messages"] == history[1:]


def test_sdk_sees_slack_errors(world: World, clients) -> None:
    with pytest.raises(SlackApiError) as error:
        clients["user"].chat_postMessage(channel="C0", text="nowhere")
    assert error.value.response["error"] == "channel_not_found"
    general = world.acme.channels["general"]
    posted = clients["user"].chat_postMessage(channel=general, text="mine")
    with pytest.raises(SlackApiError) as error:
        clients["bob"].chat_update(channel=general, ts=posted["ts"], text="hijack")
    assert error.value.response["error"] == "cant_update_message"


def test_sdk_paginates_with_cursors(world: World, clients) -> None:
    client = clients["user"]
    general = world.acme.channels["random"]  # no one has said anything there yet
    for n in range(5):
        client.chat_postMessage(channel=general, text=f"page {n}")
    texts = []
    for page in client.conversations_history(channel=general, limit=2):
        texts += [m["text"] for m in page["messages"]]
    assert texts == [f"page {n}" for n in reversed(range(5))]

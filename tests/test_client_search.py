"""Search in the client: results from search.messages (indexed by a real Celery worker),
and a click that jumps to the message, loading older pages until it is there."""

import time

import pytest

from chatproject.dbrouter import on_shard
from messaging.actions.posting import post_message
from messaging.search.index import reindex_team
from teams.auth import caller_from_token
from teams.models import Member
from tests.browser import open_client, screenshot
from tests.conftest import World, member_pk
from tests.rtm_client import web
from tests.servers import running_worker

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]


def test_search_results_jump_to_an_old_message(world: World, chromium, web_server) -> None:
    random = world.acme.channels["random"]
    alice_api = web(web_server, world.acme["alice"].token)
    alice_api.conversations_join(channel=random)
    with running_worker("search", concurrency=1):
        alice_api.chat_postMessage(channel=random, text="the zebra crossing is *painted*")
        alice = caller_from_token(world.acme["alice"].token)
        with on_shard(world.acme.team.shard):
            for n in range(80):  # the hit is more than a page back
                post_message(alice, random, text=f"later chatter {n}")
        deadline = time.monotonic() + 30
        while not alice_api.search_messages(query="zebra")["messages"]["matches"]:
            assert time.monotonic() < deadline, "the worker did not index the message"
            time.sleep(0.3)

    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    page.fill("#search-input", "zebra")
    page.press("#search-input", "Enter")
    result = page.locator("#side-panel .search-result").first
    result.wait_for()
    assert "#random" in result.locator(".where").inner_text()
    assert result.locator(".text strong").inner_text() == "painted"
    screenshot(page, "search")
    result.click()
    page.wait_for_selector("#channel-title:text-is('#random')")
    hit = page.locator("#messages .msg.highlight", has_text="zebra crossing")
    hit.wait_for()
    assert hit.is_visible()
    page.context.close()


def test_search_results_name_people_as_the_client_does(world: World, chromium, web_server) -> None:
    """search.messages gives a person's handle (`username`, as Slack's does); the results
    show their display name, as their messages do, and a bot message's own username."""
    general, acme = world.acme.channels["general"], world.acme
    with on_shard(acme.team.shard):
        Member.objects.filter(id=member_pk(acme["bob"].user_id)).update(display_name="Bobby Tables")
    web(web_server, acme["bob"].token).chat_postMessage(channel=general, text="the quokka smiles")
    bot = web(web_server, acme.bot.token)
    bot.conversations_join(channel=general)
    bot.chat_postMessage(channel=general, text="quokka alert", username="zoobot")
    reindex_team(acme.team.shard, acme.team.id)

    page = open_client(chromium, web_server, "alice@acme.test", acme.team.id)
    page.fill("#search-input", "quokka")
    page.press("#search-input", "Enter")
    results = page.locator("#side-panel .search-result")
    results.nth(1).wait_for()
    by_bob = results.filter(has_text="quokka smiles").locator(".where").inner_text()
    assert " · Bobby Tables · " in by_bob and "bob" not in by_bob
    assert " · zoobot · " in results.filter(has_text="quokka alert").locator(".where").inner_text()
    page.context.close()

"""Messages as the client shows them: Slack's <url|label> links whether posted through the
API or typed, and bots' messages that carry only blocks or attachments."""

import pytest

from tests.browser import open_client, screenshot
from tests.conftest import World
from tests.rtm_client import web

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]


def _message(page, text: str):
    return page.locator("#messages .msg:not(.pending)", has_text=text).last


def test_labelled_links_posted_and_typed(world: World, chromium, web_server) -> None:
    general = world.acme.channels["general"]
    bob_api = web(web_server, world.acme["bob"].token)
    bob_api.chat_postMessage(channel=general, text="api: <https://example.com|the label> end")
    bob_api.chat_postMessage(channel=general, text="bad: <javascript:alert(1)|x> <data:text/html,x|y>")
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)

    posted = _message(page, "api:")
    posted.wait_for()
    link = posted.locator(".text a")
    assert link.count() == 1 and link.get_attribute("href") == "https://example.com"
    assert link.inner_text() == "the label"
    assert posted.locator(".text").inner_text() == "api: the label end"

    bad = _message(page, "bad:")
    assert bad.locator("a").count() == 0
    assert bad.locator(".text").inner_text() == "bad: <javascript:alert(1)|x> <data:text/html,x|y>"

    # Typed, the markup is text (Slack escapes what people type): only the URL is a link.
    typed = "typed: <https://example.com|the label> and <https://example.com/a>"
    page.fill("#composer textarea", typed)
    page.press("#composer textarea", "Enter")
    sent = _message(page, "typed:")
    sent.wait_for()
    assert sent.locator(".text").inner_text() == typed
    hrefs = [a.get_attribute("href") for a in sent.locator(".text a").all()]
    assert hrefs == ["https://example.com", "https://example.com/a"]
    assert sent.locator(".text a").all_inner_texts() == ["https://example.com", "https://example.com/a"]
    screenshot(page, "labelled-links")
    page.context.close()

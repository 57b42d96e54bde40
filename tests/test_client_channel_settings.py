"""Changing a channel from the client, as in Slack, and what an archived channel's panels
no longer offer."""

import pytest

from tests.browser import open_client, screenshot
from tests.conftest import World
from tests.rtm_client import web

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]


def test_an_archived_channel_offers_no_unpin(world: World, chromium, web_server) -> None:
    alice_api = web(web_server, world.acme["alice"].token)
    old = alice_api.conversations_create(name="old-project")["channel"]["id"]
    ts = alice_api.chat_postMessage(channel=old, text="what we decided")["ts"]
    alice_api.pins_add(channel=old, timestamp=ts)
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id, at=f"#/{old}")
    page.wait_for_selector("#channel-title:text-is('#old-project')")
    page.click("#btn-pins")
    pinned = page.locator("#side-panel .msg", has_text="what we decided")
    pinned.hover()
    pinned.locator("[data-action=unpin]").wait_for()  # offered while it is not archived

    # Archived while the pins are open: they can be read, not unpinned (nor reacted to).
    alice_api.conversations_archive(channel=old)
    page.wait_for_selector("#archived-note:visible")
    pinned.hover()
    assert pinned.is_visible()
    assert pinned.locator("[data-action=unpin]").is_hidden()
    assert pinned.locator("[data-action=react]").is_hidden()
    assert page.get_by_role("button", name="Unpin").count() == 0  # hidden from the keyboard too
    screenshot(page, "archived-pins")

    # Opened again, the same.
    page.click("#panel-close")
    page.click("#btn-pins")
    pinned.hover()
    assert pinned.locator("[data-action=unpin]").is_hidden()

    # Unarchived, Unpin is back.
    alice_api.conversations_unarchive(channel=old)
    page.wait_for_selector("#composer:visible")
    page.click("#btn-pins")
    pinned.hover()
    pinned.locator("[data-action=unpin]").wait_for()
    page.context.close()

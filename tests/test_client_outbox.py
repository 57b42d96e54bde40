"""Never lose or double a message: the outbox across offline, reload and lost answers;
the socket's reconnect with catch-up, and a resync that keeps the outbox."""

import pytest
from django_redis import get_redis_connection

from messaging.events import prune_event_log
from tests.browser import open_client, screenshot
from tests.conftest import World
from tests.rtm_client import web

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]


def _send(page, text: str) -> None:
    page.fill("#composer textarea", text)
    page.press("#composer textarea", "Enter")


def _history_texts(server, token: str, channel: str) -> list[str]:
    return [
        m["text"] for m in web(server, token).conversations_history(channel=channel, limit=100)["messages"]
    ]


def _settled(page, texts: list[str]) -> None:
    """Each text shown once, none pending."""
    page.wait_for_function(
        """texts => !document.querySelector('#messages .msg.pending') && texts.every(t =>
            [...document.querySelectorAll('#messages .msg .text')]
                .filter(n => n.textContent === t).length === 1)""",
        arg=texts,
    )
    page.wait_for_timeout(500)  # a double would show up by now
    for text in texts:
        assert page.locator("#messages .msg .text", has_text=text).count() == 1, text


def test_offline_sends_survive_a_reload_and_arrive_exactly_once(world: World, chromium, web_server) -> None:
    general = world.acme.channels["general"]
    alice = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id)
    texts = [f"sent offline {n}" for n in range(3)]

    alice.context.set_offline(True)
    alice.wait_for_selector("#banner:not([hidden])")
    for text in texts:
        _send(alice, text)
    assert alice.locator("#messages .msg.pending").count() == 3
    assert alice.locator("#messages .msg.pending .pending-label").first.inner_text() == "Sending…"
    screenshot(alice, "offline-pending")

    # Back online, but the first post's answer is lost after the server stored it, and the
    # others fail: they stay pending across a reload. The first stays pending too, unless
    # the socket (back through its reconnect_url) already echoed it as stored.
    lost = {"first": True}

    def lose_answers(route) -> None:
        if lost["first"]:
            lost["first"] = False
            route.fetch()  # reaches the server, which stores the message
        route.abort()

    alice.context.route("**/api/chat.postMessage", lose_answers)
    alice.context.set_offline(False)
    alice.reload()
    alice.wait_for_selector("#client[data-state=live]")
    alice.wait_for_function("() => document.querySelectorAll('#messages .msg.pending').length >= 2")
    pending = alice.locator("#messages .msg.pending .text").all_inner_texts()
    assert pending in (texts, texts[1:]), pending
    assert not lost["first"]
    assert _history_texts(web_server, world.acme["alice"].token, general).count(texts[0]) == 1

    # The network heals: each is sent again, and each appears exactly once everywhere.
    alice.context.unroute("**/api/chat.postMessage")
    alice.context.set_offline(True)
    alice.context.set_offline(False)
    _settled(alice, texts)
    _settled(bob, texts)
    stored = _history_texts(web_server, world.acme["alice"].token, general)
    assert [stored.count(t) for t in texts] == [1, 1, 1]
    assert alice.evaluate(
        "Object.keys(localStorage).filter(k => k.startsWith('outbox:'))"
        ".map(k => JSON.parse(localStorage[k]).length)"
    ) == [0]
    alice.context.close()
    bob.context.close()


def test_reconnect_catches_up_and_resync_keeps_the_outbox(world: World, chromium, web_server) -> None:
    general = world.acme.channels["general"]
    alice_api = web(web_server, world.acme["alice"].token)
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id)

    # Offline: the banner says so; a message posted meanwhile arrives on reconnect, which
    # goes through the reconnect_url the server sent, not through rtm.connect.
    connects = []
    bob.on("request", lambda r: "/api/rtm.connect" in r.url and connects.append(r.url))
    # reconnect_url came in hello's own write, so its message event is next in the page's
    # queue; this only has to outlast that one task.
    bob.wait_for_timeout(300)
    bob.context.set_offline(True)
    bob.wait_for_selector("#client[data-state=reconnecting]")
    assert bob.locator("#banner").is_visible()
    screenshot(bob, "reconnecting")
    alice_api.chat_postMessage(channel=general, text="while you were away")
    bob.context.set_offline(False)
    bob.wait_for_selector("#client[data-state=live]")
    _settled(bob, ["while you were away"])
    assert not bob.locator("#banner").is_visible()
    assert connects == []

    # A reconnect_url the server refuses (here its ticket is gone) falls back to rtm.connect.
    redis = get_redis_connection("default")
    for key in redis.scan_iter("*rtm:reconnect:*"):
        redis.delete(key)
    bob.context.set_offline(True)
    bob.wait_for_selector("#client[data-state=reconnecting]")
    alice_api.chat_postMessage(channel=general, text="after a refused reconnect_url")
    bob.context.set_offline(False)
    bob.wait_for_selector("#client[data-state=live]")
    _settled(bob, ["after a refused reconnect_url"])
    assert connects, "the refused reconnect_url fell back to rtm.connect"

    # The log is pruned past bob's cursor while he is away: the socket answers
    # resync_required, the client boots again, and what he queued still goes out once.
    bob.context.set_offline(True)
    bob.wait_for_selector("#client[data-state=reconnecting]")
    _send(bob, "queued before the resync")
    alice_api.chat_postMessage(channel=general, text="pruned from the log")
    prune_event_log(world.acme.team.shard, 0)
    alice_api.chat_postMessage(channel=general, text="after the prune")
    booted = []
    bob.on("request", lambda r: r.url.endswith("/api/rtm.start") and booted.append(r.url))
    bob.context.set_offline(False)
    bob.wait_for_selector("#client[data-state=live]")
    _settled(bob, ["pruned from the log", "after the prune", "queued before the resync"])
    assert booted, "the client booted again after resync_required"
    stored = _history_texts(web_server, world.acme["bob"].token, general)
    assert stored.count("queued before the resync") == 1
    bob.context.close()

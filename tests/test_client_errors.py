"""What the client says when something fails: a sentence in words (static/client/errors.js)
with the error's code kept after it for support, in dialogs, the banner and failed sends."""

import json

import pytest

from tests.browser import open_client
from tests.conftest import World
from tests.rtm_client import web

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]


def _said(page, where: str, text: str, code: str) -> None:
    """`where` shows the sentence, with the code in small type and as its tooltip."""
    message = page.locator(f"{where} .error-message", has_text=text)
    message.wait_for()
    assert message.locator(".error-code").inner_text() == f"({code})"
    assert message.get_attribute("title") == f"Error code: {code}"


def test_refusals_are_said_in_words(world: World, chromium, web_server) -> None:
    alice_api = web(web_server, world.acme["alice"].token)
    plans = alice_api.conversations_create(name="plans")["channel"]["id"]
    plan_ts = alice_api.chat_postMessage(channel=plans, text="the plan")["ts"]
    alice = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)

    # A dialog: the name is taken.
    alice.click("#new-channel")
    alice.fill("#dialog input[name=name]", "random")
    alice.click("#dialog button.primary")
    _said(alice, "#dialog [role=alert]", "That name is already taken by another channel.", "name_taken")
    alice.click("#dialog button.secondary")

    # The banner: a reaction to a message deleted (elsewhere) while the reaction is on its way.
    alice.click(f"#sidebar a[data-id={plans}]")
    alice.wait_for_selector("#channel-title:text-is('#plans')")

    def delete_first(route) -> None:
        alice_api.chat_delete(channel=plans, ts=plan_ts)
        route.continue_()

    alice.route("**/api/reactions.add", delete_first)
    row = alice.locator("#messages .msg:not(.pending)", has_text="the plan")
    row.hover()
    row.locator("[data-action=react]").click()
    alice.fill("#emoji-picker input", "smile")
    alice.click("#emoji-picker [data-name=smile]")
    _said(alice, "#banner.error", "That message was not found", "message_not_found")

    # A send: the channel is archived (elsewhere) while the message is on its way.

    def archive_first(route) -> None:
        alice_api.conversations_archive(channel=plans)
        route.continue_()

    alice.route("**/api/chat.postMessage", archive_first)
    alice.fill("#composer textarea", "one more thing")
    alice.press("#composer textarea", "Enter")
    failed = "#messages .msg.pending.failed .pending-label"
    _said(alice, failed, "This channel is archived: nothing can be changed or posted in it.", "is_archived")
    assert alice.locator(failed).inner_text().startswith("Not sent: This channel is archived")
    # The archive reaches the client too: the channel turns read-only (no composer to fail).
    alice.wait_for_selector("#archived-note:visible")
    alice.context.close()


def test_rate_limits_outages_and_unknown_codes(world: World, chromium, web_server) -> None:
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    page.wait_for_selector("#channel-title:text-is('#general')")
    page.click("#btn-topic")
    page.fill("#dialog input[name=topic]", "a new topic")
    answers = []
    page.route("**/api/conversations.setTopic", lambda route: answers.pop(0)(route))
    alert = "#dialog [role=alert]"

    def refused(status: int, code: str, headers: dict[str, str] | None = None):
        body = json.dumps({"ok": False, "error": code})
        return lambda route: route.fulfill(
            status=status, headers=headers or {}, content_type="application/json", body=body
        )

    # A rate limit says when to try again, when the server said (Retry-After).
    answers.append(refused(429, "ratelimited", {"Retry-After": "7"}))
    page.click("#dialog button.primary")
    _said(page, alert, "You are doing that too often. Try again in 7 seconds.", "ratelimited")

    answers.append(refused(429, "ratelimited"))
    page.click("#dialog button.primary")
    _said(page, alert, "You are doing that too often. Try again in a moment.", "ratelimited")

    # No answer at all, and a proxy's error page: said plainly.
    answers.append(lambda route: route.abort())
    page.click("#dialog button.primary")
    _said(page, alert, "Could not reach the server. Check your connection and try again.", "network")

    gateway_page = {"status": 502, "content_type": "text/html", "body": "<h1>Bad gateway</h1>"}
    answers.append(lambda route: route.fulfill(**gateway_page))
    page.click("#dialog button.primary")
    server_failed = "Something went wrong on the server. Try again in a moment."
    _said(page, alert, server_failed, "internal_error, HTTP 502")

    # A code the client has no words for: a sentence that names it.
    answers.append(refused(200, "flux_capacitor_jammed"))
    page.click("#dialog button.primary")
    message = page.locator(f"{alert} .error-message", has_text="the server said “flux_capacitor_jammed”")
    message.wait_for()
    assert message.get_attribute("title") == "Error code: flux_capacitor_jammed"
    page.context.close()

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


XSS = '<img src=x onerror="document.body.dataset.owned=1">'
BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "Deploy report"}},
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "build *42* is out: <https://ci.example/42|details>"},
        "fields": [{"type": "mrkdwn", "text": "*Env*\nprod"}, {"type": "plain_text", "text": XSS}],
    },
    {"type": "divider"},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "by the pipeline"}]},
    {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "notes", "style": {"bold": True}},
                    {"type": "text", "text": " "},
                    {"type": "link", "url": "javascript:alert(1)", "text": "not a link"},
                    {"type": "text", "text": " " + XSS},
                ],
            },
            {
                "type": "rich_text_list",
                "style": "bullet",
                "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": "one fix"}]}
                ],
            },
        ],
    },
]


# slack_sdk warns of the empty text: that is what is under test.
@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_bots_blocks_and_attachments_without_text(world: World, chromium, web_server) -> None:
    general = world.acme.channels["general"]
    bot = web(web_server, world.acme.bot.token)
    bot.conversations_join(channel=general)
    bot.chat_postMessage(channel=general, text="", blocks=BLOCKS)
    bot.chat_postMessage(channel=general, text="", attachments=[{"fallback": "Deployed v1 to prod"}])
    bot.chat_postMessage(
        channel=general,
        text="",
        attachments=[{"fallback": "summary only", "pretext": "Nightly", "text": "all *green*"}],
    )
    web(web_server, world.acme["alice"].token).chat_postMessage(channel=general, text="a person's message")
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)

    report = _message(page, "Deploy report")
    report.wait_for()
    assert report.locator(".app-badge").inner_text() == "APP"
    assert report.locator(".block.header").inner_text() == "Deploy report"
    section = report.locator(".block.section .block-text")
    assert section.inner_text() == "build 42 is out: details"
    assert section.locator("strong").inner_text() == "42"
    assert section.locator("a").get_attribute("href") == "https://ci.example/42"
    assert report.locator(".block-fields").inner_text().split("\n") == ["Env", "prod", XSS]
    assert report.locator(".block.context").inner_text() == "by the pipeline"
    assert report.locator("hr.divider").count() == 1
    rich = report.locator(".block.rich-text")
    assert rich.locator(".rich-section").first.inner_text() == f"notes not a link {XSS}"
    assert rich.locator("strong").inner_text() == "notes"
    assert rich.locator("li").inner_text() == "one fix"
    assert report.locator("a").count() == 1  # the javascript: link stays text

    fallback = _message(page, "Deployed v1 to prod")
    assert fallback.locator(".attachment .text").inner_text() == "Deployed v1 to prod"
    nightly = _message(page, "Nightly")
    assert nightly.locator(".attachment .pretext").inner_text() == "Nightly"
    assert nightly.locator(".attachment .text strong").inner_text() == "green"
    assert "summary only" not in nightly.inner_text()  # the fallback of a card that shows more

    assert _message(page, "a person's message").locator(".app-badge").count() == 0
    assert page.locator("#messages img:not(.emoji)").count() == 0
    assert page.evaluate("document.body.dataset.owned") is None
    screenshot(page, "blocks-and-attachments")
    page.context.close()


def test_blocks_show_in_place_of_the_text_until_an_edit(world: World, chromium, web_server) -> None:
    """As in Slack: the text is the blocks' fallback; an edit in the client's text box
    replaces the blocks, as Slack's client sends new ones."""
    general = world.acme.channels["general"]
    rich = [
        {
            "type": "rich_text",
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": "from the blocks"}]}
            ],
        }
    ]
    web(web_server, world.acme["alice"].token).chat_postMessage(
        channel=general, text="from the text", blocks=rich
    )
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    row = _message(page, "from the blocks")
    row.wait_for()
    assert row.locator(".text").inner_text() == "from the blocks"
    assert row.locator(".app-badge").count() == 0
    row.hover()
    row.locator("[data-action=edit]").click()
    page.fill(".edit-form textarea", "edited *text*")
    page.press(".edit-form textarea", "Enter")
    edited = _message(page, "edited text")
    edited.locator(".edited").wait_for()
    assert edited.locator(".text strong").inner_text() == "text"
    assert page.locator("#messages .msg", has_text="from the blocks").count() == 0
    page.context.close()

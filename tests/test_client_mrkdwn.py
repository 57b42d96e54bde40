"""The client's mrkdwn renderer (static/client/render/mrkdwn.js) run in Chromium: known
cases render as Slack does, and generated hostile text only ever becomes text and the
few safe elements the renderer makes."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.browser import open_client
from tests.conftest import World

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]

RENDER_JS = """async (texts) => {
  const { renderMrkdwn } = await import('/static/client/render/mrkdwn.js');
  return texts.map((text) => {
    const box = document.createElement('div');
    box.append(renderMrkdwn(text));
    return {
      html: box.innerHTML,
      text: box.textContent,
      tags: [...box.querySelectorAll('*')].map((n) => n.tagName.toLowerCase()),
      attributes: [...box.querySelectorAll('*')].flatMap((n) => [...n.attributes].map((a) => a.name)),
      links: [...box.querySelectorAll('a')].map((a) => [a.getAttribute('href'), a.rel, a.target]),
    };
  });
}"""
ALLOWED_TAGS = {"strong", "em", "del", "code", "pre", "blockquote", "br", "a", "span"}
ALLOWED_ATTRIBUTES = {"class", "href", "rel", "target", "title"}
TOKENS = [
    *"<>&|@#!*_~`:\n/ ab",
    "http://",
    "https://x.test/p?q=1",
    "javascript:alert(1)",
    "data:text/html,x",
    "<script>",
    "</script>",
    "<img src=x onerror=alert(1)>",
    " onerror=",
    "&lt;",
    "&gt;",
    "&amp;",
    "```",
    "&gt; ",
    "@U123ABC",
    "#C123ABC",
    "!here",
    ":tada:",
    ":+1:",
    '"',
    "'",
]


@pytest.fixture
def page(world: World, chromium, web_server):
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    yield page
    page.context.close()


def _render(page, texts: list[str]) -> list[dict]:
    return page.evaluate(RENDER_JS, texts)


def test_known_cases(page) -> None:
    cases = {
        "*bold* _it_ ~gone~ `x<y`": "<strong>bold</strong> <em>it</em> <del>gone</del> <code>x&lt;y</code>",
        "a*b*c": "a*b*c",  # inside a word: not bold
        "```\nif a &lt; b:\n  go()\n```": '<pre class="code-block"><code>if a &lt; b:\n  go()\n</code></pre>',
        "&gt; quoted\n&gt; more\nplain": "<blockquote>quoted<br>more</blockquote>plain",
        "<https://x.test|the &lt;site&gt;>": (
            '<a href="https://x.test" target="_blank" rel="noopener noreferrer">the &lt;site&gt;</a>'
        ),
        "<javascript:alert(1)|x>": "&lt;javascript:alert(1)|x&gt;",
        # A typed "<https://x.test|label>" as the composer sends it: literal text, the link
        # alone linked (not "https://x.test|label" nor "https://x.test&gt").
        "&lt;https://x.test|the label&gt; &lt;https://x.test/a&gt;": (
            '&lt;<a href="https://x.test" target="_blank" rel="noopener noreferrer">https://x.test</a>'
            '|the label&gt; &lt;<a href="https://x.test/a" target="_blank" rel="noopener noreferrer">'
            "https://x.test/a</a>&gt;"
        ),
        "<!here> hi": '<span class="mention me">@here</span> hi',
        ":tada: :nope:": '<span class="emoji" title=":tada:">🎉</span> :nope:',
    }
    rendered = _render(page, list(cases))
    for (text, html), got in zip(cases.items(), rendered, strict=True):
        assert got["html"] == html, text


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(TOKENS), max_size=30).map("".join), min_size=20, max_size=40))
def test_hostile_text_only_becomes_safe_elements(page, texts: list[str]) -> None:
    for text, got in zip(texts, _render(page, texts), strict=True):
        assert set(got["tags"]) <= ALLOWED_TAGS, (text, got["html"])
        assert set(got["attributes"]) <= ALLOWED_ATTRIBUTES, (text, got["html"])
        for href, rel, target in got["links"]:
            assert href.startswith(("http://", "https://", "mailto:", "#/")), (text, href)
            if not href.startswith("#/"):
                assert (rel, target) == ("noopener noreferrer", "_blank")


def test_typed_mentions_and_channels_become_references(world: World, page) -> None:
    """How people type them: after a bracket or quote, before punctuation, capitalised."""
    bob, general = world.acme["bob"].user_id, world.acme.channels["general"]
    cases = {
        "hey @bob, look": f"hey <@{bob}>, look",
        "thanks @bob.": f"thanks <@{bob}>.",
        "(@bob)": f"(<@{bob}>)",
        "@Bob hi": f"<@{bob}> hi",
        '"@bob"': f'"<@{bob}>"',
        "@here.": "<!here>.",
        "mail bob@acme.test": "mail bob@acme.test",
        "@nobody there": "@nobody there",
        "see #general.": f"see <#{general}|general>.",
        "<@bob>": "&lt;@bob&gt;",
    }
    encoded = page.evaluate(
        """async (texts) => {
          const { encodeOutgoing } = await import('/static/client/ui/composer.js');
          return texts.map(encodeOutgoing);
        }""",
        list(cases),
    )
    assert dict(zip(cases, encoded, strict=True)) == cases

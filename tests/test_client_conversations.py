"""Managing conversations in the client (create, topic, pins, archive, leave, browse and
join, DMs), scroll-back by pages, autocomplete, custom emoji and bots' attachments."""

import pytest

from chatproject.dbrouter import on_shard
from messaging.actions.posting import post_message
from messaging.actions.reactions import add_emoji
from teams.auth import caller_from_token
from tests.browser import open_client, screenshot
from tests.conftest import World
from tests.rtm_client import web

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]


def _send(page, text: str) -> None:
    page.fill("#composer textarea", text)
    page.press("#composer textarea", "Enter")


VISIBLE_JS = """(text) => {
  const box = document.getElementById('messages').getBoundingClientRect();
  const row = [...document.querySelectorAll('#messages .msg')]
    .find((r) => r.querySelector('.text').textContent === text).getBoundingClientRect();
  return row.bottom > box.top && row.top < box.bottom;
}"""


def _submit_dialog(page) -> None:
    page.click("#dialog button.primary")
    page.wait_for_selector("#dialog", state="hidden")


def _sidebar_names(page) -> list[str]:
    return page.locator("#sidebar .conv .name").all_inner_texts()


COUNT_OPENINGS_JS = """() => {
  window.opened = [];
  window.hashChanges = 0;
  document.getElementById('client')
    .addEventListener('conversation-opened', (event) => window.opened.push(event.detail));
  window.addEventListener('hashchange', () => { window.hashChanges += 1; });
}"""


def _opened_once_all_arrived(page, server, world: World, text: str) -> list[str]:
    """The conversations opened since COUNT_OPENINGS_JS, once the socket brought a message
    posted now to #general (so the leave's own events, sent before it, were applied too)."""
    web(server, world.acme["carol"].token).chat_postMessage(channel=world.acme.channels["general"], text=text)
    page.locator("#messages .msg", has_text=text).wait_for()
    return page.evaluate("window.opened")


def test_create_topic_pin_archive_leave_browse_and_dm(world: World, chromium, web_server) -> None:
    alice = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id)

    alice.click("#new-channel")
    alice.fill("#dialog input[name=name]", "random")
    alice.click("#dialog button.primary")
    alice.wait_for_selector("#dialog [role=alert]:has-text('name_taken')")
    alice.fill("#dialog input[name=name]", "Launch Plans")
    _submit_dialog(alice)
    alice.wait_for_selector("#channel-title:text-is('#launch-plans')")
    assert "launch-plans" in _sidebar_names(alice)

    alice.click("#btn-topic")
    alice.fill("#dialog input[name=topic]", "ship it *friday*")
    _submit_dialog(alice)
    alice.wait_for_selector("#channel-topic strong:text-is('friday')")

    _send(alice, "the plan is ready")
    row = alice.locator("#messages .msg", has_text="the plan is ready").last
    row.hover()
    row.locator("[data-action=pin]").click()
    row = alice.locator("#messages .msg", has_text="the plan is ready").last
    row.locator(".pin-marker").wait_for()
    alice.click("#btn-pins")
    alice.locator("#side-panel .msg", has_text="the plan is ready").wait_for()
    screenshot(alice, "pins")
    # The open list follows pins and deletes as they happen.
    _send(alice, "the backup plan")
    backup = alice.locator("#messages .msg", has_text="the backup plan").last
    backup.hover()
    backup.locator("[data-action=pin]").click()
    alice.locator("#side-panel .msg", has_text="the backup plan").wait_for()
    backup.hover()
    backup.locator("[data-action=delete]").click()
    _submit_dialog(alice)
    alice.locator("#side-panel .msg", has_text="the backup plan").wait_for(state="detached")
    alice.locator("#side-panel .msg", has_text="the plan is ready").wait_for()

    # Bob finds it by browsing and joins; alice archives it and he can no longer post.
    bob.click("#browse-channels")
    bob.fill("#dialog input[type=search]", "launch")
    bob.click("#dialog .pick:has-text('#launch-plans')")
    bob.wait_for_selector("#channel-title:text-is('#launch-plans')")
    bob.locator("#messages .msg", has_text="the plan is ready").wait_for()
    screenshot(bob, "browse-join")
    alice.click("#btn-archive")
    _submit_dialog(alice)
    alice.wait_for_selector("#archived-note:visible")
    bob.wait_for_selector("#composer", state="hidden")
    alice.click("#btn-unarchive")
    alice.wait_for_selector("#composer:visible")

    # Leaving takes it out of the sidebar.
    alice.click("#btn-leave")
    _submit_dialog(alice)
    alice.wait_for_selector("#channel-title:text-is('#general')")
    assert "launch-plans" not in _sidebar_names(alice)

    # A DM: alice opens one with bob; it shows up for him as unread and mentioning him.
    alice.click("#new-dm")
    alice.fill("#dialog input[type=search]", "Bob")
    alice.click("#dialog .pick:has-text('Bob')")
    _submit_dialog(alice)
    alice.wait_for_selector("#channel-title:text-is('Bob')")
    # Bob is online: a DM opened now shows it (its partner is subscribed to at once).
    alice.locator("#list-dms .conv", has_text="Bob").locator(".presence.active").wait_for()
    _send(alice, "just between us")
    dm = bob.locator("#list-dms .conv", has_text="alice")
    dm.locator(".badge.mention").wait_for()
    dm.click()
    bob.locator("#messages .msg", has_text="just between us").wait_for()
    alice.context.close()
    bob.context.close()


def test_scroll_back_loads_pages_not_everything(world: World, chromium, web_server) -> None:
    random = world.acme.channels["random"]
    alice = caller_from_token(world.acme["alice"].token)
    with on_shard(world.acme.team.shard):
        for n in range(120):
            post_message(alice, random, text=f"old message {n}")
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    requests: list[str] = []
    page.on("request", lambda r: r.url.endswith("/api/conversations.history") and requests.append(r.url))
    page.click(f"#sidebar a[data-id={random}]")
    page.locator("#messages .msg", has_text="old message 119").wait_for()
    first = page.locator("#messages .msg").count()
    assert first < 120 and len(requests) == 1
    # Scrolled to the top, the oldest loaded row stays in view while a page comes in above it.
    page.evaluate("document.getElementById('messages').scrollTop = 0")
    page.wait_for_function(f"() => document.querySelectorAll('#messages .msg').length > {first}")
    page.wait_for_timeout(200)
    assert page.evaluate(VISIBLE_JS, f"old message {120 - first}")
    while page.locator("#messages .msg", has_text="old message 0").count() == 0:
        page.evaluate("document.getElementById('messages').scrollTop = 0")
        page.wait_for_timeout(200)
        assert len(requests) <= 4
    assert page.locator("#messages .history-top").inner_text() == "This is the very beginning."
    assert len(requests) == 3  # 120 messages: a first page of 30, then pages of 50
    page.context.close()


def test_autocomplete_custom_emoji_and_bot_attachments(world: World, chromium, web_server) -> None:
    general = world.acme.channels["general"]
    with on_shard(world.acme.team.shard):
        add_emoji(
            caller_from_token(world.acme["alice"].token), "partyblob", url="https://emoji.example/p.png"
        )
    bot = web(web_server, world.acme.bot.token)
    bot.conversations_join(channel=general)
    bot.chat_postMessage(
        channel=general,
        text="deploy finished",
        attachments=[
            {
                "color": "#2eb886",
                "title": "Build 42",
                "title_link": "https://ci.example/42",
                "text": "all *green*",
                "fields": [{"title": "Duration", "value": "3 min"}],
                "footer": "CI",
            }
        ],
    )
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    card = page.locator("#messages .attachment").last
    card.wait_for()
    assert card.locator(".title a").get_attribute("href") == "https://ci.example/42"
    assert card.locator(".title a").get_attribute("rel") == "noopener noreferrer"
    assert card.locator(".text strong").inner_text() == "green"
    assert card.locator("dd").inner_text() == "3 min"

    box = "#composer textarea"
    page.click(box)
    page.keyboard.type("hi @bo")
    page.locator(".autocomplete li", has_text="@bob").wait_for()
    page.keyboard.press("Enter")  # picks the suggestion
    page.keyboard.type("look :party")
    page.locator(".autocomplete li", has_text=":partyblob:").wait_for()
    page.keyboard.press("Tab")
    assert page.input_value(box) == "hi @bob look :partyblob: "
    page.keyboard.press("Enter")
    sent = page.locator("#messages .msg", has_text="look").last
    sent.locator("img.emoji[alt=':partyblob:']").wait_for()
    assert sent.locator(".mention").inner_text() == "@Bob"

    # The custom emoji is in the picker too, and reacting with it shows it.
    page.set_viewport_size({"width": 1280, "height": 560})  # the message is near the bottom
    sent.hover()  # after: a smaller view may scroll the timeline from under the pointer
    sent.locator("[data-action=react]").click()
    picker = page.locator("#emoji-picker").bounding_box()  # placed on the screen whole
    assert picker is not None and picker["y"] + picker["height"] <= page.viewport_size["height"]
    page.fill("#emoji-picker input", "partyblob")
    page.click("#emoji-picker [data-name=partyblob]")
    page.locator("#messages .msg", has_text="look").last.locator(
        ".reaction[data-name=partyblob] img.emoji"
    ).wait_for()
    screenshot(page, "emoji-and-attachments")
    page.context.close()


def test_each_conversation_keeps_its_own_draft(world: World, chromium, web_server) -> None:
    general, random = world.acme.channels["general"], world.acme.channels["random"]
    web(web_server, world.acme["alice"].token).conversations_join(channel=random)
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    box = "#composer textarea"
    page.wait_for_selector("#channel-title:text-is('#general')")
    page.fill(box, "draft meant for general")
    page.click(f"#sidebar a[data-id={random}]")
    page.wait_for_selector("#channel-title:text-is('#random')")
    assert page.input_value(box) == ""  # not carried over, to be sent to the wrong channel
    page.fill(box, "and one for random")
    page.click(f"#sidebar a[data-id={general}]")
    page.wait_for_selector("#channel-title:text-is('#general')")
    assert page.input_value(box) == "draft meant for general"
    page.press(box, "Enter")  # sent: gone from the box, and not brought back
    page.locator("#messages .msg", has_text="draft meant for general").wait_for()
    page.click(f"#sidebar a[data-id={random}]")
    page.wait_for_selector("#channel-title:text-is('#random')")
    assert page.input_value(box) == "and one for random"
    page.click(f"#sidebar a[data-id={general}]")
    page.wait_for_selector("#channel-title:text-is('#general')")
    assert page.input_value(box) == ""
    page.context.close()


def test_removed_from_the_private_channel_on_screen(world: World, chromium, web_server) -> None:
    secret, general = world.acme.channels["secret"], world.acme.channels["general"]
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id)
    bob.click(f"#sidebar a[data-id={secret}]")
    bob.wait_for_selector("#channel-title:text-is('#secret')")
    bob.evaluate(COUNT_OPENINGS_JS)
    alice = web(web_server, world.acme["alice"].token)
    alice.conversations_kick(channel=secret, user=world.acme["bob"].user_id)
    bob.wait_for_selector("#channel-title:text-is('#general')")
    assert bob.locator(f"#sidebar a[data-id={secret}]").count() == 0
    assert _opened_once_all_arrived(bob, web_server, world, "after the kick") == [general]
    bob.context.close()


def test_leaving_a_private_channel_opens_general_once(world: World, chromium, web_server) -> None:
    secret, general = world.acme.channels["secret"], world.acme.channels["general"]
    # Opened from a link to it: #general has not been loaded yet (opening it twice then
    # builds it twice; once loaded, a second open of it returns early).
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id, at=f"#/{secret}")
    bob.wait_for_selector("#channel-title:text-is('#secret')")
    bob.evaluate(COUNT_OPENINGS_JS)
    bob.click("#btn-leave")
    _submit_dialog(bob)
    bob.wait_for_selector("#channel-title:text-is('#general')")
    assert bob.locator(f"#sidebar a[data-id={secret}]").count() == 0
    # The server's group_left comes back on the socket too: it must not open #general again.
    assert _opened_once_all_arrived(bob, web_server, world, "after the leave") == [general]
    assert bob.evaluate("window.hashChanges") == 1
    bob.context.close()


def _banner(page) -> str:
    return page.locator("#archived-note p").inner_text()


def test_archived_while_open_turns_read_only_and_unarchives_from_the_banner(
    world: World, chromium, web_server
) -> None:
    alice, bob = web(web_server, world.acme["alice"].token), web(web_server, world.acme["bob"].token)
    launch = alice.conversations_create(name="launch")["channel"]["id"]
    bob.conversations_join(channel=launch)
    head = alice.chat_postMessage(channel=launch, text="the plan is ready")["ts"]
    alice.chat_postMessage(channel=launch, text="first step", thread_ts=head)
    page = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id)
    page.click(f"#sidebar a[data-id={launch}]")
    row = page.locator("#messages .msg", has_text="the plan is ready")
    row.locator(".thread-summary").click()
    page.locator("#side-panel .msg", has_text="first step").wait_for()
    page.wait_for_selector("#side-panel .thread-composer textarea:visible")

    alice.conversations_archive(channel=launch)
    # Live: the banner takes the composer's place, the history stays, and the channel leaves
    # the sidebar while it stays open; the open thread can no longer be replied to either.
    page.wait_for_selector("#archived-note:visible")
    assert _banner(page) == "This channel has been archived."
    assert page.locator("#composer").is_hidden()
    assert page.locator("#channel-title").inner_text() == "#launch"
    assert "launch" not in _sidebar_names(page)
    assert row.is_visible()
    assert page.locator("#side-panel .thread-composer").is_hidden()
    row.hover()
    assert row.locator("[data-action=react]").is_hidden()
    assert page.locator("#btn-archive").is_hidden() and page.locator("#btn-leave").is_hidden()
    screenshot(page, "archived-channel")

    # Bob is in it, so he may bring it back: everything returns, for alice's socket too.
    page.click("#btn-unarchive")
    page.wait_for_selector("#composer:visible")
    assert page.locator("#archived-note").is_hidden()
    page.locator(f"#list-channels a[data-id={launch}]").wait_for()
    page.wait_for_selector("#side-panel .thread-composer textarea:visible")
    assert not alice.conversations_info(channel=launch)["channel"]["is_archived"]
    page.fill("#composer textarea", "back in business")
    page.press("#composer textarea", "Enter")
    page.locator("#messages .msg:not(.pending)", has_text="back in business").wait_for()
    page.context.close()


def test_archived_channels_are_found_in_the_browser_and_read(world: World, chromium, web_server) -> None:
    alice = web(web_server, world.acme["alice"].token)
    old = alice.conversations_create(name="old-project")["channel"]["id"]
    alice.chat_postMessage(channel=old, text="what we decided back then")
    alice.conversations_archive(channel=old)
    hidden = alice.conversations_create(name="old-secret", is_private=True)["channel"]["id"]
    alice.conversations_archive(channel=hidden)

    # Carol was never in #old-project: she finds it under Archived, and reads it without joining.
    carol = open_client(chromium, web_server, "carol@acme.test", world.acme.team.id)
    carol.click("#browse-channels")
    carol.fill("#dialog input[type=search]", "old")
    assert carol.locator("#dialog .pick-list li").all_text_contents()[0] == "Archived"
    pick = carol.locator("#dialog .pick", has_text="#old-project")
    assert pick.locator(".pick-action").inner_text() == "View"
    assert carol.locator("#dialog .pick", has_text="old-secret").count() == 0  # not hers to see
    pick.click()
    carol.wait_for_selector("#channel-title:text-is('#old-project')")
    carol.locator("#messages .msg", has_text="what we decided back then").wait_for()
    assert _banner(carol) == "This channel has been archived."
    assert carol.locator("#composer").is_hidden() and carol.locator("#btn-join").is_hidden()
    assert carol.locator("#btn-unarchive").is_hidden()  # neither a member nor an admin
    assert "old-project" not in _sidebar_names(carol)

    # Unarchived by alice, it is a channel carol may join again, live.
    alice.conversations_unarchive(channel=old)
    carol.wait_for_selector("#btn-join:visible")
    assert carol.locator("#archived-note").is_hidden()

    # Alice, a member of both, finds her private archived channel there too.
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    page.click("#browse-channels")
    page.fill("#dialog input[type=search]", "old")
    page.click("#dialog .pick:has-text('🔒old-secret')")
    page.wait_for_selector("#channel-title:text-is('#old-secret')")
    page.wait_for_selector("#btn-unarchive:visible")
    carol.context.close()
    page.context.close()

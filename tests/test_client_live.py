"""The web client in Chromium, two members at once: live messages, threads, reactions,
edits, deletes, typing, presence, unread state, and text that must stay text."""

import pytest

from chatproject.dbrouter import on_shard
from teams.models import Member
from tests.browser import open_client, screenshot
from tests.conftest import World, member_pk
from tests.rtm_client import web

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]


def _send(page, text: str, box: str = "#composer textarea") -> None:
    page.fill(box, text)
    page.press(box, "Enter")


def _message(page, text: str, where: str = "#messages"):
    return page.locator(f"{where} .msg", has_text=text).last


def _act(page, text: str, action: str, where: str = "#messages") -> None:
    row = _message(page, text, where)
    row.hover()
    row.locator(f".actions [data-action={action}]").click()


def test_two_members_talk_live(world: World, chromium, web_server) -> None:
    alice = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id)
    bob_id = world.acme["bob"].user_id

    _send(alice, "hello @bob *bold* _it_ ~gone~ `code` :tada:")
    received = _message(bob, "hello")
    received.wait_for()
    for tag, text in [("strong", "bold"), ("em", "it"), ("del", "gone"), ("code", "code")]:
        assert received.locator(f".text {tag}").inner_text() == text
    assert received.locator(".mention.me").inner_text() == "@Bob"
    assert received.locator(".emoji").get_attribute("title") == ":tada:"
    assert received.locator(".author").inner_text() == "alice"
    assert bob.locator(".day-separator").count() >= 1
    screenshot(bob, "channel")

    # A thread reply from bob, also sent to the channel, seen by alice in both places.
    _act(bob, "hello", "reply")
    bob.wait_for_selector("#side-panel[data-kind=thread] .msg")
    bob.check("#side-panel input[name=reply_broadcast]")
    _send(bob, "a reply in the thread", "#side-panel textarea")
    _message(alice, "a reply in the thread").wait_for()  # broadcast to the channel
    alice.locator("#messages .thread-summary").first.wait_for()
    assert alice.locator("#messages .thread-summary").first.inner_text() == "1 reply"
    alice.locator("#messages .thread-summary").first.click()
    _message(alice, "a reply in the thread", "#side-panel").wait_for()
    screenshot(alice, "thread")

    # A reaction through the picker.
    _act(bob, "hello", "react")
    bob.click("#emoji-picker [data-name='+1']")
    reaction = _message(alice, "hello").locator(".reaction[data-name='+1']")
    reaction.wait_for()
    assert reaction.locator(".count").inner_text() == "1"
    screenshot(alice, "reactions")

    # Alice edits her message; bob sees the new text and the marker.
    _act(alice, "hello", "edit")
    alice.fill(".edit-form textarea", "hello again, edited")
    alice.press(".edit-form textarea", "Enter")
    edited = _message(bob, "hello again, edited")
    edited.locator(".edited").wait_for()

    # Typing: bob types without sending; alice sees who. (His thread reply was typed moments
    # ago, in the thread's box: another indicator, with a throttle of its own.)
    bob.fill("#composer textarea", "")
    bob.type("#composer textarea", "thinking")
    alice.wait_for_selector("#typing:has-text('Bob is typing')")
    # ... until his message arrives (not for the seconds a typing notice otherwise lasts).
    bob.press("#composer textarea", "Enter")
    _message(alice, "thinking").wait_for()
    assert alice.inner_text("#typing") == ""

    # Alice deletes her message; it goes on both screens. It has bob's reply: a tombstone
    # holding the thread stays, with no author, live as after a reload.
    _act(alice, "hello again", "delete")
    alice.click("#dialog button.primary")
    bob.locator("#messages .msg", has_text="hello again").wait_for(state="detached")
    assert alice.locator("#messages .msg", has_text="hello again").count() == 0
    for page in (bob, alice):
        tombstone = page.locator("#messages .msg.tombstone")
        tombstone.wait_for()
        assert tombstone.locator(".text").inner_text() == "This message was deleted."
        assert tombstone.locator(".thread-summary").inner_text() == "1 reply"
        assert tombstone.locator(".author").count() == 0
    bob.reload()
    bob.wait_for_selector("#client[data-state=live]")
    tombstone = bob.locator("#messages .msg.tombstone")
    assert tombstone.locator(".thread-summary").inner_text() == "1 reply"
    assert tombstone.locator(".author").count() == 0

    # Presence: bob's dot in alice's member list turns away when bob closes the page.
    alice.click("#btn-members")
    dot = alice.locator(f"#side-panel .member-list li[data-user={bob_id}] .presence")
    dot.wait_for()
    alice.wait_for_selector(f"#side-panel li[data-user={bob_id}] .presence.active")
    screenshot(alice, "members")
    bob.context.close()
    alice.wait_for_selector(f"#side-panel li[data-user={bob_id}] .presence.away")
    alice.context.close()


def test_typing_in_a_thread_shows_in_that_thread(world: World, chromium, web_server) -> None:
    alice = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id)
    _send(alice, "start a thread here")
    _message(bob, "start a thread here").wait_for()
    for page in (alice, bob):
        _act(page, "start a thread here", "reply")
        page.wait_for_selector("#side-panel[data-kind=thread] .msg")

    # Bob types a reply: alice sees it in the thread she has open, not under the channel.
    bob.type("#side-panel textarea", "on it")
    alice.wait_for_selector("#side-panel .typing:has-text('Bob is typing')")
    assert alice.inner_text("#typing") == ""
    # ... until the reply arrives.
    bob.press("#side-panel textarea", "Enter")
    _message(alice, "on it", "#side-panel").wait_for()
    assert alice.inner_text("#side-panel .typing") == ""

    # Typing in the channel's box right after shows under the channel, not in the thread.
    bob.type("#composer textarea", "and here")
    alice.wait_for_selector("#typing:has-text('Bob is typing')")
    assert alice.inner_text("#side-panel .typing") == ""
    alice.context.close()
    bob.context.close()


def test_unread_counts_follow_conversations_mark(world: World, chromium, web_server) -> None:
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id)
    alice_api = web(web_server, world.acme["alice"].token)
    random = world.acme.channels["random"]
    alice_api.conversations_join(channel=random)
    web(web_server, world.acme["bob"].token).conversations_join(channel=random)
    alice_api.chat_postMessage(channel=random, text="news for everyone")
    alice_api.chat_postMessage(channel=random, text=f"<@{world.acme['bob'].user_id}> look")
    link = bob.locator(f"#sidebar a[data-id={random}]")
    link.locator(".badge.mention").wait_for()
    assert link.locator(".badge").inner_text() == "1"  # one mention among two unread
    assert "unread" in (link.get_attribute("class") or "")
    link.click()
    link.locator(".badge").wait_for(state="detached")
    # A thread reply is unread in the channel only when it was also sent to the channel.
    general = world.acme.channels["general"]
    parent = alice_api.chat_postMessage(channel=general, text="a thread")["ts"]
    alice_api.chat_postMessage(channel=general, thread_ts=parent, text="only in the thread")
    alice_api.chat_postMessage(channel=general, thread_ts=parent, text="here too", reply_broadcast=True)
    general_badge = bob.locator(f"#sidebar a[data-id={general}] .badge")
    bob.locator(f"#sidebar a[data-id={general}] .badge", has_text="2").wait_for()
    # The read cursor is on the server: a reload still shows nothing unread, and the same
    # count for the thread.
    bob.wait_for_timeout(500)
    bob.reload()
    bob.wait_for_selector("#client[data-state=live]")
    assert bob.locator(f"#sidebar a[data-id={random}] .badge").count() == 0
    assert general_badge.inner_text() == "2"
    bob.context.close()


def test_comings_and_goings_show_as_lines_but_not_as_unread(world: World, chromium, web_server) -> None:
    """Joins and leaves alone do not make a channel unread (Slack's unread_count_display),
    live or after a reload, one's own join least of all; they and a rename show in the
    channel as system lines that name the people they are about."""
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id)
    alice_api, bob_api, carol_api = (web(web_server, world.acme[n].token) for n in ("alice", "bob", "carol"))
    random = world.acme.channels["random"]
    link = bob.locator(f"#sidebar a[data-id={random}]")
    bob_api.conversations_join(channel=random)
    carol_api.conversations_join(channel=random)
    carol_api.conversations_leave(channel=random)
    alice_api.chat_postMessage(channel=random, text="news")
    link.locator(".badge", has_text="1").wait_for()  # the message alone
    bob.reload()
    bob.wait_for_selector("#client[data-state=live]")
    assert link.locator(".badge").inner_text() == "1"

    alice_api.conversations_rename(channel=random, name="watercooler")
    link.locator(".name", has_text="watercooler").wait_for()
    link.click()
    lines = bob.locator("#messages .msg.system")
    lines.filter(has_text="renamed").wait_for()
    # Each names its author once, before what they did (the text's own <@U> is not repeated).
    said = [(row.locator(".author").inner_text(), row.locator(".text").inner_text()) for row in lines.all()]
    assert said == [
        ("Bob", "has joined the channel"),
        ("Carol", "has joined the channel"),
        ("Carol", "has left the channel"),
        ("alice", 'has renamed the channel from "random" to "watercooler"'),
    ]
    bob.context.close()


XSS = '<img src=x onerror="document.body.dataset.owned=1"><script>document.body.dataset.owned=1</script>'


def test_hostile_text_renders_as_text(world: World, chromium, web_server) -> None:
    general = world.acme.channels["general"]
    carol = world.acme["carol"]
    with on_shard(world.acme.team.shard):
        Member.objects.filter(id=member_pk(carol.user_id)).update(display_name=XSS)
    carol_api = web(web_server, carol.token)
    # Images of this origin would be GETs with the reader's cookie: never loaded.
    carol_api.chat_postMessage(
        channel=general,
        text="card with a forged image",
        attachments=[
            {"title": "card", "image_url": "/api/auth.revoke"},
            {"thumb_url": f"{web_server}/api/x"},
        ],
    )
    carol_api.chat_postMessage(channel=general, text=XSS)
    carol_api.chat_postMessage(
        channel=general, text="<javascript:alert(1)|click me> and <https://example.com|fine>"
    )
    carol_api.conversations_setTopic(channel=general, topic=XSS)
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id)
    shown = _message(page, "onerror")
    shown.wait_for()
    assert XSS in shown.locator(".text").inner_text()
    assert shown.locator(".author").inner_text() == XSS
    assert page.locator("#channel-topic").inner_text() == XSS
    _message(page, "forged image").locator(".attachment").first.wait_for()
    assert page.locator("#messages img:not(.emoji), #messages script, #pane-header script").count() == 0
    links = _message(page, "click me").locator("a")
    assert links.count() == 1 and links.get_attribute("href") == "https://example.com"
    assert links.get_attribute("rel") == "noopener noreferrer"
    page.wait_for_timeout(300)
    assert page.evaluate("document.body.dataset.owned") is None
    screenshot(page, "hostile-text")
    page.context.close()

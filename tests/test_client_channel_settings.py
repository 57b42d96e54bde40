"""Changing a channel from the client, as in Slack: renaming it and setting its description
(the purpose) beside its topic in the channel's details, adding people and removing them in
the member list, and what an archived channel's panels no longer offer. Others see each
change live."""

import pytest

from chatproject.dbrouter import on_shard
from teams.actions import create_member
from teams.models import Member
from tests.browser import open_client, screenshot
from tests.conftest import World, member_pk
from tests.rtm_client import web

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]


def _submit_dialog(page) -> None:
    page.click("#dialog button.primary")
    page.wait_for_selector("#dialog", state="hidden")


def _said(page, where: str, text: str, code: str) -> None:
    """`where` shows the sentence, with the code in small type (static/client/errors.js)."""
    message = page.locator(f"{where} .error-message", has_text=text)
    message.wait_for()
    assert message.locator(".error-code").inner_text() == f"({code})"


def _opened(page, channel_id: str, title: str) -> None:
    page.click(f"#sidebar a[data-id={channel_id}]")
    page.wait_for_selector(f"#channel-title:text-is('{title}')")


def _part(page, name: str):
    """One part of the open channel details: name, topic or purpose."""
    return page.locator(f"#side-panel [data-part={name}] .about-text")


def _members_shown(page) -> set[str]:
    rows = page.locator("#side-panel .member-list li[data-user]")
    return {rows.nth(i).get_attribute("data-user") or "" for i in range(rows.count())}


def test_rename_from_the_details_shows_everywhere_live(world: World, chromium, web_server) -> None:
    alice_api, bob_api = web(web_server, world.acme["alice"].token), web(web_server, world.acme["bob"].token)
    launch = alice_api.conversations_create(name="launch")["channel"]["id"]
    bob_api.conversations_join(channel=launch)
    secret = world.acme.channels["secret"]
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id, at=f"#/{launch}")
    bob.wait_for_selector("#channel-title:text-is('#launch')")
    alice = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id, at=f"#/{launch}")
    alice.wait_for_selector("#channel-title:text-is('#launch')")

    alice.click("#btn-details")
    assert _part(alice, "name").inner_text() == "#launch"
    alice.click("#side-panel [data-edit=name]")
    assert alice.input_value("#dialog input[name=name]") == "launch"
    # Refused: the name is another channel's. Said in words; the dialog stays to try again.
    alice.fill("#dialog input[name=name]", "random")
    alice.click("#dialog button.primary")
    _said(alice, "#dialog [role=alert]", "That name is already taken by another channel.", "name_taken")
    alice.fill("#dialog input[name=name]", "Launch Day")  # made a channel name, as Slack does
    _submit_dialog(alice)
    alice.wait_for_selector("#channel-title:text-is('#launch-day')")
    assert _part(alice, "name").inner_text() == "#launch-day"
    assert alice.locator(f"#sidebar a[data-id={launch}] .name").inner_text() == "launch-day"
    assert alice_api.conversations_info(channel=launch)["channel"]["name"] == "launch-day"

    # Bob has it open: its header and his sidebar follow, without a reload.
    bob.wait_for_selector("#channel-title:text-is('#launch-day')")
    assert bob.locator(f"#sidebar a[data-id={launch}] .name").inner_text() == "launch-day"
    # A private channel's rename (group_rename) reaches its members as well.
    alice_api.conversations_rename(channel=secret, name="hush")
    bob.wait_for_selector(f"#sidebar a[data-id={secret}] .name:text-is('hush')")
    screenshot(alice, "channel-details")

    # Only admins rename #general: Bob is offered no Rename there, only the topic and description.
    _opened(bob, world.acme.channels["general"], "#general")
    bob.click("#btn-details")
    bob.locator("#side-panel [data-edit=topic]").wait_for()
    assert bob.locator("#side-panel [data-edit=purpose]").is_visible()
    assert bob.locator("#side-panel [data-edit=name]").count() == 0
    alice.context.close()
    bob.context.close()


def test_description_beside_the_topic_live(world: World, chromium, web_server) -> None:
    alice_api, bob_api = web(web_server, world.acme["alice"].token), web(web_server, world.acme["bob"].token)
    plans = alice_api.conversations_create(name="plans")["channel"]["id"]
    bob_api.conversations_join(channel=plans)
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id, at=f"#/{plans}")
    bob.wait_for_selector("#channel-title:text-is('#plans')")
    bob.click("#btn-details")
    assert _part(bob, "purpose").inner_text() == "No description yet."

    alice = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id, at=f"#/{plans}")
    alice.wait_for_selector("#channel-title:text-is('#plans')")
    alice.click("#btn-details")
    alice.click("#side-panel [data-edit=purpose]")
    alice.fill("#dialog input[name=purpose]", "Where we plan the *launch*")
    _submit_dialog(alice)
    alice.locator("#side-panel [data-part=purpose] strong", has_text="launch").wait_for()
    purpose = alice_api.conversations_info(channel=plans)["channel"]["purpose"]["value"]
    assert purpose == "Where we plan the *launch*"
    # The topic sits beside it, and the header shows the topic (not the description).
    alice.click("#side-panel [data-edit=topic]")
    alice.fill("#dialog input[name=topic]", "launch on friday")
    _submit_dialog(alice)
    alice.wait_for_selector("#side-panel [data-part=topic] .about-text:text-is('launch on friday')")
    assert alice.locator("#channel-topic").inner_text() == "launch on friday"

    # Bob's open details follow both (the server's channel_purpose / channel_topic messages).
    bob.locator("#side-panel [data-part=purpose] strong", has_text="launch").wait_for()
    assert _part(bob, "purpose").inner_text() == "Where we plan the launch"
    bob.wait_for_selector("#side-panel [data-part=topic] .about-text:text-is('launch on friday')")
    bob.wait_for_selector("#channel-topic:text-is('launch on friday')")

    # What people write is shown as text, never run as markup.
    bob.click("#side-panel [data-edit=purpose]")
    hostile = '<img src=x onerror="window.pwned=1"> & <b>bold</b>'
    bob.fill("#dialog input[name=purpose]", hostile)
    _submit_dialog(bob)
    _part(alice, "purpose").filter(has_text="<b>bold</b>").wait_for()
    for page in (alice, bob):
        assert _part(page, "purpose").locator("img, b").count() == 0
        assert page.evaluate("window.pwned") is None
    alice.context.close()
    bob.context.close()


def test_add_people_and_remove_one(world: World, chromium, web_server) -> None:
    alice_api = web(web_server, world.acme["alice"].token)
    bob_id, carol_id = world.acme["bob"].user_id, world.acme["carol"].user_id
    alice_id = world.acme["alice"].user_id
    plans = alice_api.conversations_create(name="plans", is_private=True)["channel"]["id"]
    bob = open_client(chromium, web_server, "bob@acme.test", world.acme.team.id)
    alice = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id, at=f"#/{plans}")
    alice.wait_for_selector("#channel-title:text-is('#plans')")
    alice.click("#btn-members")
    alice.locator(f"#side-panel li[data-user={alice_id}]").wait_for()
    assert alice.locator(f"#side-panel li[data-user={alice_id}] .member-remove").count() == 0  # not oneself

    # Add people: the team's people not in it yet (not Alice herself, nor the bot); two at once.
    alice.click("#side-panel .member-add")
    alice.wait_for_selector("#dialog h2:text-is('Add people to #plans')")
    picks = alice.locator("#dialog .pick .label").all_inner_texts()
    assert sorted(picks) == ["Bob", "Carol"]
    alice.click("#dialog .pick:has-text('Bob')")
    assert alice.get_attribute("#dialog .pick:has-text('Bob')", "aria-pressed") == "true"
    # From the keyboard too: find Carol, pick her, and Add.
    alice.fill("#dialog input[type=search]", "car")
    alice.press("#dialog input[type=search]", "Tab")
    alice.keyboard.press("Enter")
    assert alice.get_attribute("#dialog .pick:has-text('Carol')", "aria-pressed") == "true"
    alice.locator("#dialog button.primary", has_text="Add").focus()
    alice.keyboard.press("Enter")
    alice.wait_for_selector("#dialog", state="hidden")
    alice.locator(f"#side-panel li[data-user={carol_id}]").wait_for()
    assert _members_shown(alice) == {alice_id, bob_id, carol_id}
    assert set(alice_api.conversations_members(channel=plans)["members"]) == {alice_id, bob_id, carol_id}
    # Bob hears he was added: the private channel shows up in his sidebar.
    bob.locator(f"#list-groups a[data-id={plans}]").wait_for()

    # Already in it, they are not offered again.
    alice.click("#side-panel .member-add")
    alice.wait_for_selector("#dialog h2:text-is('Add people to #plans')")
    assert alice.locator("#dialog .pick").count() == 0
    alice.click("#dialog button.secondary")

    # Alice made it: she may remove people. Carol goes, after a confirmation.
    alice.click(f"#side-panel li[data-user={carol_id}] .member-remove")
    alice.wait_for_selector("#dialog h2:text-is('Remove Carol from #plans?')")
    screenshot(alice, "remove-from-channel")
    _submit_dialog(alice)
    alice.locator(f"#side-panel li[data-user={carol_id}]").wait_for(state="detached")
    assert _members_shown(alice) == {alice_id, bob_id}
    assert set(alice_api.conversations_members(channel=plans)["members"]) == {alice_id, bob_id}
    # Someone who leaves while being removed is gone, as asked: no refusal to read.
    alice.click(f"#side-panel li[data-user={bob_id}] .member-remove")
    alice.wait_for_selector("#dialog h2:text-is('Remove Bob from #plans?')")
    web(web_server, world.acme["bob"].token).conversations_leave(channel=plans)
    _submit_dialog(alice)
    alice.locator(f"#side-panel li[data-user={bob_id}]").wait_for(state="detached")
    alice_api.conversations_invite(channel=plans, users=bob_id)  # back, for what follows
    alice.locator(f"#side-panel li[data-user={bob_id}]").wait_for()

    # Bob, a member but neither its creator nor an admin, may add people but not remove them.
    bob.click(f"#sidebar a[data-id={plans}]")
    bob.wait_for_selector("#channel-title:text-is('#plans')")
    bob.click("#btn-members")
    bob.locator(f"#side-panel li[data-user={alice_id}]").wait_for()
    assert bob.locator("#side-panel .member-add").is_visible()
    assert bob.locator("#side-panel .member-remove").count() == 0
    # Nobody is removed from #general, whoever asks.
    alice.click(f"#sidebar a[data-id={world.acme.channels['general']}]")
    alice.wait_for_selector("#channel-title:text-is('#general')")
    alice.click("#btn-members")
    alice.locator(f"#side-panel li[data-user={bob_id}]").wait_for()
    assert alice.locator("#side-panel .member-remove").count() == 0
    alice.context.close()
    bob.context.close()


def test_an_older_member_list_answering_late_is_not_drawn(world: World, chromium, web_server) -> None:
    """A removal asks for the list twice (right after it, and on member_left_channel): the
    first answer, held back and stale, arrives after the second and must not bring back
    the person removed."""
    alice_api = web(web_server, world.acme["alice"].token)
    alice_id, bob_id, carol_id = (world.acme[n].user_id for n in ("alice", "bob", "carol"))
    plans = alice_api.conversations_create(name="plans", is_private=True)["channel"]["id"]
    alice_api.conversations_invite(channel=plans, users=f"{bob_id},{carol_id}")
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id, at=f"#/{plans}")
    page.wait_for_selector("#channel-title:text-is('#plans')")
    page.click("#btn-members")
    page.locator(f"#side-panel li[data-user={carol_id}]").wait_for()

    held = []

    def hold_the_first(route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)  # answered below, after the later list is drawn

    page.route("**/api/conversations.members", hold_the_first)
    page.click(f"#side-panel li[data-user={carol_id}] .member-remove")
    _submit_dialog(page)
    page.locator(f"#side-panel li[data-user={carol_id}]").wait_for(state="detached")
    assert len(held) == 1
    stale = {"ok": True, "members": [alice_id, bob_id, carol_id], "response_metadata": {"next_cursor": ""}}
    held[0].fulfill(json=stale)
    page.wait_for_timeout(500)  # time enough to draw it, were it drawn
    assert _members_shown(page) == {alice_id, bob_id}
    page.context.close()


def test_a_refused_removal_is_said_in_words(world: World, chromium, web_server) -> None:
    """Dana, an admin, may remove people from a private channel she did not make; she is no
    longer one by the time she confirms, and the server's refusal is shown as a sentence."""
    dana, _ = create_member(world.acme.team, "dana@acme.test", name="Dana", password="pw", is_admin=True)
    alice_api = web(web_server, world.acme["alice"].token)
    bob_id = world.acme["bob"].user_id
    plans = alice_api.conversations_create(name="plans", is_private=True)["channel"]["id"]
    alice_api.conversations_invite(channel=plans, users=f"{bob_id},{dana.slack_id}")
    page = open_client(chromium, web_server, "dana@acme.test", world.acme.team.id, at=f"#/{plans}")
    page.wait_for_selector("#channel-title:text-is('#plans')")
    page.click("#btn-members")
    remove = page.locator(f"#side-panel li[data-user={bob_id}] .member-remove")
    remove.click()

    def demoted_first(route) -> None:
        with on_shard(world.acme.team.shard):
            Member.objects.filter(id=member_pk(dana.slack_id)).update(is_admin=False)
        route.continue_()

    page.route("**/api/conversations.kick", demoted_first)
    page.click("#dialog button.primary")
    _said(page, "#dialog [role=alert]", "You do not have permission to do that here.", "restricted_action")
    page.click("#dialog button.secondary")
    assert bob_id in alice_api.conversations_members(channel=plans)["members"]
    assert page.locator(f"#side-panel li[data-user={bob_id}]").is_visible()
    page.context.close()


def test_an_archived_channel_offers_no_unpin_nor_other_changes(world: World, chromium, web_server) -> None:
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

    # Opened again, the same; the member list and the details change nothing either.
    page.click("#panel-close")
    page.click("#btn-pins")
    pinned.hover()
    assert pinned.locator("[data-action=unpin]").is_hidden()
    page.click("#btn-members")
    page.locator("#side-panel .member-list li").first.wait_for()
    assert page.locator("#side-panel .member-add").is_hidden()
    page.click("#btn-details")
    assert _part(page, "name").inner_text() == "#old-project"
    assert page.locator("#side-panel [data-edit]").count() == 0

    # Unarchived, Unpin is back.
    alice_api.conversations_unarchive(channel=old)
    page.wait_for_selector("#composer:visible")
    page.click("#btn-pins")
    pinned.hover()
    pinned.locator("[data-action=unpin]").wait_for()
    page.context.close()

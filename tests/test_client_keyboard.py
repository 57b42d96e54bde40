"""Reaching a message's actions from the keyboard: rows take focus (one at a time in the
Tab order, ArrowUp/ArrowDown between them), Tab goes on into the focused row's actions,
Enter presses one and Escape comes back to the row."""

import pytest

from tests.browser import open_client
from tests.conftest import World
from tests.rtm_client import web

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]

FOCUSED_JS = """() => {
  const el = document.activeElement;
  const row = el.closest('#messages .msg');
  return {
    row: row ? row.querySelector('.text').textContent : null,
    isRow: el === row,
    action: el.dataset.action || null,
    ring: el === row && el.matches(':focus-visible'),
  };
}"""


def _focused(page) -> dict:
    return page.evaluate(FOCUSED_JS)


def test_message_actions_reachable_from_keyboard(world: World, chromium, web_server) -> None:
    general = world.acme.channels["general"]
    api = web(web_server, world.acme["bob"].token)
    api.chat_postMessage(channel=general, text="first by keyboard")
    api.chat_postMessage(channel=general, text="second by keyboard")
    page = open_client(chromium, web_server, "alice@acme.test", world.acme.team.id, at=f"#/{general}")
    page.locator("#messages .msg", has_text="second by keyboard").wait_for()

    # Back from the composer, the keyboard lands on the newest message; ArrowUp goes older.
    page.focus("#composer textarea")
    page.keyboard.press("Shift+Tab")
    page.wait_for_function("() => document.activeElement.matches('#messages .msg')")
    assert _focused(page) == {"row": "second by keyboard", "isRow": True, "action": None, "ring": True}
    page.keyboard.press("ArrowUp")
    assert _focused(page)["row"] == "first by keyboard"
    row = page.locator("#messages .msg", has_text="first by keyboard")
    row.locator(".actions").wait_for()  # a focused row shows its actions

    # Tab goes into its actions; Escape comes back to the row.
    page.keyboard.press("Tab")
    assert _focused(page) == {"row": "first by keyboard", "isRow": False, "action": "react", "ring": False}
    page.keyboard.press("Tab")
    assert _focused(page)["action"] == "reply"
    page.keyboard.press("Escape")
    assert _focused(page) == {"row": "first by keyboard", "isRow": True, "action": None, "ring": True}

    # Enter presses the focused action: the emoji picker opens, and its choice is the reaction.
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#emoji-picker")
    page.fill("#emoji-picker input", "thumbsup")
    page.press("#emoji-picker input", "Enter")
    row.locator(".reaction").wait_for()

    # Tab comes back to the row that had focus last, though the reaction drew it anew; Space
    # presses a button too (the reaction chip, first in the row: it takes the reaction back).
    page.focus("#composer textarea")
    page.keyboard.press("Shift+Tab")
    chip = {"row": "first by keyboard", "isRow": False, "action": "toggle-reaction", "ring": False}
    assert _focused(page) == chip
    page.keyboard.press("Shift+Tab")
    assert _focused(page) == {"row": "first by keyboard", "isRow": True, "action": None, "ring": True}
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    row.locator(".reaction").wait_for(state="detached")

"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright.

Tests sign people in through a real session (the same cookie the sign-in form sets) and
save a screenshot of each main screen under test-artifacts/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from chatproject.chromium import CHROMIUM
from teams.auth import SESSION_TEAM_KEY
from teams.models import Account
from tests.servers import Daphne, running_daphne

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser per test module (module scope keeps the flag below to browser modules)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (./test does so as root)")
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # between browser steps are still plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def web_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[Daphne]:
    with running_daphne() as server:
        yield server


def session_cookie(email: str, team_id: int) -> dict[str, str]:
    """A signed-in session for this account in this team, as the sign-in form makes it."""
    account = Account.objects.get(email=email)
    session = SessionStore()
    session[SESSION_KEY] = str(account.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = account.get_session_auth_hash()
    session[SESSION_TEAM_KEY] = team_id
    session.save()
    return {"name": settings.SESSION_COOKIE_NAME, "value": session.session_key or ""}


def open_client(chromium: Any, server: Daphne, email: str, team_id: int, at: str = "") -> Any:
    """A new browser context signed in as `email`, on the client page, booted (`at`: a
    conversation to open first, as a link to it would: "#/C123")."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    context.add_cookies([{**session_cookie(email, team_id), "url": server.http}])
    page = context.new_page()
    # Shown with a failing test's captured output.
    page.on("console", lambda m: m.type in ("error", "warning") and print(f"[{email}] console: {m.text}"))
    page.on("pageerror", lambda e: print(f"[{email}] page error: {e}"))
    page.goto(server.http + "/" + at)
    page.wait_for_selector("#client[data-state=live]")
    return page


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

"""Search indexing through the real path: a post commits, a real Celery worker on the
`search` queue indexes it, search finds it; an edit is re-indexed the same way."""

import time

import pytest

from tests.conftest import World
from tests.servers import running_worker

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def _found(api, token: str, query: str) -> list[str]:
    answer = api("search.messages", token, query=query)
    assert answer["ok"], answer
    return [m["text"] for m in answer["messages"]["matches"]]


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the search index")
        time.sleep(0.2)


def test_posts_and_edits_are_indexed_by_the_worker(world: World, api) -> None:
    token, general = world.acme["alice"].token, world.acme.channels["general"]
    with running_worker("search", concurrency=1):
        posted = api("chat.postMessage", token, channel=general, text="walrus sighting at the pier")
        assert posted["ok"]
        _wait_for(lambda: _found(api, token, "walrus") == ["walrus sighting at the pier"])
        assert api("chat.update", token, channel=general, ts=posted["ts"], text="seal sighting")["ok"]
        _wait_for(lambda: _found(api, token, "seal") == ["seal sighting"])
        assert _found(api, token, "walrus") == []

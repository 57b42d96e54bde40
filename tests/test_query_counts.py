"""Hot paths run a fixed number of queries, however many rows they return."""

from contextlib import ExitStack

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from chatproject.dbrouter import on_shard
from messaging.actions.posting import post_message
from messaging.actions.reactions import add_reaction
from teams.actions import create_member
from teams.auth import caller_from_token
from tests.conftest import World, without_joins

pytestmark = pytest.mark.django_db(databases="__all__")
MAX_QUERIES_PER_POST = 6  # the target for chat.postMessage


def _count_queries(call) -> tuple[int, object]:
    with ExitStack() as stack:
        captures = [stack.enter_context(CaptureQueriesContext(connections[alias])) for alias in connections]
        result = call()
    # The test's own transaction turns a statement that runs alone in autocommit into
    # one inside a savepoint; the savepoint bookkeeping is not the code's queries.
    statements = [q["sql"] for c in captures for q in c.captured_queries]
    return sum(1 for sql in statements if not sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))), result


def _fill_channel(world: World, n: int) -> None:
    alice = caller_from_token(world.acme["alice"].token)
    with on_shard("shard_0"):
        for i in range(n):
            ts = post_message(alice, world.acme.channels["general"], text=f"m{i}").message.ts
            add_reaction(alice, world.acme.channels["general"], f"{ts // 10**6}.{ts % 10**6:06d}", "wave")


def test_history_page_queries_do_not_grow_with_rows(world: World, api) -> None:
    token, general = world.acme["bob"].token, world.acme.channels["general"]
    api("auth.test", token)  # warm the token cache
    _fill_channel(world, 3)
    small, answer = _count_queries(lambda: api("conversations.history", token, channel=general))
    assert len(without_joins(answer["messages"])) == 3
    _fill_channel(world, 30)
    large, answer = _count_queries(lambda: api("conversations.history", token, channel=general, limit=50))
    filled = without_joins(answer["messages"])
    assert len(filled) == 33 and all(m["reactions"] for m in filled)
    assert small == large <= 6


def test_users_list_queries_do_not_grow_with_rows(world: World, api) -> None:
    token = world.acme["bob"].token
    api("auth.test", token)
    small, answer = _count_queries(lambda: api("users.list", token))
    for n in range(20):
        create_member(world.acme.team, f"extra{n}@acme.test")
    large, answer = _count_queries(lambda: api("users.list", token))
    assert len(answer["members"]) == 24
    assert small == large <= 2


def test_post_stays_within_the_query_budget(world: World, api) -> None:
    token, general = world.acme["bob"].token, world.acme.channels["general"]
    api("chat.postMessage", token, channel=general, text="warm up")
    queries, answer = _count_queries(lambda: api("chat.postMessage", token, channel=general, text="counted"))
    # A top-level post is one statement (messaging.actions.one_trip_post).
    assert answer["ok"] and queries == 1
    parent_ts = answer["ts"]
    reply, answer = _count_queries(
        lambda: api("chat.postMessage", token, channel=general, text="in thread", thread_ts=parent_ts)
    )
    # A reply: BEGIN, the channel, the locked parent, one statement for ts, row and
    # parent bookkeeping, the event, COMMIT.
    assert answer["ok"] and reply <= MAX_QUERIES_PER_POST
    parent = api("conversations.replies", token, channel=general, ts=parent_ts)["messages"][0]
    assert parent["reply_count"] == 1 and parent["latest_reply"] == answer["ts"]

"""Work a drain took is not lost with the drain (jobs.pending): its claim outlives a killed
worker only until its lease ends, and then the next drain, or the beat's reclaim, takes it
again. Real Redis; the last test a real search worker."""

from __future__ import annotations

import time
import uuid

import pytest
from django_redis import get_redis_connection

from chatproject.celery import app
from jobs import search_tasks
from jobs.pending import PendingWork
from jobs.tasks import reclaim_pending
from tests.conftest import World
from tests.servers import running_worker


def _work(scheduled: list[str]) -> PendingWork:
    return PendingWork(
        f"test-{uuid.uuid4().hex}",
        lambda group, countdown: scheduled.append(group),
        delay_secs=0.0,
        batch=10,
        max_age_secs=60,
    )


def test_a_dead_drains_claims_return_after_their_lease(settings) -> None:
    settings.PENDING_LEASE_SECS = 0.5
    scheduled: list[str] = []
    work = _work(scheduled)
    work.add("g", ["a", "b", "c"], "test items")
    assert scheduled == ["g"]  # the first write in the window

    dying = work.claimed("g")  # referenced to the end, as in the last test
    assert sorted(dying.__enter__()) == [b"a", b"b", b"c"]  # and its worker is killed: no exit
    with work.claimed("g") as meanwhile:
        assert meanwhile == []  # the lease holds them for the drain that took them
    assert work.reclaim() == []

    time.sleep(0.6)
    assert work.reclaim() == ["g"]
    assert scheduled == ["g", "g"]  # a drain for the group, though no write came
    assert work.reclaim() == []  # once per lease, not once per beat
    with work.claimed("g") as retaken:
        assert sorted(retaken) == [b"a", b"b", b"c"]
    redis = get_redis_connection("default")
    assert not redis.exists(work._claims_key("g"))
    assert redis.zscore(work._groups_key(), "g") is None


def test_a_drain_lets_go_when_its_work_fails() -> None:
    scheduled: list[str] = []
    work = _work(scheduled)
    work.add("g", ["a"], "test items")
    with pytest.raises(RuntimeError), work.claimed("g") as taken:
        assert taken == [b"a"]
        raise RuntimeError("the work failed")  # as an error fails it: not drained again
    redis = get_redis_connection("default")
    assert not redis.exists(work._claims_key("g"))
    assert redis.zscore(work._groups_key(), "g") is None


def test_a_drain_that_cannot_hand_its_work_on_keeps_it() -> None:
    work = _work([])
    work.add("g", ["a"], "test items")
    with pytest.raises(ConnectionError), work.claimed("g") as taken:
        assert taken == [b"a"]
        raise ConnectionError("the broker is away")
    assert get_redis_connection("default").zscore(work._claims_key("g"), "a") is not None


def test_a_drain_lets_go_only_of_what_it_still_holds() -> None:
    work = _work([])
    work.add("g", ["a"], "test items")
    first = work.claimed("g")
    assert first.__enter__() == [b"a"]
    work.add("g", ["a"], "test items")  # marked again (an edit) and taken by another drain
    second = work.claimed("g")
    assert second.__enter__() == [b"a"]
    first.__exit__(None, None, None)  # the first ends: the second's claim stays
    assert get_redis_connection("default").zscore(work._claims_key("g"), "a") is not None
    second.__exit__(None, None, None)
    assert not get_redis_connection("default").exists(work._claims_key("g"))


def test_more_than_a_batch_schedules_the_next_drain(settings) -> None:
    scheduled: list[str] = []
    work = _work(scheduled)
    work.add("g", [str(n) for n in range(15)], "test items")
    with work.claimed("g") as first:
        assert len(first) == 10
    assert scheduled == ["g", "g"]
    with work.claimed("g") as rest:
        assert len(rest) == 5


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_messages_a_killed_drain_took_are_indexed_after_its_lease(world: World, api, settings) -> None:
    settings.PENDING_LEASE_SECS = 1.0
    token, general = world.acme["alice"].token, world.acme.channels["general"]
    assert api("chat.postMessage", token, channel=general, text="narwhal off the coast")["ok"]
    app.control.purge()  # the drain that post queued is the one that "died" below
    team_id = str(world.acme.team.id)
    # Taken, then killed. (Kept referenced: a collected generator would run its `finally`,
    # which a killed process never does.)
    dying = search_tasks.PENDING.claimed(team_id)
    assert dying.__enter__()

    def found() -> list[str]:
        answer = api("search.messages", token, query="narwhal")
        assert answer["ok"], answer
        return [match["text"] for match in answer["messages"]["matches"]]

    with running_worker("search", concurrency=1):
        time.sleep(1.2)
        assert found() == []  # nobody drains it: its claim outlived the drain
        assert team_id in reclaim_pending()  # the beat's job
        deadline = time.monotonic() + 20
        while found() != ["narwhal off the coast"]:
            assert time.monotonic() < deadline, "not indexed after the reclaim"
            time.sleep(0.2)

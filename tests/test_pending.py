"""Work a drain took is not lost with the drain (jobs.pending): its claim outlives a killed
worker only until its lease ends, and then the next drain, or the beat's reclaim, takes it
again. Real Redis; the last test a real search worker."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
from django_redis import get_redis_connection

from chatproject.celery import app
from jobs import search_tasks
from jobs.pending import RESEND_MAX_WAIT_SECS, PendingWork
from jobs.pending_batches import DRAIN_FLAG_TTL_SECS
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


class _Broker:
    """Schedules drains (records the group) while up; refuses as an unreachable one would."""

    def __init__(self, *, up: bool) -> None:
        self.up = up
        self.scheduled: list[str] = []

    def __call__(self, group: str, countdown: float) -> None:
        if not self.up:
            raise ConnectionError("the broker is away")
        self.scheduled.append(group)


def test_items_come_while_the_broker_is_away_are_kept_and_drained_by_reclaim() -> None:
    """A drain that could not be asked for does not lose its items, nor do the writes after
    it (which skip the broker for a while rather than wait on it): the beat's reclaim
    starts their drain."""
    broker = _Broker(up=False)
    work = PendingWork(f"test-{uuid.uuid4().hex}", broker, delay_secs=0.0, batch=10, max_age_secs=60)
    work.add("g", ["a"], "test items")  # its drain could not be asked for
    work.add("g", ["b"], "test items")  # the broker is skipped for a while: kept all the same
    broker.up = True
    work.add("g", ["c"], "test items")
    assert broker.scheduled == []
    assert work.reclaim() == ["g"] and broker.scheduled == ["g"]
    with work.claimed("g") as taken:
        assert sorted(taken) == [b"a", b"b", b"c"]
    assert work.reclaim() == []


def _scans() -> int:
    """SCAN calls Redis has served (all clients): none other runs beside these tests."""
    return int(get_redis_connection("default").info("commandstats").get("cmdstat_scan", {}).get("calls", 0))


def test_reclaim_starts_one_drain_for_a_group_found_both_ways_without_scanning(settings) -> None:
    """A group whose drain died, and whose next drain the broker refused, is found by both
    of reclaim's ways (lapsed claims, refused drains): it gets one drain. And reclaim looks
    only at what was listed for it, not at every key in Redis."""
    settings.PENDING_LEASE_SECS = 0.2
    broker = _Broker(up=True)
    work = PendingWork(f"test-{uuid.uuid4().hex}", broker, delay_secs=0.0, batch=10, max_age_secs=60)
    work.add("g", ["a"], "test items")
    dying = work.claimed("g")
    assert dying.__enter__() == [b"a"]  # and its worker is killed: no exit
    broker.up = False
    work.add("g", ["b"], "test items")  # its drain refused
    broker.up = True
    time.sleep(0.3)  # the dead drain's lease lapses
    work._list_earlier_waiting_once()  # an upgrade's one SCAN (the next test)
    scans = _scans()
    assert work.reclaim() == ["g"]
    assert broker.scheduled == ["g", "g"]  # the first write's drain, and one now
    assert _scans() == scans
    assert work.reclaim() == []
    with work.claimed("g") as lapsed:
        assert lapsed == [b"a"]  # alone: it may be what killed its drain
    with work.claimed("g") as taken:
        assert taken == [b"b"]


def test_a_reclaim_the_broker_refuses_keeps_every_group_for_the_next() -> None:
    """Each group whose drain the broker refused is listed: a write's, one the writes
    after it skipped the broker for, the next drain of a group with more than a batch. A
    reclaim while it still refuses tries once (a try may take the broker's connect
    timeout, and the groups may be thousands) and keeps them all for the next."""
    tries: list[str] = []
    broker_up = False

    def schedule(group: str, countdown: float) -> None:
        tries.append(group)
        if not broker_up:
            raise ConnectionError("the broker is away")

    work = PendingWork(f"test-{uuid.uuid4().hex}", schedule, delay_secs=0.0, batch=2, max_age_secs=60)
    work.add("g", ["a", "b", "c"], "test items")  # its drain refused
    work.add("h", ["d"], "test items")  # the broker skipped for a while
    assert tries == ["g"]
    assert work.reclaim() == []
    assert len(tries) == 2  # one try, not one per group
    broker_up = True
    assert sorted(work.reclaim()) == ["g", "h"]
    assert work.reclaim() == []
    broker_up = False
    with work.claimed("g") as taken:
        assert len(taken) == 2  # a batch: its next drain is refused
    broker_up = True
    assert work.reclaim() == ["g"]
    with work.claimed("g") as rest:
        assert len(rest) == 1
    with work.claimed("h") as taken:
        assert taken == [b"d"]


def test_a_group_whose_drain_died_before_taking_anything_is_drained_by_reclaim() -> None:
    """A drain lets the next write schedule another before it takes its batch (so a write
    during the take is not missed); one that dies in between leaves items that no drain
    is due for and that no claim brings back: the group stays listed until its last item
    is taken, and reclaim starts its drain. Reading the list loses nothing when a
    reclaim is cut short."""
    scheduled: list[str] = []
    work = _work(scheduled)
    work.add("g", ["a", "b"], "test items")
    redis = get_redis_connection("default")
    redis.delete(work._flag_key("g"))  # the drain's first step, then its worker is killed
    assert redis.sismember(work._waiting_key(), "g")
    assert work.reclaim() == ["g"] and scheduled == ["g", "g"]
    with work.claimed("g") as taken:
        assert sorted(taken) == [b"a", b"b"]
    assert not redis.sismember(work._waiting_key(), "g")  # its last item taken
    redis.delete(work._flag_key("g"))
    assert work.reclaim() == []


def test_groups_waiting_from_before_the_list_existed_are_listed_once_and_drained() -> None:
    """Upgraded from a version that found waiting groups by SCAN: items it added are in
    no list. The first reclaim lists them with one SCAN; later ones do not scan."""
    scheduled: list[str] = []
    work = _work(scheduled)
    redis = get_redis_connection("default")
    redis.sadd(work._items_key("old"), "a")  # what the earlier version's add left
    redis.expire(work._items_key("old"), 60)
    assert work.reclaim() == ["old"] and scheduled == ["old"]
    redis.delete(work._flag_key("old"))
    scans = _scans()
    assert work.reclaim(now=time.time() + 60) == ["old"]  # still waiting: listed for good
    assert _scans() == scans
    with work.claimed("old") as taken:
        assert taken == [b"a"]


def _reclaim_each_minute(work: PendingWork, broker: _Broker, minutes: int, start: float) -> list[int]:
    """The beat's reclaim once a minute after `start` (on a clock run that far ahead) while
    no drain of group g starts: its jobs wait behind a backlog, or are lost. The minutes
    at which reclaim sent one more."""
    assert DRAIN_FLAG_TTL_SECS < 60  # so each minute the flag of the drain last sent is gone
    redis = get_redis_connection("default")
    sent_at = []
    for minute in range(1, minutes + 1):
        redis.delete(work._flag_key("g"))
        sent = len(broker.scheduled)
        work.reclaim(now=start + 60 * minute)
        if len(broker.scheduled) > sent:
            sent_at.append(minute)
    return sent_at


def _backlogged_work() -> tuple[PendingWork, _Broker]:
    broker = _Broker(up=True)
    work = PendingWork(f"test-{uuid.uuid4().hex}", broker, delay_secs=0.0, batch=10, max_age_secs=4 * 3600)
    work.add("g", ["a"], "test items")  # its drain is published, and does not start
    return work, broker


def test_a_drain_that_does_not_start_is_sent_again_ever_less_often() -> None:
    """A queue backlogged past the drain flag's 30 s still holds the drain: one more each
    beat would only deepen the backlog. Reclaim waits twice as long after each it sent,
    up to RESEND_MAX_WAIT_SECS: an hour of it sends 9 drains, not 60."""
    work, broker = _backlogged_work()
    sent_at = _reclaim_each_minute(work, broker, 60, time.time())
    assert sent_at == [1, 2, 4, 8, 16, 26, 36, 46, 56]  # waits of 1, 2, 4, 8 minutes, then 10
    assert broker.scheduled == ["g"] * 10  # the write's, and reclaim's


def test_a_lost_drain_is_sent_again_at_the_latest_after_the_longest_wait() -> None:
    """However long no drain starts, reclaim sends one again each RESEND_MAX_WAIT_SECS:
    a job that was lost, not queued, costs that much delay at most; and its memory of
    what it sent expires."""
    work, broker = _backlogged_work()
    sent_at = _reclaim_each_minute(work, broker, 3 * 60, time.time())
    assert sent_at[-1] > 3 * 60 - RESEND_MAX_WAIT_SECS / 60
    assert max(later - earlier for earlier, later in itertools.pairwise(sent_at)) == RESEND_MAX_WAIT_SECS / 60
    assert 0 < get_redis_connection("default").ttl(work._resent_key("g")) <= 2 * RESEND_MAX_WAIT_SECS
    with work.claimed("g") as taken:  # the last one sent gets through
        assert taken == [b"a"]


def test_a_drain_that_starts_resets_the_wait() -> None:
    """Once a drain runs, the queue moves again: the next drain stuck behind a backlog is
    sent again as soon as the first was, and its waits grow from the start again."""
    work, broker = _backlogged_work()
    start = time.time()
    assert _reclaim_each_minute(work, broker, 20, start) == [1, 2, 4, 8, 16]  # 10 minutes to the next
    with work.claimed("g") as taken:  # the backlog clears
        assert taken == [b"a"]
    work.add("g", ["b"], "test items")  # its drain is published, and does not start
    assert _reclaim_each_minute(work, broker, 8, start + 20 * 60) == [1, 2, 4, 8]


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

"""Work a drain took is not lost with the drain (jobs.pending): its claim outlives a killed
worker only until its lease ends, and then the next drain, or the beat's reclaim, takes it
again. Real Redis; the last test a real search worker."""

from __future__ import annotations

import io
import json
import time
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_redis import get_redis_connection

from chatproject.celery import app
from jobs import search_tasks
from jobs.management.commands import pending as pending_command
from jobs.pending import GroupState, PendingWork
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
    assert work.reclaim() == ["old"]  # still waiting: listed for good
    assert _scans() == scans
    with work.claimed("old") as taken:
        assert taken == [b"a"]


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


def _drain_until_done(work: PendingWork, poison: bytes, lease: float) -> tuple[list[bytes], int, int]:
    """Drain as workers would, one whose batch holds `poison` dying with it (its claims
    kept, never let go); what the others worked, how many drains took work, and died."""
    worked: list[bytes] = []
    dead = []  # their drains never end (collected, a generator would let go of its claims)
    drains = 0
    redis = get_redis_connection("default")
    while redis.exists(work._claims_key("g")) or redis.exists(work._items_key("g")):
        taken = work.claimed("g")
        items = taken.__enter__()
        if not items:  # what is left is under a live lease: wait for it to lapse
            taken.__exit__(None, None, None)
            time.sleep(0.02)
            continue
        drains += 1
        assert drains < 40, "the group never drains"
        if poison in items:
            dead.append(taken)
            time.sleep(lease + 0.05)  # killed: the lease lapses
            continue
        worked += items
        taken.__exit__(None, None, None)
    return worked, drains, len(dead)


@pytest.mark.parametrize("poison", [b"00", b"09", b"15"])  # first, middle, last in a lease's order
def test_an_item_that_kills_its_drains_is_set_aside_and_the_rest_are_worked(settings, caplog, poison) -> None:
    settings.PENDING_LEASE_SECS = 0.2
    work = PendingWork(
        f"test-{uuid.uuid4().hex}", lambda group, countdown: None, delay_secs=0.0, batch=16, max_age_secs=60
    )
    items = [f"{n:02d}" for n in range(16)]
    work.add("g", items, "test items")
    worked, drains, deaths = _drain_until_done(work, poison, 0.2)
    innocent = {item.encode() for item in items} - {poison}
    assert set(worked) == innocent  # every other item, though each shared a dying batch
    redis = get_redis_connection("default")
    assert redis.smembers(work.set_aside_key("g")) == {poison}
    assert poison.decode() in caplog.text and "set aside" in caplog.text
    # Its first drain and one per lapse it is allowed (halving 16 down to 1 takes 4, and
    # 2 more); the drains that did not hold it each worked at least one other item.
    assert deaths == work.max_lapses + 1 == 7
    assert drains - deaths <= len(innocent)
    assert not redis.exists(work._lapses_key("g"))  # nothing left to count


def test_a_drain_that_cannot_hand_its_work_on_did_not_die(settings) -> None:
    """Its claims lapse too, but its items come back whole, however often, never set aside."""
    settings.PENDING_LEASE_SECS = 0.1
    work = PendingWork(
        f"test-{uuid.uuid4().hex}", lambda group, countdown: None, delay_secs=0.0, batch=4, max_age_secs=60
    )
    work.add("g", ["a", "b", "c", "d"], "test items")
    for _ in range(work.max_lapses + 2):
        with pytest.raises(ConnectionError), work.claimed("g") as taken:
            assert sorted(taken) == [b"a", b"b", b"c", b"d"]
            raise ConnectionError("the broker is away")
        time.sleep(0.15)
    with work.claimed("g") as taken:
        assert sorted(taken) == [b"a", b"b", b"c", b"d"]
    assert not get_redis_connection("default").exists(work.set_aside_key("g"))


def test_set_aside_items_are_listed_then_requeued_or_discarded(settings, monkeypatch) -> None:
    """manage.py pending: an operator sees what was set aside, and once whatever killed the
    drains is fixed, requeues it (worked like new, its lapses forgotten), or discards it."""
    settings.PENDING_LEASE_SECS = 0.1
    scheduled: list[str] = []
    work = PendingWork(
        f"test-{uuid.uuid4().hex}",
        lambda group, countdown: scheduled.append(group),
        delay_secs=0.0,
        batch=2,
        max_age_secs=60,
    )
    monkeypatch.setattr(pending_command, "_kinds", lambda: {work.name: work})
    work.add("g", ["ok", "poison"], "test items")
    worked, _, deaths = _drain_until_done(work, b"poison", 0.1)
    assert worked == [b"ok"] and deaths == work.max_lapses + 1
    work.add("h", ["waiting"], "test items")

    listed = json.loads(_manage("pending", "--json"))[work.name]
    assert listed == [
        {"group": "g", "pending": 0, "claimed": 0, "set_aside": ["poison"]},
        {"group": "h", "pending": 1, "claimed": 0, "set_aside": []},
    ]
    assert "set aside: poison" in _manage("pending")

    scheduled.clear()
    assert _manage("pending", "--requeue", work.name, "g").strip() == f"{work.name} g: 1 items requeued"
    assert scheduled == ["g"]  # a drain for it now
    redis = get_redis_connection("default")
    assert not redis.exists(work.set_aside_key("g"))
    assert work.groups()[0] == GroupState("g", pending=1)

    # It still kills its drains: set aside again after as many deaths as the first time (its
    # lapses were forgotten), and this time discarded for good.
    _, _, deaths = _drain_until_done(work, b"poison", 0.1)
    assert deaths == work.max_lapses + 1
    assert redis.smembers(work.set_aside_key("g")) == {b"poison"}
    assert _manage("pending", "--discard", work.name, "g").strip() == f"{work.name} g: 1 items discarded"
    assert work.groups() == [GroupState("h", pending=1)]

    with pytest.raises(CommandError, match="nothing set aside"):
        _manage("pending", "--requeue", work.name, "g")
    with pytest.raises(CommandError, match="no kind of work 'nope'"):
        _manage("pending", "--discard", "nope", "g")


def _manage(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


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

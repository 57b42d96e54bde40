"""An item that kills every drain that takes it (jobs.pending) ends up alone and is set
aside, while the items beside it are worked; `manage.py pending` lists, requeues or
discards what was set aside. Real Redis."""

from __future__ import annotations

import io
import json
import time
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_redis import get_redis_connection

from jobs.management.commands import pending as pending_command
from jobs.pending import GroupState, PendingWork


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

"""search.messages reads matches one of three ways (messaging.search.ways): all of them,
those of the most recent weeks, or the newest messages first. Each way, forced here, must
give the same answers in the same order: by score, the newest RANKED matches by text rank,
then older ones newest first; and never a message the searcher cannot see.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from messaging.models import SEARCH_WEEK_US
from messaging.search import run
from tests.conftest import World, build_team
from tests.search_helpers import index, ok, post, search, set_day

pytestmark = pytest.mark.django_db(databases="__all__")

WAYS = ["all", "weeks", "newest"]


@pytest.fixture(params=WAYS)
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(run, "_cheapest", lambda *args: request.param)
    # Sized from the estimates of a few messages, the first window of weeks would often be
    # the whole span, and no window would be read: a tenth at most.
    share = run._weeks_share
    monkeypatch.setattr(run, "_weeks_share", lambda *args: min(share(*args), 0.1))
    return request.param


def _score_order(api, token: str, query: str, **args) -> list[str]:
    return [m["text"] for m in search(api, token, query, **args)["matches"]]


# Posted oldest first. The highest text rank is the oldest, outside the newest three.
KIWIS = ["kiwi kiwi kiwi kiwi", "kiwi once", "kiwi kiwi twice", "kiwi at last", "kiwi again"]
BY_SCORE = [
    (  # the newest three by text rank (ties newest first), then older ones newest first
        "desc",
        ["kiwi kiwi twice", "kiwi again", "kiwi at last", "kiwi once", "kiwi kiwi kiwi kiwi"],
        ["kiwi kiwi kiwi kiwi", "kiwi kiwi twice", "kiwi again", "kiwi at last", "kiwi once"],
    ),
    (  # the oldest three, least relevant first (ties oldest first), then newer ones oldest first
        "asc",
        ["kiwi once", "kiwi kiwi twice", "kiwi kiwi kiwi kiwi", "kiwi at last", "kiwi again"],
        ["kiwi once", "kiwi at last", "kiwi again", "kiwi kiwi twice", "kiwi kiwi kiwi kiwi"],
    ),
]


@pytest.mark.parametrize(("sort_dir", "three_ranked", "all_ranked"), BY_SCORE)
def test_score_ranks_the_newest_matches_then_older_ones_by_time(
    world: World,
    api,
    monkeypatch: pytest.MonkeyPatch,
    way: str,
    sort_dir: str,
    three_ranked: list[str],
    all_ranked: list[str],
) -> None:
    """And with sort_dir=asc, the oldest matches, then newer ones."""
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    for text in KIWIS:
        post(api, alice, general, text)
    index(acme)
    monkeypatch.setattr(run, "RANKED", 3)
    assert _score_order(api, alice, "kiwi", sort_dir=sort_dir) == three_ranked
    pages = [_score_order(api, alice, "kiwi", sort_dir=sort_dir, count=2, page=n) for n in (1, 2, 3)]
    assert pages == [three_ranked[0:2], three_ranked[2:4], three_ranked[4:]]
    monkeypatch.setattr(run, "RANKED", 10)  # all five ranked: text rank decides
    assert _score_order(api, alice, "kiwi", sort_dir=sort_dir) == all_ranked


def test_modifiers_give_the_same_answers(world: World, api, way: str) -> None:
    """in:, from:, during: and has: over messages weeks apart, read a page of two at a time
    (small pages let the newest-first way answer them itself)."""
    acme, alice, bob = world.acme, world.acme["alice"].token, world.acme["bob"].token
    general, secret = acme.channels["general"], acme.channels["secret"]
    posts = [  # (text, author, channel, day)
        ("melon 1", alice, general, datetime(2024, 1, 10, 12, tzinfo=UTC)),
        ("melon 2", bob, secret, datetime(2024, 1, 17, 12, tzinfo=UTC)),
        ("melon 3 https://example.com/3", bob, general, datetime(2024, 2, 7, 12, tzinfo=UTC)),
        ("melon 4", alice, general, datetime(2024, 2, 14, 12, tzinfo=UTC)),
        ("melon 5", alice, secret, datetime(2024, 2, 21, 12, tzinfo=UTC)),
        ("melon 6", bob, general, datetime(2024, 3, 6, 12, tzinfo=UTC)),
        ("melon 7 https://example.com/7", alice, general, datetime(2024, 3, 13, 12, tzinfo=UTC)),
    ]
    for text, author, channel, day in posts:
        ts = post(api, author, channel, text)
        if text == "melon 4":
            ok(api("reactions.add", bob, channel=channel, timestamp=ts, name="eyes"))
        set_day(acme, ts, day)
    index(acme)

    def paged(query: str, **args) -> list[str]:
        found = [search(api, alice, query, sort="timestamp", count=2, page=n, **args) for n in (1, 2, 3)]
        return [m["text"].split()[1] for page in found for m in page["matches"]]

    assert paged("melon in:#general") == ["7", "6", "4", "3", "1"]
    assert paged("melon in:#secret from:@alice") == ["5"]
    assert paged("melon from:@bob") == ["6", "3", "2"]
    assert paged("melon from:@bob", sort_dir="asc") == ["2", "3", "6"]
    assert paged("melon during:2024-02") == ["5", "4", "3"]
    assert paged("melon during:2024-02", sort_dir="asc") == ["3", "4", "5"]
    assert paged("melon has:link") == ["7", "3"]
    assert paged("melon has:reaction") == ["4"]
    assert paged("melon has:link during:2024-03 in:#general from:@alice") == ["7"]
    # An excluded partial word ("example.com", "example.com/3": the links' host and url).
    assert paged("melon -exam*") == ["6", "5", "4", "2", "1"]
    assert paged("melon -exam* from:@bob") == ["6", "2"]
    assert paged("melon -exam*", sort_dir="asc") == ["1", "2", "4", "5", "6"]


def test_never_shows_what_the_searcher_cannot_see(world: World, api, way: str) -> None:
    acme, alice, carol = world.acme, world.acme["alice"].token, world.acme["carol"].token
    for n in range(6):
        post(api, alice, acme.channels["general" if n % 2 else "secret"], f"common word {n}")
    index(acme)
    expected = ["common word 5", "common word 3", "common word 1"]
    assert _score_order(api, carol, "common") == expected
    assert _score_order(api, carol, "common", sort="timestamp") == expected
    assert _score_order(api, carol, "common", count=2, page=2) == expected[2:]
    assert len(_score_order(api, alice, "common")) == 6


def test_a_small_window_of_weeks_widens_to_older_matches(
    world: World, api, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """The first window of weeks is sized from estimates; when it holds too few matches
    (here: sized for a thousandth of them), wider ones are read, up to every match."""
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    days = {
        "apricot in 2023": datetime(2023, 5, 1, 12, tzinfo=UTC),
        "apricot early 2024": datetime(2024, 1, 10, 12, tzinfo=UTC),
        "apricot apricot mid 2024": datetime(2024, 6, 10, 12, tzinfo=UTC),
        "apricot late 2024": datetime(2024, 11, 20, 12, tzinfo=UTC),
    }
    for text, when in days.items():
        set_day(acme, post(api, alice, general, text), when)
    post(api, alice, general, "apricot today")
    post(api, alice, general, "nothing else today")
    index(acme)
    monkeypatch.setattr(run, "WEEKS_MARGIN", 0.001)
    monkeypatch.setattr(run, "RANKED", 3)
    found = search(api, alice, "apricot")
    texts = [m["text"] for m in found["matches"]]
    ranked = ["apricot apricot mid 2024", "apricot today", "apricot late 2024"]
    assert texts == [*ranked, "apricot early 2024", "apricot in 2023"]
    assert found["total"] >= 5
    oldest_first = search(api, alice, "apricot", sort="timestamp", sort_dir="asc", count=2)
    assert [m["text"] for m in oldest_first["matches"]] == ["apricot in 2023", "apricot early 2024"]


def test_a_week_in_the_index_is_no_word_anyone_can_search(world: World, api) -> None:
    acme, alice = world.acme, world.acme["alice"].token
    when = datetime(2024, 3, 6, 12, tzinfo=UTC)  # mid-week: the label is the one computed here
    set_day(acme, post(api, alice, acme.channels["general"], "plain words"), when)
    index(acme)
    week = int(when.timestamp()) * 1_000_000 // SEARCH_WEEK_US
    label = f"{acme.team.id} week {week}"  # as the index holds it (migration 0006)
    for query in ("week", str(week), label, f'"{label}"', f"week{week}"):
        assert search(api, alice, query)["total"] == 0, query
    assert search(api, alice, "plain")["total"] == 1


def _weeks_way(monkeypatch: pytest.MonkeyPatch, share: float) -> None:
    """Force reading recent weeks, from a first window of `share` of the time span, with
    the planner expecting 1,000 matches (as stale statistics can): the total must come
    from what was read, not from that."""
    estimate = run._estimate
    monkeypatch.setattr(run, "_estimate", lambda *args: replace(estimate(*args), narrowed=1000, matches=1000))
    monkeypatch.setattr(run, "_cheapest", lambda *args: "weeks")
    monkeypatch.setattr(run, "_weeks_share", lambda *args: share)


def test_total_is_exact_when_the_weeks_read_held_every_match(
    world: World, api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window of half the span holds every week of it when the matches are all in one
    week: every match was read, so the total is their count and the last page is full."""
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    for n in range(7):
        set_day(acme, post(api, alice, general, f"fig {n}"), datetime(2024, 3, 6, 12, n, tzinfo=UTC))
    index(acme)
    _weeks_way(monkeypatch, 0.5)
    first = search(api, alice, "fig", sort="timestamp", count=3)
    assert first["total"] == 7
    assert first["paging"]["pages"] == 3
    pages = [search(api, alice, "fig", sort="timestamp", count=3, page=n)["matches"] for n in (1, 2, 3)]
    assert [[m["text"] for m in page] for page in pages] == [
        ["fig 6", "fig 5", "fig 4"],
        ["fig 3", "fig 2", "fig 1"],
        ["fig 0"],
    ]


def test_total_is_extrapolated_from_the_weeks_read(
    world: World, api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two matches a week for ten weeks (weeks start on Thursdays: the epoch's weekday). A
    window of a fifth of the 64 days reads the last three weeks, the first one whole: 6
    matches in 19.5 days, so about 20 in all."""
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    for week in range(10):
        for day in (4, 5):  # a Monday and a Tuesday of March 2024, then of each next week
            when = datetime(2024, 3, day, 12, tzinfo=UTC) + timedelta(weeks=week)
            set_day(acme, post(api, alice, general, f"plum {week} {day}"), when)
    index(acme)
    _weeks_way(monkeypatch, 0.2)
    found = search(api, alice, "plum", sort="timestamp", count=4)
    assert [m["text"] for m in found["matches"]] == ["plum 9 5", "plum 9 4", "plum 8 5", "plum 8 4"]
    assert 18 <= found["total"] <= 22


def test_an_empty_window_of_weeks_widens_step_by_step(
    world: World, api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A term common long ago and not lately: windows widen by a fixed factor until one
    holds enough, instead of reading the whole span (which holds more than the cap, so the
    newest-first way and then every match would be read after it)."""
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    when = {f"pear 2023 {n}": datetime(2023, 1, 4, 12, tzinfo=UTC) + timedelta(weeks=n) for n in range(4)}
    when |= {f"pear 2025 {n}": datetime(2025, 3, 5, 12, tzinfo=UTC) + timedelta(weeks=n) for n in range(6)}
    when["nothing new"] = datetime(2025, 12, 31, 12, tzinfo=UTC)
    for text, day in when.items():
        set_day(acme, post(api, alice, general, text), day)
    index(acme)
    _weeks_way(monkeypatch, 0.01)  # ~11 days, then ~87, then ~700: back to early 2024
    monkeypatch.setattr(run, "FULL_CAP", 8)
    with CaptureQueriesContext(connections[acme.team.shard]) as queries:
        found = search(api, alice, "pear", sort="timestamp", count=3)
    assert [m["text"] for m in found["matches"]] == ["pear 2025 5", "pear 2025 4", "pear 2025 3"]
    reads = [q["sql"] for q in queries if "hits AS MATERIALIZED" in q["sql"] or "candidates" in q["sql"]]
    assert len(reads) == 3
    assert all("chat_search_weeks" in sql for sql in reads)


def test_teams_sharing_a_shard_and_a_week_see_only_their_own(
    world: World, api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weeks in the index are per team: two teams of one shard saying the same word in
    the same week each find, and count, only their own messages."""
    acme, alice = world.acme, world.acme["alice"].token
    initech = build_team("initech", "erin", acme.team.shard, [])
    erin = initech["erin"].token
    week = datetime(2024, 3, 4, 12, tzinfo=UTC)  # a Monday: the week runs Thursday to Wednesday
    for n in range(3):
        set_day(acme, post(api, alice, acme.channels["general"], f"guava {n}"), week + timedelta(hours=n))
    set_day(acme, post(api, alice, acme.channels["general"], "guava before"), week - timedelta(weeks=3))
    for n in range(5):
        when = week + timedelta(hours=n)
        set_day(initech, post(api, erin, initech.channels["general"], f"guava initech {n}"), when)
    index(acme, initech)
    _weeks_way(monkeypatch, 0.1)
    mine = search(api, alice, "guava", sort="timestamp")
    assert [m["text"] for m in mine["matches"]] == ["guava 2", "guava 1", "guava 0", "guava before"]
    assert mine["total"] == 4
    theirs = search(api, erin, "guava", sort="timestamp", sort_dir="asc")
    assert [m["text"] for m in theirs["matches"]] == [f"guava initech {n}" for n in range(5)]
    assert theirs["total"] == 5
    two = search(api, alice, "guava", sort="timestamp", count=2)  # a window of acme's last week
    assert [m["text"] for m in two["matches"]] == ["guava 2", "guava 1"]
    # Its 3 matches scaled to acme's span: ~14 (initech's 5 counted too would make ~37).
    assert 4 <= two["total"] <= 20

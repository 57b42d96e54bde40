"""Running a `SearchQuery` on the caller's shard, only over what the searcher can see
(`messaging.search.scope`), only over live messages, in the order of `sql.Page`: by time,
or by score (the newest RANKED matches by text rank, then older ones newest first).

Three ways to find the matches (messaging.search.ways), the cheapest expected chosen per
query from the planner's row estimates (EXPLAIN, not run), so that no search reads much
more than it returns:

- all matches: the search index gives every match, each is read, counted and ranked.
  Exact; one heap read per match, so for terms expected to match few (or as a fallback).
- recent weeks: the search index also holds each message's week, so it gives the matches
  of the newest few weeks alone; only they are read. For sorting a term of ~1% of messages
  by score: ranking its newest 1,000 matches reads ~2,000 rows instead of ~10,000.
- newest first: the messages in scope read newest first (through the (team_id, ts, id)
  index, or (user_id, ts) for from:) and filtered, until enough matches for the page.
  A few rows per match of a common term; never more than WINDOW_ROWS rows.

`total` is exact when every match was read: always by all matches, and by recent weeks when
its window's weeks held the scope's whole time span. Otherwise (a frequent term, whose older
matches are never read) it is an estimate, never below the matches seen: by recent weeks,
the window's matches scaled to the whole span (ways.recent_weeks); newest first, the
planner's estimate of the matches. page_count derives from it, so a last page offered by an
estimate may be short or empty; never when it is exact.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from django.db import connections
from django.db.backends.utils import CursorWrapper

from chatproject.dbrouter import current_shard
from messaging.search import ways
from messaging.search.query import SearchQuery
from messaging.search.scope import Scope, ScopeChannel, search_scope
from messaging.search.sql import Page, SearchSql, compile_search
from teams.auth import Caller

MAX_PAGE_SIZE = 100  # Slack's own limit for `count`
MAX_PAGE = 100  # Slack's own limit for `page`
# Sorting by score ranks this many of the newest matches: 50 pages of 20. Months of a
# term in 1% of a busy team's messages; all of an uncommon term's.
RANKED = 1_000
FULL_CAP = 20_000  # reading 20k matches is ~30 ms warm; a term this common is read otherwise
DENSE_ESTIMATE = 50_000  # past this estimate, skip trying to read all matches
EXACT_UNDER = 2_000  # up to this estimate, read all matches (~3 ms) for an exact total
WINDOW_ROWS = 100_000  # newest messages a newest-first search reads at most (~60 ms warm)
# Costs of the ways, in reads of one match through the search index's bitmap (a heap row in
# a random page), measured at 1M messages:
NEWEST_ROW_COST = 0.4  # a message read newest first (index order, pages one after another)
WEEKS_ENTRY_COST = 0.25  # an index entry of the words, scanned to find those of recent weeks
WEEKS_FIXED_COST = 250  # the time span lookup: one more round trip
WEEKS_MARGIN = 1.25  # the first window of weeks is sized for this many times the wanted matches
WEEKS_WIDEN = 2  # a window holding too few is widened at least this much
# A window holding no match at all (a term common long ago, not lately) tells nothing of how
# far back its matches are: it is widened this much, step by step. Jumping to the whole span
# instead reads every match (up to FULL_CAP; past that, the newest-first way and then every
# match are read after it): several costly reads in one search. By eights, a first window of
# 1/512 of the span reaches all of it in 3 more; each costs an index scan of the words'
# entries and reads only its own weeks' matches, and the first holding enough ends the
# search. Reading newest first would be the worst way for such a term: its newest messages
# are the ones without it.
WEEKS_EMPTY_WIDEN = 8


@dataclass(frozen=True)
class Hit:
    """One matching message, with what a search result shows of it."""

    id: int
    channel: ScopeChannel
    ts: int
    thread_ts: int | None
    user_id: int | None
    bot_id: int | None
    username: str  # the author's handle, or a bot message's own username
    text: str
    attachments: Any


@dataclass(frozen=True)
class SearchResult:
    total: int  # exact, or an estimate when not every match was read (see the module's doc)
    hits: list[Hit]


EMPTY = SearchResult(0, [])


def search_messages(
    caller: Caller,
    query: SearchQuery,
    *,
    sort: str = "score",
    descending: bool = True,
    count: int = 20,
    page: int = 1,
) -> SearchResult:
    """One page of the messages matching `query` that the caller may see; runs on_shard."""
    if query.matches_nothing:
        return EMPTY
    scope = search_scope(caller, query)
    if scope is None:
        return EMPTY
    by_score = sort == "score" and bool(query.words or query.prefixes or query.phrases)
    sql = compile_search(caller.team_id, scope, query, by_score)
    count = max(1, min(count, MAX_PAGE_SIZE))
    wanted = Page(by_score, descending, count, (max(1, min(page, MAX_PAGE)) - 1) * count, RANKED)
    with connections[current_shard()].cursor() as cursor:
        estimate = _estimate(cursor, sql)
        way = _cheapest(estimate, wanted, sql)
        if way == "all":
            found = ways.all_matches(cursor, sql, wanted, cap=FULL_CAP)
            if found is not None:
                return _result(scope, found.count, found.rows)
        elif way == "weeks":
            weeks = ways.recent_weeks(
                cursor,
                sql,
                wanted,
                share=_weeks_share(estimate, wanted),
                margin=WEEKS_MARGIN,
                widen=WEEKS_WIDEN,
                widen_empty=WEEKS_EMPTY_WIDEN,
                cap=FULL_CAP,
            )
            if weeks is not None:
                return _result(scope, weeks.total, weeks.rows)
        newest = ways.newest_matches(cursor, sql, wanted, window=WINDOW_ROWS)
        if newest is not None:
            return _result(scope, max(newest.count, estimate.matches), newest.rows)
        everything = ways.all_matches(cursor, sql, wanted, cap=None)
        assert everything is not None  # no cap, so never "too many"
        return _result(scope, everything.count, everything.rows)


@dataclass(frozen=True)
class _Estimate:
    """The planner's row estimates for one search."""

    scope: int  # messages in the searched conversations, dates and authors
    narrowed: int  # of those, what the search index narrows to: reading all costs this
    matches: int  # of those, the ones passing the row filters too (has:, is:)

    def rows_to_read_newest_first(self, wanted: int) -> float:
        return wanted * self.scope / max(self.matches, 1)


Way = Literal["all", "weeks", "newest"]


def _cheapest(estimate: _Estimate, page: Page, sql: SearchSql) -> Way:
    """The way expected to read least."""
    if estimate.narrowed <= EXACT_UNDER:
        return "all"
    costs: dict[Way, float] = {"newest": math.inf, "all": math.inf, "weeks": math.inf}
    rows = estimate.rows_to_read_newest_first(page.wanted)
    if rows <= WINDOW_ROWS:
        costs["newest"] = rows * NEWEST_ROW_COST
    if estimate.narrowed <= DENSE_ESTIMATE:
        costs["all"] = estimate.narrowed
    share = _weeks_share(estimate, page)
    if sql.weeks_apply and share < 1:
        costs["weeks"] = WEEKS_FIXED_COST + estimate.narrowed * (WEEKS_ENTRY_COST + share)
    cheapest = min(costs, key=costs.__getitem__)
    return cheapest if costs[cheapest] < math.inf else "newest"


def _weeks_share(estimate: _Estimate, page: Page) -> float:
    """The share of the scope's time span expected to hold the matches a page wants."""
    return WEEKS_MARGIN * page.wanted / max(estimate.matches, 1)


def _estimate(cursor: CursorWrapper, sql: SearchSql) -> _Estimate:
    """The row estimates, each from an EXPLAIN (planned, not run: ~0.5 ms each). Not one
    EXPLAIN of a UNION: on a big table its branches may be planned in parallel, and a
    parallel branch's estimate is per worker. Without has: or is:, the matches are what the
    index narrows to (a tombstone has no words once its job ran): one EXPLAIN fewer."""
    parts = [sql.scope, f"{sql.scope} AND {sql.indexed}"]
    if sql.filters_beyond_live:
        parts.append(f"{sql.scope} AND {sql.match}")
    rows = []
    for where in parts:
        cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM messaging_message m WHERE {where}", sql.params)
        plan = cursor.fetchone()[0]
        rows.append(int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"]))
    return _Estimate(rows[0], rows[1], rows[-1])


def _result(scope: Scope, total: int, rows: list[ways.Row]) -> SearchResult:
    hits = [
        Hit(
            id=row[0],
            channel=scope.channels[row[1]],
            ts=row[2],
            thread_ts=row[3],
            user_id=row[4],
            bot_id=row[5],
            username=row[6] or row[9] or "",
            text=row[7],
            attachments=row[8],
        )
        for row in rows
    ]
    return SearchResult(total, hits)

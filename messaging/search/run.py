"""Running a `SearchQuery` on the caller's shard, only over what the searcher can see
(`messaging.search.scope`), only over live messages.

Two ways to find the matches, chosen per query so that no search reads much more than it
returns:

- all matches: the GIN index gives every match, each is read, counted and ranked, and the
  page is cut from them. Exact; costs one heap read per match, so it is used while the
  planner expects at most DENSE_ESTIMATE matches and stops past FULL_CAP of them.
- newest matches: the messages in scope are read newest first (through the (team_id, ts,
  id) index, or (user_id, ts) for from:) and filtered, until enough matches for the page
  (sort by time) or CANDIDATES of them (sort by score, which then ranks the most recent
  uses of a common term, as Slack weighs recency). Costs a few rows per match of a
  common term. Never reads more than WINDOW_ROWS messages: a term the planner thought
  common but is not gets the first way instead.

The planner's row estimates (EXPLAIN, not run) choose between them. `total` is exact on
the first way; on the second it is the planner's estimate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.backends.utils import CursorWrapper

from chatproject.dbrouter import current_shard
from messaging.search.index import SEARCH_CONFIG
from messaging.search.query import SearchQuery
from messaging.search.scope import Scope, ScopeChannel, search_scope
from teams.auth import Caller

MAX_PAGE_SIZE = 100  # Slack's own limit for `count`
MAX_PAGE = 100  # Slack's own limit for `page`
FULL_CAP = 20_000  # reading 20k matches is ~30 ms warm; a term this common is read newest first
DENSE_ESTIMATE = 50_000  # past this estimate, skip trying to read all matches
CANDIDATES = 1_000  # newest matches ranked when sorting a common term by score
WINDOW_ROWS = 100_000  # newest messages a newest-first search reads at most (~60 ms warm)
# A message read in index order, in pages read one after another, costs about this much of
# a match read through the search index's bitmap, in random pages (measured at 1M).
NEWEST_ROW_COST = 0.4
_HAS_LINK = r"https?://"
_COLUMNS = "m.id, m.channel_id, m.ts, m.thread_ts, m.user_id, m.bot_id, m.username, m.text, m.attachments"
# What the newest-first window carries: every column a match condition reads.
_WINDOW_COLUMNS = "m.id, m.channel_id, m.ts, m.thread_ts, m.user_id, m.text, m.is_deleted, m.search_vector"


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
    total: int  # exact, or the planner's estimate when a common term was read newest first
    hits: list[Hit]


EMPTY = SearchResult(0, [])


@dataclass(frozen=True)
class _Sql:
    """The query as SQL fragments over `messaging_message m`."""

    scope: str  # team, channels, dates, authors: what a newest-first window is read from
    indexed: str  # the words: what the search index narrows the scope to before rows are read
    filters: str  # the rest, checked on each row read: live, has:, is:
    params: dict[str, Any]
    rank: str  # the score of a match; a constant when not sorting by score
    # The scope again, for reading every match through the search index: the same, except
    # that the channels the searcher can see are only checked on each row read. As an index
    # condition the planner would AND in a bitmap of most of the team (~30 ms at 1M) to
    # save few reads; and only here, since hidden this way it is also badly estimated.
    scope_on_rows: str

    @property
    def match(self) -> str:
        return f"{self.indexed} AND {self.filters}"


@dataclass(frozen=True)
class _Page:
    by_score: bool
    descending: bool
    limit: int
    offset: int

    def order(self, alias: str) -> str:
        direction = "DESC" if self.descending else "ASC"
        keys = [f"{alias}.ts {direction}", f"{alias}.id {direction}"]
        return ", ".join([f"{alias}.rank {direction}", *keys] if self.by_score else keys)


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
    by_score = sort == "score" and bool(query.words or query.phrases)
    sql = _compile(caller.team_id, scope, query, by_score)
    count = max(1, min(count, MAX_PAGE_SIZE))
    wanted = _Page(by_score, descending, count, (max(1, min(page, MAX_PAGE)) - 1) * count)
    with connections[current_shard()].cursor() as cursor:
        estimate = _estimate(cursor, sql)
        if _read_all_first(estimate, wanted):
            found = _all_matches(cursor, sql, wanted, cap=FULL_CAP)
            if found is not None:
                return _result(scope, *found)
        newest = _newest_matches(cursor, sql, wanted)
        if newest is not None:
            seen, rows = newest
            return _result(scope, max(seen, estimate.matches), rows)
        everything = _all_matches(cursor, sql, wanted, cap=None)
        assert everything is not None  # no cap, so never "too many"
        return _result(scope, *everything)


@dataclass(frozen=True)
class _Estimate:
    """The planner's row estimates for one search."""

    scope: int  # messages in the searched conversations, dates and authors
    narrowed: int  # of those, what the search index narrows to: reading all costs this
    matches: int  # of those, the ones passing the row filters too (has:, is:)

    def rows_to_read_newest_first(self, wanted: int) -> float:
        return wanted * self.scope / max(self.matches, 1)


def _read_all_first(estimate: _Estimate, page: _Page) -> bool:
    """Whether reading every match is expected to be cheaper than reading newest first."""
    if estimate.narrowed > DENSE_ESTIMATE:
        return False
    newest = estimate.rows_to_read_newest_first(_wanted(page))
    return newest > WINDOW_ROWS or estimate.narrowed <= NEWEST_ROW_COST * newest


def _wanted(page: _Page) -> int:
    """How many of the newest matches the newest-first way needs for this page."""
    return max(page.offset + page.limit, CANDIDATES if page.by_score else 0)


def tsquery_sql(query: SearchQuery, params: dict[str, Any]) -> str | None:
    """The query's words as one tsquery expression (constant-folded by the planner)."""
    parts: list[str] = []
    if query.words:
        params["words"] = " ".join(query.words)
        parts.append(f"plainto_tsquery('{SEARCH_CONFIG}', %(words)s)")
    for n, phrase in enumerate(query.phrases):
        params[f"phrase{n}"] = phrase
        parts.append(f"phraseto_tsquery('{SEARCH_CONFIG}', %(phrase{n})s)")
    for n, excluded in enumerate(query.excluded):
        params[f"excluded{n}"] = excluded
        parts.append(f"!! phraseto_tsquery('{SEARCH_CONFIG}', %(excluded{n})s)")
    return " && ".join(parts) if parts else None


def _compile(team_id: int, scope: Scope, query: SearchQuery, by_score: bool) -> _Sql:
    params: dict[str, Any] = {"team_id": team_id, "channels": sorted(scope.channels)}
    scope_sql = ["m.team_id = %(team_id)s"]
    if scope.since_ts is not None:
        params["since"] = scope.since_ts
        scope_sql.append("m.ts >= %(since)s")
    if scope.until_ts is not None:
        params["until"] = scope.until_ts
        scope_sql.append("m.ts < %(until)s")
    if scope.authors is not None:
        # One author as an equality: the (user_id, ts) index then gives their messages in
        # time order, for a newest-first read (= ANY gives them in no order).
        if len(scope.authors) == 1:
            params["author"] = scope.authors[0]
            scope_sql.append("m.user_id = %(author)s")
        else:
            params["authors"] = scope.authors
            scope_sql.append("m.user_id = ANY(%(authors)s)")
    tsquery = tsquery_sql(query, params)
    indexed = f"m.search_vector @@ ({tsquery})" if tsquery is not None else "true"
    # A tombstone loses its vector only when its indexing job runs: is_deleted decides.
    filters = ["NOT m.is_deleted"]
    if "link" in query.has:
        params["link"] = _HAS_LINK
        filters.append("m.text ~* %(link)s")
    if "reaction" in query.has:
        filters.append("EXISTS (SELECT 1 FROM messaging_reaction r WHERE r.message_id = m.id)")
    if "pin" in query.has:
        filters.append("EXISTS (SELECT 1 FROM messaging_pin p WHERE p.message_id = m.id)")
    if query.is_thread:
        filters.append("m.thread_ts IS NOT NULL")
    rank = f"ts_rank(m.search_vector, ({tsquery}))" if by_score and tsquery else "0::real"
    channels = "m.channel_id = ANY(%(channels)s)"
    # IS TRUE: the same test, but not one an index can answer (see _Sql.scope_on_rows).
    on_rows = channels if scope.narrowed else f"({channels}) IS TRUE"
    return _Sql(
        " AND ".join([*scope_sql, channels]),
        indexed,
        " AND ".join(filters),
        params,
        rank,
        " AND ".join([*scope_sql, on_rows]),
    )


def _estimate(cursor: CursorWrapper, sql: _Sql) -> _Estimate:
    """Three row estimates, each from an EXPLAIN (planned, not run: ~0.3 ms each). Not one
    EXPLAIN of a UNION: on a big table its branches may be planned in parallel, and a
    parallel branch's estimate is per worker."""
    parts = [sql.scope, f"{sql.scope} AND {sql.indexed}", f"{sql.scope} AND {sql.match}"]
    rows = []
    for where in parts:
        cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM messaging_message m WHERE {where}", sql.params)
        plan = cursor.fetchone()[0]
        rows.append(int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"]))
    return _Estimate(*rows)


_ALL_MATCHES = """
WITH hits AS MATERIALIZED (
    SELECT m.id, m.ts, {rank} AS rank FROM messaging_message m WHERE {scope} AND {match} LIMIT {cap}
)
SELECT t.total, {columns}, u.name
  FROM (SELECT count(*) AS total FROM hits) AS t
  LEFT JOIN LATERAL (
      SELECT * FROM hits h WHERE t.total <= %(cap)s ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s
  ) AS h ON true
  LEFT JOIN messaging_message m ON m.id = h.id
  LEFT JOIN teams_member u ON u.id = m.user_id
 ORDER BY {order}
"""


def _all_matches(
    cursor: CursorWrapper, sql: _Sql, page: _Page, *, cap: int | None
) -> tuple[int, list[tuple[Any, ...]]] | None:
    """(total, page rows) from every match; None when more than `cap` match."""
    statement = _ALL_MATCHES.format(
        rank=sql.rank,
        scope=sql.scope_on_rows,
        match=sql.match,
        cap="ALL" if cap is None else cap + 1,
        columns=_COLUMNS,
        order=page.order("h"),
    )
    limits = {"cap": cap if cap is not None else 2**62, "limit": page.limit, "offset": page.offset}
    cursor.execute(statement, {**sql.params, **limits})
    rows = cursor.fetchall()
    total = int(rows[0][0])
    if cap is not None and total > cap:
        return None
    return total, [row[1:] for row in rows if row[1] is not None]


_NEWEST_MATCHES = """
WITH candidates AS MATERIALIZED (
    SELECT m.id, m.ts, {rank} AS rank
      FROM (SELECT {window_columns} FROM messaging_message m
             WHERE {scope} ORDER BY m.ts {direction}, m.id {direction} LIMIT %(window)s) AS m
     WHERE {match}
     ORDER BY m.ts {direction}, m.id {direction}
     LIMIT %(candidates)s
)
SELECT (SELECT count(*) FROM candidates), {columns}, u.name
  FROM (SELECT * FROM candidates c ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s) AS c
  JOIN messaging_message m ON m.id = c.id
  LEFT JOIN teams_member u ON u.id = m.user_id
 ORDER BY {order}
"""


def _newest_matches(
    cursor: CursorWrapper, sql: _Sql, page: _Page
) -> tuple[int, list[tuple[Any, ...]]] | None:
    """(matches seen, page rows) from the newest (or oldest) matches; None when the window
    holds fewer than the page needs."""
    direction = "DESC" if page.descending else "ASC"
    wanted = _wanted(page)
    statement = _NEWEST_MATCHES.format(
        window_columns=_WINDOW_COLUMNS,
        rank=sql.rank,
        scope=sql.scope,
        match=sql.match,
        direction=direction,
        columns=_COLUMNS,
        order=page.order("c"),
    )
    limits = {"window": WINDOW_ROWS, "candidates": wanted, "limit": page.limit, "offset": page.offset}
    with transaction.atomic(using=cursor.db.alias):
        # The window must come off an index in time order, to stop as soon as there are
        # enough matches. Expecting fewer rows in scope than the window holds, the planner
        # would rather read and sort them all (~70 ms for a 100k-message team).
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(statement, {**sql.params, **limits})
        rows = cursor.fetchall()
    seen = int(rows[0][0]) if rows else 0
    if seen < wanted:
        return None
    return seen, [row[1:] for row in rows]


def _result(scope: Scope, total: int, rows: list[tuple[Any, ...]]) -> SearchResult:
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

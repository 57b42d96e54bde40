"""The ways of reading a search's matches (messaging.search.run chooses one per query). Each
returns how many matches it counted and the rows of the page (`Found`, `Weeks`), in the
same order (sql.Page), so which one runs never changes an answer.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.db import transaction
from django.db.backends.utils import CursorWrapper

from messaging.models import SEARCH_WEEK_US
from messaging.search.sql import ENTRIES, Page, SearchSql

COLUMNS = "m.id, m.channel_id, m.ts, m.thread_ts, m.user_id, m.bot_id, m.username, m.text, m.attachments"
# What the newest-first window carries: every column a match condition reads (the text and
# attachments: a partial word is rechecked against the indexed text, sql._prefix_recheck).
_WINDOW_COLUMNS = (
    "m.id, m.channel_id, m.ts, m.thread_ts, m.user_id, m.text, m.attachments, m.is_deleted, m.subtype,"
    " m.search_vector"
)

Row = tuple[Any, ...]  # the columns of COLUMNS, then the author's handle


class Found(NamedTuple):
    count: int  # matches counted
    rows: list[Row]  # the page


class Weeks(NamedTuple):
    total: int  # how many match: counted when every match was read, else extrapolated
    rows: list[Row]  # the page


_ALL_MATCHES = """
WITH hits AS MATERIALIZED (
    SELECT m.id, m.ts, {rank} AS rank FROM messaging_message m WHERE {where} LIMIT {cap}
)
SELECT t.total, {columns}, u.name
  FROM (SELECT count(*) AS total FROM hits) AS t
  LEFT JOIN LATERAL ({page}) AS h ON true
  LEFT JOIN messaging_message m ON m.id = h.id
  LEFT JOIN teams_member u ON u.id = m.user_id
 ORDER BY {order}
"""

# One of the team's weeks from since_ts to until_ts (ANDed with the words: the search index
# answers both).
_IN_WEEKS = f"{ENTRIES} @@ chat_search_weeks(%(team_id)s, %(weeks_since)s, %(weeks_until)s)"


def all_matches(
    cursor: CursorWrapper,
    sql: SearchSql,
    page: Page,
    *,
    cap: int | None,
    weeks: tuple[int, int] | None = None,
) -> Found | None:
    """Every match (of the weeks holding `weeks`, a ts range, if given) through the search
    index: (how many, page rows). None when more than `cap` match."""
    where = f"{sql.scope_on_rows} AND {sql.match}"
    limits = {"cap": cap if cap is not None else 2**62, "limit": page.limit, "offset": page.offset}
    params = {**sql.params, **limits}
    if weeks is not None:
        where += f" AND {_IN_WEEKS}"
        params.update(weeks_since=weeks[0], weeks_until=weeks[1])
    statement = _ALL_MATCHES.format(
        rank=sql.rank,
        where=where,
        cap="ALL" if cap is None else cap + 1,
        columns=COLUMNS,
        page=page.cut("hits", "WHERE t.total <= %(cap)s"),
        order=page.order("h"),
    )
    cursor.execute(statement, params)
    rows = cursor.fetchall()
    total = int(rows[0][0])
    if cap is not None and total > cap:
        return None
    return Found(total, [row[1:] for row in rows if row[1] is not None])


_SPAN = """
SELECT (SELECT m.ts FROM messaging_message m WHERE {span} ORDER BY m.ts LIMIT 1),
       (SELECT m.ts FROM messaging_message m WHERE {span} ORDER BY m.ts DESC LIMIT 1)
"""


def recent_weeks(
    cursor: CursorWrapper,
    sql: SearchSql,
    page: Page,
    *,
    share: float,
    margin: float,
    widen: float,
    widen_empty: float,
    cap: int,
) -> Weeks | None:
    """The newest (oldest, ascending) matches from the weeks that hold them, read through
    the search index without reading older matches. None when a window holds more than
    `cap` matches.

    The first window is `share` of the team's time span (two index probes), sized by the
    caller from estimates to hold `margin` times the page's wanted matches. One holding
    too few is read again, sized from the matches it did hold (at least `widen` times
    larger; with none, `widen_empty` times: see run.WEEKS_EMPTY_WIDEN): a window reaching
    the span's far end reads every match (also at most `cap`: the estimates may be stale).

    The total is exact when the window's weeks held the whole span: every match was read.
    Otherwise it is extrapolated from the window, its matches times span / the time its
    weeks hold (never fewer than it held): the planner's estimate of the term, which the
    window was sized from, is often far off (stale or sampled statistics), while the
    window counts this term's own recent density. The last pages it offers may still be
    short or empty.
    """
    cursor.execute(_SPAN.format(span=sql.span), sql.params)
    oldest, newest = cursor.fetchone()
    if oldest is None:
        return Weeks(total=0, rows=[])
    while share < 1:
        reach = int((newest - oldest) * share)
        weeks = (newest - reach, newest) if page.descending else (oldest, oldest + reach)
        found = all_matches(cursor, sql, page, cap=cap, weeks=weeks)
        if found is None:
            return None
        held = _time_held(weeks, oldest, newest)
        if held is None:
            return Weeks(total=found.count, rows=found.rows)
        if found.count >= page.wanted:
            total = max(found.count, round(found.count * (newest - oldest) / max(held, 1)))
            return Weeks(total=total, rows=found.rows)
        share *= max(widen, margin * page.wanted / found.count) if found.count else widen_empty
    found = all_matches(cursor, sql, page, cap=cap)
    return None if found is None else Weeks(total=found.count, rows=found.rows)


def _time_held(weeks: tuple[int, int], oldest: int, newest: int) -> int | None:
    """How much of the span from `oldest` to `newest` the weeks holding the ts range `weeks`
    hold (whole weeks, as the index labels them); None when they hold all of it."""
    start = weeks[0] // SEARCH_WEEK_US * SEARCH_WEEK_US
    end = (weeks[1] // SEARCH_WEEK_US + 1) * SEARCH_WEEK_US  # the next week's first ts
    if start <= oldest and end > newest:
        return None
    return min(end, newest) - max(start, oldest)


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
  FROM ({page}) AS c
  JOIN messaging_message m ON m.id = c.id
  LEFT JOIN teams_member u ON u.id = m.user_id
 ORDER BY {order}
"""


def newest_matches(cursor: CursorWrapper, sql: SearchSql, page: Page, *, window: int) -> Found | None:
    """The newest (oldest, ascending) matches, from the messages in scope read in time order:
    (how many, page rows). None when the newest `window` messages hold fewer than the page
    needs."""
    statement = _NEWEST_MATCHES.format(
        window_columns=_WINDOW_COLUMNS,
        rank=sql.rank,
        scope=sql.scope,
        match=sql.match_on_rows,
        direction=page.direction,
        columns=COLUMNS,
        page=page.cut("candidates"),
        order=page.order("c"),
    )
    limits = {"window": window, "candidates": page.wanted, "limit": page.limit, "offset": page.offset}
    with transaction.atomic(using=cursor.db.alias):
        # The window must come off an index in time order, to stop as soon as there are
        # enough matches. Expecting fewer rows in scope than the window holds, the planner
        # would rather read and sort them all (~70 ms for a 100k-message team).
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(statement, {**sql.params, **limits})
        rows = cursor.fetchall()
    seen = int(rows[0][0]) if rows else 0
    if seen < page.wanted:
        return None
    return Found(seen, [row[1:] for row in rows])

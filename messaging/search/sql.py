"""A search as SQL fragments over `messaging_message m` (`SearchSql`), and the page it is cut
to (`Page`): what every way of reading the matches (messaging.search.ways) builds on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from messaging.models import SEARCH_ENTRIES_COLUMNS, SEARCH_ENTRIES_FUNCTION
from messaging.search.index import INDEXED_TEXT_SQL, SEARCH_CONFIG, UNSEARCHED_SQL
from messaging.search.query import SearchQuery
from messaging.search.scope import Scope

_HAS_LINK = r"https?://"
# The text search configuration that lowercases words but keeps them as typed, for words
# starting with a prefix.
UNSTEMMED_CONFIG = "simple"
# The index holds stems, which may be shorter than a word's typed start ("running" is held
# as "run", so `runn*` must look for it too): up to this many characters shorter. The
# english stemmer cuts at most about this much ("nationalizations" to "nation": 10).
STEM_REACH = 12
MIN_STEM_CHARS = 2  # "going" is held as "go"
# What the search index holds of a message: its words and the week it was posted in, in its
# team (the index's own expression, messaging.models). A condition on it can be answered by the
# index; on a row already read, `m.search_vector @@` is the same test (no word a user types is
# ever a week) and cheaper.
ENTRIES = f"{SEARCH_ENTRIES_FUNCTION}({', '.join(f'm.{column}' for column in SEARCH_ENTRIES_COLUMNS)})"


@dataclass(frozen=True)
class SearchSql:
    """The query as SQL fragments over `messaging_message m`."""

    scope: str  # team, channels, dates, authors: what a newest-first window is read from
    span: str  # team and dates only: where the time span of the scope is looked up
    words: str | None  # the tsquery of the words, or None when the query has none
    # Whether reading recent weeks (ways.recent_weeks) is costed right for this query: the
    # index must answer the words alone (a phrase is checked on each row, and estimated as
    # its words in any order: often far more), and the scope must be what the weeks hold,
    # the team (a window for from: or in: scans every message of the team's weeks, and the
    # estimates count only the few in scope).
    weeks_apply: bool
    filters: str  # the rest, checked on each row read: live, has:, is:
    filters_beyond_live: bool  # whether there is more than that the message is live
    params: dict[str, Any]
    rank: str  # the score of a match; a constant when not sorting by score
    # The scope again, for reading matches through the search index: the same, except that
    # the channels the searcher can see are only checked on each row read. As an index
    # condition the planner would AND in a bitmap of most of the team (~30 ms at 1M) to
    # save few reads; and only here, since hidden this way it is also badly estimated.
    scope_on_rows: str

    @property
    def indexed(self) -> str:
        """The words, as the search index answers them."""
        return "true" if self.words is None else f"{ENTRIES} @@ ({self.words})"

    @property
    def match(self) -> str:
        """Every condition of a match but the scope, for reading through the search index."""
        return f"{self.indexed} AND {self.filters}"

    @property
    def match_on_rows(self) -> str:
        """The same, for rows already read (newest first)."""
        words = "true" if self.words is None else f"m.search_vector @@ ({self.words})"
        return f"{words} AND {self.filters}"


@dataclass(frozen=True)
class Page:
    """One page of results, and the order it is cut from.

    By time: newest (or oldest) first. By score: the `ranked` newest matches (oldest, for
    sort_dir=asc) by text rank, ties newest first, then any older matches newest first.
    Recency picks which matches are ranked and text rank orders them: Slack's relevance
    leans hard on recency as well, and ranking a bounded set is what keeps a frequent term
    from costing a read of every one of its matches. The order is total and the same on
    every page, so paging neither repeats nor skips a match.
    """

    by_score: bool
    descending: bool
    limit: int
    offset: int
    ranked: int

    @property
    def direction(self) -> str:
        return "DESC" if self.descending else "ASC"

    @property
    def wanted(self) -> int:
        """How many matches, from the end the sort starts at in time, the page is cut from."""
        return max(self.offset + self.limit, self.ranked if self.by_score else 0)

    def order(self, alias: str) -> str:
        d = self.direction
        keys = [f"{alias}.ts {d}", f"{alias}.id {d}"]
        if not self.by_score:
            return ", ".join(keys)
        ranked = f"{alias}.n <= {int(self.ranked)}"
        rank = f"CASE WHEN {ranked} THEN {alias}.rank ELSE 0 END {d}"  # older ones: by time alone
        return ", ".join([f"NOT {ranked}", rank, *keys])

    def cut(self, rows: str, where: str = "") -> str:
        """A SELECT of this page of `rows` (a relation of id, ts, rank), each with `n`, its
        place in time from the sort's end (what decides whether it is ranked)."""
        d = self.direction
        n = f"row_number() OVER (ORDER BY r.ts {d}, r.id {d})" if self.by_score else "0"
        return (
            f"SELECT * FROM (SELECT r.*, {n} AS n FROM {rows} r {where}) AS r"
            f" ORDER BY {self.order('r')} LIMIT %(limit)s OFFSET %(offset)s"
        )


def tsquery_sql(query: SearchQuery, params: dict[str, Any]) -> str | None:
    """The query's words as one tsquery expression (constant-folded by the planner)."""
    parts: list[str] = []
    if query.words:
        params["words"] = " ".join(query.words)
        parts.append(f"plainto_tsquery('{SEARCH_CONFIG}', %(words)s)")
    for n, prefix in enumerate(query.prefixes):
        parts.append(_prefix_candidates(prefix, f"prefix{n}", f"stems{n}", params))
    for n, phrase in enumerate(query.phrases):
        params[f"phrase{n}"] = phrase
        parts.append(f"phraseto_tsquery('{SEARCH_CONFIG}', %(phrase{n})s)")
    for n, excluded in enumerate(query.excluded):
        params[f"excluded{n}"] = excluded
        parts.append(f"!! phraseto_tsquery('{SEARCH_CONFIG}', %(excluded{n})s)")
    return " && ".join(parts) if parts else None


def _prefix_candidates(prefix: str, name: str, stems_name: str, params: dict[str, Any]) -> str:
    """The tsquery of what the index may hold of a word starting with `prefix`: more than
    such words (`_prefix_tsqueries`), so each match is rechecked (`_prefix_recheck`)."""
    params[name], params[stems_name] = _prefix_tsqueries(prefix)
    stemmed = f"to_tsquery('{SEARCH_CONFIG}', %({name})s)"
    return f"({stemmed} || to_tsquery('{UNSTEMMED_CONFIG}', %({stems_name})s))"


def _prefix_tsqueries(prefix: str) -> tuple[str, str]:
    """What the index may hold of a word starting with `prefix`, as two tsquery texts (for
    to_tsquery in SEARCH_CONFIG, and in UNSTEMMED_CONFIG).

    A stem starting with the prefix, stemmed ("happy" is held as "happi") or not, or one
    of the prefix's own starts, which the stemmer may have cut a word to ("runn" for
    "running", held as "run"). That also finds other words ("run" itself), so each match
    is rechecked for a word starting with the prefix (`_prefix_recheck`).
    """
    starts = [_lexeme(prefix[:end]) for end in range(len(prefix) - 1, MIN_STEM_CHARS - 1, -1)]
    return f"{_lexeme(prefix)}:*", " | ".join([f"{_lexeme(prefix)}:*", *starts[:STEM_REACH]])


def _prefix_recheck(prefixes: tuple[str, ...], params: dict[str, Any], name: str = "prefixes") -> str:
    """The condition that the indexed text has a word starting with each prefix."""
    params[name] = " & ".join(f"{_lexeme(prefix)}:*" for prefix in prefixes)
    words = f"to_tsvector('{UNSTEMMED_CONFIG}', {INDEXED_TEXT_SQL})"
    return f"{words} @@ to_tsquery('{UNSTEMMED_CONFIG}', %({name})s)"


def _prefix_exclusion(n: int, prefix: str, params: dict[str, Any]) -> str:
    """The condition that `-prefix*` keeps a message: exactly the ones `prefix*` does not
    match (an unindexed one included), on each row read.

    Not a `!! 'prefix':*` in the words' tsquery: the index holds stems, and a stem may
    start with the prefix when the word does not ("possibility" is held as "possibl",
    "happy" as "happi"), so that would also exclude messages `prefix*` does not find. As a
    row filter, like has:, it leaves the index to answer the other words as before; the
    cheap test of the stored vector comes first, so the text is reparsed only for rows
    holding a candidate.
    """
    candidates = _prefix_candidates(prefix, f"excluded_prefix{n}", f"excluded_stems{n}", params)
    recheck = _prefix_recheck((prefix,), params, f"excluded_words{n}")
    return f"NOT (coalesce(m.search_vector @@ {candidates}, false) AND {recheck})"


def _lexeme(text: str) -> str:
    """`text` as one quoted lexeme of a tsquery text: none of it is read as an operator.
    (The parser only lets letters and digits into a prefix; this holds for any text.)"""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def compile_search(team_id: int, scope: Scope, query: SearchQuery, by_score: bool) -> SearchSql:
    params: dict[str, Any] = {"team_id": team_id, "channels": sorted(scope.channels)}
    span_sql = ["m.team_id = %(team_id)s"]
    if scope.since_ts is not None:
        params["since"] = scope.since_ts
        span_sql.append("m.ts >= %(since)s")
    if scope.until_ts is not None:
        params["until"] = scope.until_ts
        span_sql.append("m.ts < %(until)s")
    scope_sql = list(span_sql)
    if scope.authors is not None:
        # One author as an equality: the (user_id, ts) index then gives their messages in
        # time order, for a newest-first read (= ANY gives them in no order).
        if len(scope.authors) == 1:
            params["author"] = scope.authors[0]
            scope_sql.append("m.user_id = %(author)s")
        else:
            params["authors"] = scope.authors
            scope_sql.append("m.user_id = ANY(%(authors)s)")
    words = tsquery_sql(query, params)
    # A tombstone loses its vector only when its indexing job runs: is_deleted decides. And
    # a search with no words (from:@bob alone) reads rows the index never saw.
    filters = [f"NOT ({UNSEARCHED_SQL})"]
    if "link" in query.has:
        params["link"] = _HAS_LINK
        filters.append("m.text ~* %(link)s")
    if "reaction" in query.has:
        filters.append("EXISTS (SELECT 1 FROM messaging_reaction r WHERE r.message_id = m.id)")
    if "pin" in query.has:
        filters.append("EXISTS (SELECT 1 FROM messaging_pin p WHERE p.message_id = m.id)")
    if query.is_thread:
        filters.append("m.thread_ts IS NOT NULL")
    if query.prefixes:
        filters.append(_prefix_recheck(query.prefixes, params))
    filters += [_prefix_exclusion(n, prefix, params) for n, prefix in enumerate(query.excluded_prefixes)]
    rank = f"ts_rank(m.search_vector, ({words}))" if by_score and words else "0::real"
    channels = "m.channel_id = ANY(%(channels)s)"
    # IS TRUE: the same test, but not one an index can answer (see SearchSql.scope_on_rows).
    on_rows = channels if scope.narrowed else f"({channels}) IS TRUE"
    return SearchSql(
        scope=" AND ".join([*scope_sql, channels]),
        span=" AND ".join(span_sql),
        words=words,
        weeks_apply=(
            words is not None
            and not query.phrases
            and not query.prefixes  # rechecked on each row, as a phrase is
            # An excluded word of letters and digits alone is one lexeme, which the index
            # rules out by itself. Anything else ("-a b", "-e-mail") parses into several,
            # a phrase the index can only check row by row, as a "phrase" above.
            and all(e.isalnum() for e in query.excluded)
            and scope.authors is None
            and not scope.narrowed
        ),
        filters=" AND ".join(filters),
        filters_beyond_live=len(filters) > 1,
        params=params,
        rank=rank,
        scope_on_rows=" AND ".join([*scope_sql, on_rows]),
    )

"""Slack's search language parsed into a `SearchQuery`: words, partial words (`phoen*`),
"exact phrases", -exclusions (of partial words too: `-phoen*`) and the modifiers in:, from:,
before:, after:, on:, during:, has: and is:.

Parsing never fails: text that is not a well-formed modifier is searched as words, and a
modifier that can never match (a bad date, an unsupported has:) makes the query match
nothing, as an unknown channel does.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

MAX_QUERY_CHARS = 1000  # longer queries are cut: nobody types more, and it bounds the tsquery
HAS_VALUES = frozenset({"link", "reaction", "pin"})
IS_VALUES = frozenset({"thread"})
# Letters before a trailing "*" for it to match partial words (Slack asks for some too): a
# shorter prefix matches a large part of every team's words, and is searched as a word.
MIN_PREFIX_CHARS = 3

# One token: an optional "-", then a quoted phrase (the closing quote may be missing) or a
# run of non-space characters. Slack clients send typographic quotes too.
_TOKEN = re.compile(r'(-?)(?:["“”]([^"“”]*)["“”]?|(\S+))')
_MODIFIER = re.compile(r"^(in|from|before|after|on|during|has|is):(.+)$", re.IGNORECASE)
_CHANNEL_LINK = re.compile(r"^<#([A-Z0-9]+)(?:\|([^>]*))?>$")
_USER_LINK = re.compile(r"^<@([A-Z0-9]+)(?:\|([^>]*))?>$")
_DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_YEAR = re.compile(r"^(\d{4})$")


@dataclass(frozen=True)
class ChannelRef:
    """`in:#name` (by name) or `in:<#C123>` (by id)."""

    name: str | None = None
    slack_id: str | None = None


@dataclass(frozen=True)
class MemberRef:
    """`@handle`, `<@U123>` (by id) or `me` (the searcher)."""

    handle: str | None = None
    slack_id: str | None = None
    me: bool = False


@dataclass(frozen=True)
class SearchQuery:
    words: tuple[str, ...] = ()  # every one must match (stemmed, as PostgreSQL's english config)
    prefixes: tuple[str, ...] = ()  # each must start a word: `phoen*` as "phoen", lowercased
    phrases: tuple[str, ...] = ()  # each must match as consecutive words
    excluded: tuple[str, ...] = ()  # words or phrases that must not match
    excluded_prefixes: tuple[str, ...] = ()  # none may start a word: `-phoen*`, as `prefixes`
    in_channels: tuple[ChannelRef, ...] = ()  # any of these (OR), as Slack combines in:
    in_dms: tuple[MemberRef, ...] = ()  # the DM with any of these members
    from_members: tuple[MemberRef, ...] = ()  # sent by any of these (OR)
    since: date | None = None  # first day included, in the searcher's timezone
    until: date | None = None  # first day excluded
    has: frozenset[str] = field(default_factory=frozenset)
    is_thread: bool = False
    impossible: bool = False  # a modifier that nothing can satisfy

    @property
    def matches_nothing(self) -> bool:
        empty_range = self.since is not None and self.until is not None and self.since >= self.until
        return self.impossible or empty_range


def parse_query(text: str) -> SearchQuery:
    """Parse a Slack search string; see the module docstring for what each part means."""
    query = SearchQuery()
    for match in _TOKEN.finditer(text[:MAX_QUERY_CHARS]):
        negated, phrase, token = match.group(1) == "-", match.group(2), match.group(3)
        if phrase is not None:
            query = _add_phrase(query, " ".join(phrase.split()), negated)
            continue
        modifier = _MODIFIER.match(token)
        if modifier is not None and negated:
            continue  # -in:/-from: are not supported; excluding the word "in" would mislead
        if modifier is not None:
            query = _add_modifier(query, modifier.group(1).lower(), modifier.group(2))
        elif negated and (prefix := _prefix(token)) is not None:
            query = replace(query, excluded_prefixes=(*query.excluded_prefixes, prefix))
        elif negated:  # a word, or one `_prefix` refuses: excluded as `token` alone is searched
            query = replace(query, excluded=(*query.excluded, token)) if token else query
        elif token == "-":
            continue  # a lone dash excludes nothing
        elif (prefix := _prefix(token)) is not None:
            query = replace(query, prefixes=(*query.prefixes, prefix))
        else:
            query = replace(query, words=(*query.words, token))
    return query


def _prefix(token: str) -> str | None:
    """The start of a word that `token` searches for, when it is one ending in "*".

    Only letters and digits, with at least one letter: a prefix goes into a tsquery, where
    anything else could be an operator, and one of digits alone could match the search
    index's week entries (messaging.search.sql). Any other word keeps its "*" and is
    searched as words, which ignores the "*" (so a lone "*" matches nothing).
    """
    if not token.endswith("*"):
        return None
    prefix = token.rstrip("*").lower()  # lowered first: that may add a non-letter ("İ")
    if len(prefix) < MIN_PREFIX_CHARS or not prefix.isalnum() or prefix.isdigit():
        return None
    return prefix


def _add_phrase(query: SearchQuery, phrase: str, negated: bool) -> SearchQuery:
    """A quoted phrase is matched as typed: a "*" in it is no wildcard ("phoen* rising" is
    the words "phoen rising"). Slack documents quotes as an exact match, and "*" only as
    the end of a partial word."""
    if not phrase:
        return query
    if negated:
        return replace(query, excluded=(*query.excluded, phrase))
    return replace(query, phrases=(*query.phrases, phrase))


def _add_modifier(query: SearchQuery, key: str, value: str) -> SearchQuery:
    if key == "in":
        if value.startswith("@") or _USER_LINK.match(value):
            member = _member_ref(value)
            return replace(query, in_dms=(*query.in_dms, member)) if member else _never(query)
        channel = _channel_ref(value)
        return replace(query, in_channels=(*query.in_channels, channel)) if channel else _never(query)
    if key == "from":
        member = _member_ref(value)
        return replace(query, from_members=(*query.from_members, member)) if member else _never(query)
    if key == "has":
        value = value.lower().strip(":")
        if value not in HAS_VALUES:
            return _never(query)
        return replace(query, has=query.has | {value})
    if key == "is":
        return replace(query, is_thread=True) if value.lower() in IS_VALUES else _never(query)
    return _add_dates(query, key, value)


def _add_dates(query: SearchQuery, key: str, value: str) -> SearchQuery:
    """before:/after:/on: take a day; during: a day, a month or a year. Ranges intersect."""
    span = _day_span(value) if key != "during" else _period_span(value)
    if span is None:
        return _never(query)
    first, end = span
    since, until = query.since, query.until
    if key == "before":  # Slack: strictly before that day
        until = first if until is None else min(until, first)
    elif key == "after":  # Slack: strictly after that day
        since = end if since is None else max(since, end)
    else:  # on:, during:
        since = first if since is None else max(since, first)
        until = end if until is None else min(until, end)
    return replace(query, since=since, until=until)


def _day_span(value: str) -> tuple[date, date] | None:
    match = _DAY.match(value)
    if match is None:
        return None
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    if day == date.max:
        return None
    return day, day + timedelta(days=1)


def _period_span(value: str) -> tuple[date, date] | None:
    if (month := _MONTH.match(value)) is not None:
        year, number = int(month.group(1)), int(month.group(2))
        if not 1 <= year < 9999 or not 1 <= number <= 12:
            return None
        first = date(year, number, 1)
        return first, first + timedelta(days=calendar.monthrange(year, number)[1])
    if (year_match := _YEAR.match(value)) is not None:
        year = int(year_match.group(1))
        if not 1 <= year < 9999:
            return None
        return date(year, 1, 1), date(year + 1, 1, 1)
    return _day_span(value)


def _channel_ref(value: str) -> ChannelRef | None:
    if (link := _CHANNEL_LINK.match(value)) is not None:
        return ChannelRef(slack_id=link.group(1))
    name = value.removeprefix("#").strip().lower()
    return ChannelRef(name=name) if name else None


def _member_ref(value: str) -> MemberRef | None:
    if (link := _USER_LINK.match(value)) is not None:
        return MemberRef(slack_id=link.group(1))
    if value.lower() == "me":
        return MemberRef(me=True)
    handle = value.removeprefix("@").strip().lower()
    if not handle:
        return None
    return MemberRef(me=True) if handle == "me" else MemberRef(handle=handle)


def _never(query: SearchQuery) -> SearchQuery:
    return replace(query, impossible=True)

"""The search language parser: modifiers, phrases, exclusions, and that any text parses."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from messaging.search.query import (
    MAX_QUERY_CHARS,
    MIN_PREFIX_CHARS,
    ChannelRef,
    MemberRef,
    SearchQuery,
    parse_query,
)

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12).filter(
    lambda w: w not in ("me",)
)
HANDLE = st.from_regex(r"[a-z][a-z0-9._-]{0,15}", fullmatch=True).filter(lambda h: h != "me")
DAY = st.dates(min_value=date(1971, 1, 1), max_value=date(2099, 12, 30))


def test_modifiers() -> None:
    query = parse_query(
        'deploy "rolled back" -staging -"dry run" in:#ops in:<#C123|ops> in:@bob from:<@U9> from:me '
        "has:link has:reaction is:thread after:2024-01-31 before:2024-03-01"
    )
    assert query.words == ("deploy",)
    assert query.phrases == ("rolled back",)
    assert query.excluded == ("staging", "dry run")
    assert query.in_channels == (ChannelRef(name="ops"), ChannelRef(slack_id="C123"))
    assert query.in_dms == (MemberRef(handle="bob"),)
    assert query.from_members == (MemberRef(slack_id="U9"), MemberRef(me=True))
    assert query.has == {"link", "reaction"} and query.is_thread
    assert (query.since, query.until) == (date(2024, 2, 1), date(2024, 3, 1))
    assert not query.matches_nothing


def test_periods_and_impossible_modifiers() -> None:
    assert parse_query("during:2024-02").until == date(2024, 3, 1)  # a leap year's February
    assert parse_query("during:2023-02").until == date(2023, 3, 1)
    assert parse_query("during:2024").since == date(2024, 1, 1)
    assert parse_query("on:2024-05-06").since == date(2024, 5, 6)
    for never in ("on:2024-13-01", "before:soon", "has:star", "is:dm", "during:24", "in:#", "from:@"):
        assert parse_query(f"x {never}").matches_nothing, never
    assert parse_query("after:2024-03-05 before:2024-03-06").matches_nothing  # empty range
    # Not modifiers: searched as words.
    assert parse_query("ratio 3:1 at:home").words == ("ratio", "3:1", "at:home")
    assert parse_query("-in:#ops nothing").words == ("nothing",)  # negated modifiers are dropped
    assert parse_query('"unclosed phrase').phrases == ("unclosed phrase",)
    assert parse_query("a - b").words == ("a", "b")


@given(st.text(max_size=300))
def test_any_text_parses(text: str) -> None:
    query = parse_query(text)
    assert isinstance(query, SearchQuery)
    for word in query.words:
        assert word in text and not any(c.isspace() for c in word)
    for part in (*query.phrases, *query.excluded):
        assert part and all(piece in text for piece in part.split())


@given(st.text(min_size=MAX_QUERY_CHARS + 1, max_size=MAX_QUERY_CHARS + 50, alphabet="ab "))
def test_long_queries_are_cut(text: str) -> None:
    query = parse_query(text)
    assert sum(len(w) for w in query.words) <= MAX_QUERY_CHARS


@given(
    words=st.lists(WORD, max_size=4),
    phrases=st.lists(st.lists(WORD, min_size=2, max_size=3).map(" ".join), max_size=2),
    excluded=st.lists(WORD, max_size=2),
    channels=st.lists(HANDLE, max_size=2),
    authors=st.lists(HANDLE, max_size=2),
    after=st.one_of(st.none(), DAY),
    before=st.one_of(st.none(), DAY),
)
def test_structured_queries_round_trip(
    words: list[str],
    phrases: list[str],
    excluded: list[str],
    channels: list[str],
    authors: list[str],
    after: date | None,
    before: date | None,
) -> None:
    parts = [*words, *(f'"{p}"' for p in phrases), *(f"-{e}" for e in excluded)]
    parts += [f"in:#{c}" for c in channels] + [f"from:@{a}" for a in authors]
    parts += [f"after:{after.isoformat()}"] if after else []
    parts += [f"before:{before.isoformat()}"] if before else []
    query = parse_query(" ".join(parts))
    assert query.words == tuple(words)
    assert query.phrases == tuple(phrases)
    assert query.excluded == tuple(excluded)
    assert query.in_channels == tuple(ChannelRef(name=c) for c in channels)
    assert query.from_members == tuple(MemberRef(handle=a) for a in authors)
    assert query.since == (date.fromordinal(after.toordinal() + 1) if after else None)
    assert query.until == before
    assert query.matches_nothing == bool(after and before and after.toordinal() + 1 >= before.toordinal())


def test_a_trailing_asterisk_searches_partial_words() -> None:
    query = parse_query('Phoen* runn** deploy "big bird" -ops in:#general')
    assert query.prefixes == ("phoen", "runn")
    assert query.words == ("deploy",) and query.phrases == ("big bird",) and query.excluded == ("ops",)
    assert query.in_channels == (ChannelRef(name="general"),)
    # Too short, digits alone, or not only letters and digits: searched as words, never as
    # tsquery syntax.
    for word in ("ph*", "*", "**", "2024*", "a:b|c*", "!xyz*", "abc:*", "x'y*", "don't*", "e-mai*"):
        query = parse_query(word)
        assert query.prefixes == () and query.words == (word,), word
    # Excluded the same way: a partial word, or else the word as typed.
    query = parse_query("deploy -Phoen* -runn** -ph* -e-mai* -2024*")
    assert query.excluded_prefixes == ("phoen", "runn") and query.prefixes == ()
    assert query.excluded == ("ph*", "e-mai*", "2024*") and query.words == ("deploy",)
    # In quotes, "*" is no wildcard: the phrase is matched as typed.
    query = parse_query('"phoen* rising" -"phoen* falling"')
    assert query.phrases == ("phoen* rising",) and query.excluded == ("phoen* falling",)
    assert query.prefixes == () and query.excluded_prefixes == ()


@given(st.text(max_size=300))
def test_prefixes_are_letters_and_digits(text: str) -> None:
    query = parse_query(text)
    for prefix in (*query.prefixes, *query.excluded_prefixes):
        assert len(prefix) >= MIN_PREFIX_CHARS and prefix.isalnum() and not prefix.isdigit()
        assert f"{prefix}*" in text.lower()
    for prefix in query.excluded_prefixes:
        assert f"-{prefix}*" in text.lower()

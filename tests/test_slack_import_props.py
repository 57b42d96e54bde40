"""Property tests for what an archive can throw at the importer: member names that try
to escape, messages of any shape, text full of references."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from jobs.slack_export.archive import ArchiveError, _checked_name
from jobs.slack_export.messages import IdMap, convert_message, rewrite_text
from jobs.slack_export.seen_ts import SeenTs
from teams import ids

KNOWN = {"U01ALICE": 101, "U02BOB": 102}
ID_MAP = IdMap(KNOWN, {"B05BOT": 201}, {"C01GEN": 301}, {"C01GEN": ids.PUBLIC})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
slack_keys = st.sampled_from(
    ["type", "ts", "user", "text", "subtype", "thread_ts", "bot_id", "edited", "reactions", "files", "file",
     "attachments", "blocks", "pinned_to", "username", "client_msg_id", "topic"]
)  # fmt: skip
slack_values = json_values | st.sampled_from(
    ["message", "1500000000.000100", "U01ALICE", "U02BOB", "USLACKBOT"]
)


@given(st.text(max_size=40))
def test_accepted_names_never_escape(name: str) -> None:
    try:
        checked = _checked_name(name)
    except ArchiveError:
        return
    assert not checked.startswith("/") and ".." not in checked.split("/")
    assert not re.match(r"^[A-Za-z]:", checked)


@given(st.dictionaries(slack_keys, slack_values, max_size=10))
def test_any_message_shape_converts_or_names_its_problem(raw: dict[str, Any]) -> None:
    try:
        converted = convert_message(raw, "general/2017-07-14.json", "C01GEN", ID_MAP)
    except ArchiveError as exc:
        assert exc.path == "general/2017-07-14.json" and "unknown user" in exc.problem
        return
    if converted.row is None:
        assert converted.skipped
        return
    row = converted.row
    assert isinstance(row.ts, int) and row.ts >= 0
    assert all(member in KNOWN.values() for _name, member in row.reactions)
    assert row.user_id is None or row.user_id in KNOWN.values()


fragments = st.sampled_from(
    ["<@U01ALICE>", "<@U02BOB|bob>", "<@U77WHO>", "<#C01GEN|general>", "<#C99X>", "hi ", "<!here>"]
)


@given(st.lists(fragments | st.text(alphabet="ab <>@#|", max_size=5), max_size=12))
def test_known_references_are_rewritten_and_unknown_kept(parts: list[str]) -> None:
    text = "".join(parts)
    rewritten = rewrite_text(text, ID_MAP)
    back = rewritten.replace(f"<@{ids.encode(ids.USER, 101)}", "<@U01ALICE")
    back = back.replace(f"<@{ids.encode(ids.USER, 102)}", "<@U02BOB")
    back = back.replace(f"<#{ids.encode(ids.PUBLIC, 301)}", "<#C01GEN")
    assert back == text


# Day files of one conversation as the check reads them: grouped by day, in date order,
# their ts in any order and from any day (new, repeated, or out of date order).
day_files = st.lists(
    st.tuples(st.integers(10, 13), st.lists(st.integers(0, 60), max_size=8)), max_size=10
).map(sorted)


def _first_repeat(files: list[tuple[int, list[int]]]) -> tuple[int, int] | None:
    """(file index, ts) of the first repeat, as one set of every ts read finds it."""
    everything: set[int] = set()
    for index, (_day, stamps) in enumerate(files):
        for ts in stamps:
            if ts in everything:
                return index, ts
            everything.add(ts)
    return None


@given(day_files)
def test_seen_ts_finds_the_repeat_a_set_of_the_whole_history_finds(
    files: list[tuple[int, list[int]]],
) -> None:
    found = None
    with SeenTs(lambda stop: [ts for _day, stamps in files[:stop] for ts in stamps]) as seen:
        for index, (day, stamps) in enumerate(files):
            repeated = seen.add_file(index, f"2017-07-{day}.json", stamps)
            if repeated is not None:
                found = (index, repeated)
                break
    assert found == _first_repeat(files)

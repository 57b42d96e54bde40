"""Slack-shaped ids and message timestamps."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teams import ids


@given(st.integers(min_value=1, max_value=ids.MAX_ID), st.sampled_from(["T", "U", "B", "C", "G", "D"]))
def test_encode_decode_round_trip(number: int, prefix: str) -> None:
    text = ids.encode(prefix, number)
    assert text[0] == prefix and text[1:].isalnum() and text.upper() == text
    assert ids.decode(text, prefix) == number


@given(st.text(max_size=20))
def test_decode_rejects_or_round_trips_any_text(text: str) -> None:
    try:
        number = ids.decode(text, ids.CHANNEL_PREFIXES)
    except ids.BadId:
        return
    assert 0 < number <= ids.MAX_ID
    assert ids.encode(text[0], number)[1:] == text[1:].lstrip("0")


@pytest.mark.parametrize("bad", ["", "C", "X123", "C12-3", "c123", None, 123, "C" + "Z" * 14])
def test_decode_rejects_malformed(bad: object) -> None:
    with pytest.raises(ids.BadId):
        ids.decode(bad, ids.CHANNEL_PREFIXES)


@given(st.integers(min_value=0, max_value=99_999_999_999_999_999))
def test_ts_round_trip(micros: int) -> None:
    text = ids.format_ts(micros)
    _, fraction = text.split(".")
    assert len(fraction) == 6
    assert ids.parse_ts(text) == micros


def test_parse_ts_accepts_short_fractions_and_rejects_junk() -> None:
    assert ids.parse_ts("1700000000.5") == 1_700_000_000_500_000
    assert ids.parse_ts("1700000000") == 1_700_000_000_000_000
    for bad in ["", "abc", "1.2.3", "-1.000000", "1.1234567", None]:
        with pytest.raises(ids.BadId):
            ids.parse_ts(bad)

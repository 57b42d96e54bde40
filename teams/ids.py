"""Slack-shaped identifiers: 64-bit row ids shown as `T…`/`U…`/`C…` strings, and message `ts`.

Row ids come from the database (`chat_next_id()`, see migration 0001): 41 bits of
milliseconds, 10 bits naming the database that minted it, 12 bits of sequence, so they
are time-ordered and unique across shards and survive a move between shards.
"""

from __future__ import annotations

import re

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DECODE = {c: i for i, c in enumerate(ALPHABET)}
MAX_ID = (1 << 63) - 1

TEAM, USER, BOT, PUBLIC, PRIVATE, IM = "T", "U", "B", "C", "G", "D"
CHANNEL_PREFIXES = (PUBLIC, PRIVATE, IM)
# Slack's own IDs for enterprise users start with W; accept them as users.
USER_PREFIXES = (USER, "W")

_TS_RE = re.compile(r"^(\d{1,11})(?:\.(\d{1,6}))?$")


class BadId(ValueError):
    pass


def encode(prefix: str, number: int) -> str:
    if not 0 < number <= MAX_ID:
        raise ValueError(f"id out of range: {number}")
    digits = []
    while number:
        number, rem = divmod(number, 36)
        digits.append(ALPHABET[rem])
    return prefix + "".join(reversed(digits))


def decode(value: object, prefixes: tuple[str, ...] | str) -> int:
    """Parse a Slack-shaped id with one of `prefixes`; raise BadId on anything else."""
    if not isinstance(value, str) or len(value) < 2 or len(value) > 14 or value[0] not in prefixes:
        raise BadId(str(value))
    number = 0
    for char in value[1:]:
        digit = _DECODE.get(char)
        if digit is None:
            raise BadId(value)
        number = number * 36 + digit
    if not 0 < number <= MAX_ID:
        raise BadId(value)
    return number


def format_ts(micros: int) -> str:
    """Slack's message timestamp: seconds and exactly six digits of microseconds."""
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{seconds}.{fraction:06d}"


def parse_ts(value: object) -> int:
    """Inverse of format_ts; accepts fewer fraction digits (`"123.5"`) as Slack does."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = f"{value:.6f}" if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        raise BadId(str(value))
    match = _TS_RE.match(value.strip())
    if not match:
        raise BadId(value)
    seconds, fraction = match.group(1), (match.group(2) or "").ljust(6, "0")
    return int(seconds) * 1_000_000 + int(fraction)

"""Cursor pagination as Slack does it: an opaque `next_cursor`, empty on the last page."""

from __future__ import annotations

import base64

from teams.errors import ApiError

PAGE_MAX = 1000


def clamp_limit(limit: int, default: int = 100) -> int:
    if limit <= 0:
        return default
    return min(limit, PAGE_MAX)


def encode_cursor(kind: str, value: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def decode_cursor(cursor: str, kind: str) -> int | None:
    if not cursor:
        return None
    try:
        found_kind, value = base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)
        if found_kind != kind:
            raise ValueError(found_kind)
        return int(value)
    except ValueError:
        raise ApiError("invalid_cursor") from None


def page_metadata(next_value: int | None, kind: str) -> dict[str, dict[str, str]]:
    return {"response_metadata": {"next_cursor": encode_cursor(kind, next_value) if next_value else ""}}

"""The pins an import writes, and whom each is credited to: channels.json lists a
conversation's pins with who pinned them; a message's own `pinned_to` says only that it
is pinned."""

from __future__ import annotations

from jobs.slack_export.import_actions import PinRow
from jobs.slack_export.manifest import ExportConversation
from jobs.slack_export.messages import IdMap, MessageRow


def pinner(conv: ExportConversation, ids: IdMap, *candidates: int | None) -> int | None:
    """Who pinned: as recorded, else the conversation's creator, else its first member."""
    fallback = (ids.users.get(conv.creator), *(ids.users.get(m) for m in conv.members))
    return next((c for c in (*candidates, *fallback) if c), None)


def channel_pins(
    conv: ExportConversation, ids: IdMap, present: set[int] | None
) -> tuple[list[PinRow], list[str]]:
    """channels.json's pins of a conversation; with `present`, those naming a missing
    message are left out and reported."""
    rows, skipped = [], []
    for pin in conv.pins:
        by = pinner(conv, ids, ids.users.get(pin.user))
        where = f"{conv.source} {conv.name or conv.slack_id} pin {pin.ts / 1e6:.6f}"
        if present is not None and pin.ts not in present:
            skipped.append(f"{where}: pinned message not in the archive")
        elif by is None:
            skipped.append(f"{where}: nobody to credit the pin to")
        else:
            rows.append(PinRow(ids.channels[conv.slack_id], pin.ts, by, pin.created or pin.ts // 1_000_000))
    return rows, skipped


def message_pin(conv: ExportConversation, ids: IdMap, row: MessageRow) -> PinRow | None:
    # A pin channels.json also lists is written from there, with who pinned it.
    by = pinner(conv, ids, row.user_id) if row.pinned and row.ts not in conv.pinned_ts else None
    return PinRow(ids.channels[conv.slack_id], row.ts, by, row.ts // 1_000_000) if by else None

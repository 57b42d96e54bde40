"""One Slack export message turned into the row we store: ids mapped to this team's,
mentions and channel links rewritten, subtypes, threads, edits, reactions, files kept.

The same conversion runs in the checking pass and in the writing pass, so both decide
alike what is imported and what is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from jobs.slack_export.archive import ArchiveError
from jobs.slack_export.manifest import SLACKBOT
from messaging.mrkdwn import parse_mentions
from teams import ids

_USER_REF = re.compile(r"<@([UW][A-Z0-9]+)((?:\|[^>]*)?)>")
_CHANNEL_REF = re.compile(r"<#([CGD][A-Z0-9]+)((?:\|[^>]*)?)>")
# Fields of Slack's message we keep verbatim in `extra` (what its subtypes carry).
_EXTRA_KEYS = ("inviter", "topic", "purpose", "name", "old_name", "comment", "icons", "upload", "hidden")
# File metadata kept as links; the bytes stay where Slack hosts them.
_FILE_KEYS = (
    "id", "name", "title", "mimetype", "filetype", "pretty_type", "size", "mode", "created", "user",
    "url_private", "url_private_download", "permalink", "permalink_public", "is_external", "external_url",
)  # fmt: skip


@dataclass
class IdMap:
    """Slack ids of the archive -> this team's row ids."""

    users: dict[str, int]
    bots: dict[str, int]
    channels: dict[str, int]  # conversation slack id -> row id
    channel_prefixes: dict[str, str]  # conversation slack id -> new slack id prefix

    def new_user_ref(self, slack_id: str) -> str | None:
        member = self.users.get(slack_id)
        return ids.encode(ids.USER, member) if member else None

    def new_channel_ref(self, slack_id: str) -> str | None:
        channel = self.channels.get(slack_id)
        return ids.encode(self.channel_prefixes[slack_id], channel) if channel else None


@dataclass
class MessageRow:
    ts: int
    user_id: int | None
    bot_id: int | None
    username: str
    text: str
    subtype: str
    thread_ts: int | None
    edited_ts: int | None
    edited_by: int | None
    is_deleted: bool
    client_msg_id: str | None
    mentions: list[int]
    mentions_all: bool
    attachments: list[Any] | None
    blocks: list[Any] | None
    files: list[Any] | None
    extra: dict[str, Any] | None
    reactions: list[tuple[str, int]] = field(default_factory=list)
    pinned: bool = False  # `pinned_to` names this conversation

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class Converted:
    row: MessageRow | None
    skipped: list[str]  # what of this message was left out, and why


def rewrite_text(text: str, id_map: IdMap) -> str:
    def user(match: re.Match[str]) -> str:
        new = id_map.new_user_ref(match.group(1))
        return f"<@{new}{match.group(2)}>" if new else match.group(0)

    def channel(match: re.Match[str]) -> str:
        new = id_map.new_channel_ref(match.group(1))
        return f"<#{new}{match.group(2)}>" if new else match.group(0)

    return _CHANNEL_REF.sub(channel, _USER_REF.sub(user, text))


def _rewrite_extra(extra: dict[str, Any], id_map: IdMap) -> dict[str, Any]:
    """A subtype's keys with the archive's ids rewritten as in the text (an unknown one kept
    as it is, as there): channel_join's `inviter`, the new topic or purpose (whose text may
    name people and channels) and a file comment's author and text."""
    rewritten = dict(extra)
    inviter = extra.get("inviter")
    if isinstance(inviter, str):
        rewritten["inviter"] = id_map.new_user_ref(inviter) or inviter
    for key in ("topic", "purpose"):
        if isinstance(extra.get(key), str):
            rewritten[key] = rewrite_text(extra[key], id_map)
    comment = extra.get("comment")
    if isinstance(comment, dict):
        comment = dict(comment)  # the archive's own dict: left as it was read
        if isinstance(comment.get("user"), str):
            comment["user"] = id_map.new_user_ref(comment["user"]) or comment["user"]
        if isinstance(comment.get("comment"), str):
            comment["comment"] = rewrite_text(comment["comment"], id_map)
        rewritten["comment"] = comment
    return rewritten


def _ts(value: Any) -> int | None:
    try:
        return ids.parse_ts(value) if value not in (None, "") else None
    except ids.BadId:
        return None


def _files(raw: dict[str, Any]) -> list[Any] | None:
    found = raw.get("files") if isinstance(raw.get("files"), list) else []
    if not found and isinstance(raw.get("file"), dict):
        found = [raw["file"]]  # file_share / file_comment before 2019: one `file`
    kept = [{k: f[k] for k in _FILE_KEYS if k in f} for f in found if isinstance(f, dict)]
    return kept or None


def _json_list(value: Any) -> list[Any] | None:
    return value if isinstance(value, list) and value else None


_NO_MENTIONS = parse_mentions("")


def convert_message(
    raw: dict[str, Any], where: str, conversation_id: str, id_map: IdMap, *, checking: bool = False
) -> Converted:
    """`where` names the day file for errors and the report. `checking` skips what only
    the writing pass needs (text rewriting, mentions, files): the decisions are the same."""
    ts = _ts(raw.get("ts"))
    if raw.get("type", "message") != "message":
        return Converted(None, [f"{where} item of type {raw.get('type')!r}: not a message"])
    if ts is None:
        return Converted(None, [f"{where} message without a valid ts ({str(raw.get('ts'))[:30]!r})"])
    label = f"{where} message {ids.format_ts(ts)}"
    extra: dict[str, Any] = {k: raw[k] for k in _EXTRA_KEYS if k in raw}
    user = raw.get("user") if isinstance(raw.get("user"), str) else None
    user_id = None
    if user == SLACKBOT:
        extra["user"] = SLACKBOT
    elif user:
        user_id = id_map.users.get(user)
        if user_id is None:
            raise ArchiveError(where, f"message {ids.format_ts(ts)} references unknown user {user}")
    bot_slack_id = raw.get("bot_id") if isinstance(raw.get("bot_id"), str) else ""
    bot_id = id_map.bots.get(bot_slack_id) if bot_slack_id else None
    if bot_slack_id and bot_id is None:
        extra["bot_id"] = bot_slack_id  # an integration that left no bot user behind
    edited = raw.get("edited") if isinstance(raw.get("edited"), dict) else {}
    text = raw.get("text") if isinstance(raw.get("text"), str) else ""
    if not checking:
        text = rewrite_text(text, id_map)
        extra = _rewrite_extra(extra, id_map)
    mentions = _NO_MENTIONS if checking else parse_mentions(text)
    subtype = raw.get("subtype") if isinstance(raw.get("subtype"), str) else ""
    client_msg_id = raw.get("client_msg_id")
    row = MessageRow(
        ts=ts,
        user_id=user_id,
        bot_id=bot_id,
        username=(raw.get("username") or "")[:80] if isinstance(raw.get("username"), str) else "",
        text=text,
        subtype=subtype[:40],
        thread_ts=_ts(raw.get("thread_ts")),
        edited_ts=_ts(edited.get("ts")),
        edited_by=id_map.users.get(edited.get("user", "")) if edited else None,
        is_deleted=subtype == "tombstone",
        client_msg_id=client_msg_id[:64] if isinstance(client_msg_id, str) and client_msg_id else None,
        mentions=mentions.member_ids,
        mentions_all=mentions.everyone,
        attachments=_json_list(raw.get("attachments")),
        blocks=_json_list(raw.get("blocks")),
        files=None if checking else _files(raw),
        extra=extra or None,
    )
    skipped = _reactions(raw, row, label, id_map)
    pinned_to = raw.get("pinned_to")
    if isinstance(pinned_to, list) and conversation_id in pinned_to:
        row.pinned = True
    return Converted(row, skipped)


def _reactions(raw: dict[str, Any], row: MessageRow, label: str, id_map: IdMap) -> list[str]:
    skipped = []
    seen: set[tuple[str, int]] = set()
    for reaction in raw.get("reactions") or []:
        name = reaction.get("name") if isinstance(reaction, dict) else None
        if not isinstance(name, str) or not name or len(name) > 100:
            skipped.append(f"{label}: reaction without a valid name")
            continue
        for user in reaction.get("users") or []:
            member = id_map.users.get(user) if isinstance(user, str) else None
            if member is None:
                skipped.append(f"{label}: reaction :{name}: by unknown user {user}")
            elif (name, member) not in seen:
                seen.add((name, member))
                row.reactions.append((name, member))
    return skipped

"""The people and conversations of a Slack export (users.json, channels.json, groups.json,
dms.json, mpims.json), read tolerantly and checked: ids unique, members known, every
conversation folder matched to a conversation.

Real exports vary: `created` is a string or an int, fields go missing, deleted users are
stripped to a few fields, and a folder may carry a channel's previous name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from jobs.slack_export.archive import ArchiveError, SlackArchive
from teams.ids import BadId, parse_ts

SLACKBOT = "USLACKBOT"  # Slack's own bot: in messages, never in users.json

PUBLIC, PRIVATE, IM, MPIM = "public", "private", "im", "mpim"
CONVERSATION_FILES = (
    ("channels.json", PUBLIC),
    ("groups.json", PRIVATE),
    ("dms.json", IM),
    ("mpims.json", MPIM),
)


def as_int(value: Any) -> int:
    """`created`, `last_set`, `updated`: int, float, numeric string or missing."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip() or 0))
        except ValueError:
            return 0
    return 0


def as_text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


@dataclass
class ExportUser:
    slack_id: str
    name: str
    real_name: str
    display_name: str
    email: str
    title: str
    phone: str
    tz: str
    color: str
    is_admin: bool
    is_owner: bool
    is_bot: bool
    bot_slack_id: str
    deleted: bool
    updated: int


@dataclass
class ExportPin:
    ts: int
    user: str
    created: int


@dataclass
class ExportConversation:
    slack_id: str
    kind: str
    name: str | None
    folder: str
    source: str  # the .json file that listed it
    created: int
    creator: str
    is_archived: bool
    is_general: bool
    members: list[str]
    topic: tuple[str, str, int]  # value, creator, last_set
    purpose: tuple[str, str, int]
    pins: list[ExportPin] = field(default_factory=list)

    @cached_property
    def pinned_ts(self) -> set[int]:
        return {pin.ts for pin in self.pins}


@dataclass
class Manifest:
    users: list[ExportUser]
    conversations: list[ExportConversation]
    folders: dict[str, str]  # folder name -> conversation slack id

    def user_ids(self) -> set[str]:
        return {user.slack_id for user in self.users}


def _user(raw: dict[str, Any], source: str) -> ExportUser:
    slack_id = raw.get("id")
    if not isinstance(slack_id, str) or not slack_id:
        raise ArchiveError(source, f"a user without an id: {str(raw)[:80]}")
    profile = raw.get("profile") if isinstance(raw.get("profile"), dict) else {}
    is_owner = bool(raw.get("is_owner") or raw.get("is_primary_owner"))
    return ExportUser(
        slack_id=slack_id,
        name=as_text(raw.get("name"), 80) or slack_id.lower(),
        real_name=as_text(raw.get("real_name") or profile.get("real_name"), 200),
        display_name=as_text(profile.get("display_name"), 200),
        email=as_text(profile.get("email"), 254).strip().lower(),
        title=as_text(profile.get("title"), 200),
        phone=as_text(profile.get("phone"), 50),
        tz=as_text(raw.get("tz"), 64) or "UTC",
        color=as_text(raw.get("color"), 6) or "9f69e7",
        is_admin=bool(raw.get("is_admin")) or is_owner,
        is_owner=is_owner,
        is_bot=bool(raw.get("is_bot")),
        bot_slack_id=as_text(profile.get("bot_id"), 32),
        deleted=bool(raw.get("deleted")),
        updated=as_int(raw.get("updated")),
    )


def _text_meta(raw: Any) -> tuple[str, str, int]:
    if not isinstance(raw, dict):
        return ("", "", 0)
    return (as_text(raw.get("value"), 250), as_text(raw.get("creator"), 32), as_int(raw.get("last_set")))


def _pins(raw: Any) -> list[ExportPin]:
    pins = []
    for pin in raw if isinstance(raw, list) else []:
        try:
            ts = parse_ts(pin.get("id")) if isinstance(pin, dict) else None
        except BadId:
            ts = None
        if ts is not None:
            pins.append(ExportPin(ts, as_text(pin.get("user"), 32), as_int(pin.get("created"))))
    return pins


def is_safe_folder_name(name: str) -> bool:
    """A conversation name usable as one path segment of a zip: no separators, no dot
    names, no control characters (Slack's own names are lowercase words and dashes)."""
    return (
        name not in ("", ".", "..")
        and not name.startswith(".")
        and not any(c in name for c in "/\\:")
        and all(c.isprintable() for c in name)
    )


def _conversation(raw: dict[str, Any], kind: str, source: str) -> ExportConversation:
    slack_id = raw.get("id")
    if not isinstance(slack_id, str) or not slack_id:
        raise ArchiveError(source, f"a conversation without an id: {str(raw)[:80]}")
    name = as_text(raw.get("name"), 80) or None
    if kind in (PUBLIC, PRIVATE, MPIM) and not name:
        raise ArchiveError(source, f"conversation {slack_id} has no name")
    if name is not None and not is_safe_folder_name(name):
        # The name is also its folder in this archive and in any export made later.
        raise ArchiveError(source, f"conversation {slack_id} has a name that is not a folder name: {name!r}")
    members = raw.get("members") if isinstance(raw.get("members"), list) else []
    return ExportConversation(
        slack_id=slack_id,
        kind=kind,
        name=None if kind == IM else name,
        folder=slack_id if kind == IM else str(name),
        source=source,
        created=as_int(raw.get("created")),
        creator=as_text(raw.get("creator"), 32),
        is_archived=bool(raw.get("is_archived")),
        is_general=bool(raw.get("is_general")) and kind == PUBLIC,
        members=[m for m in dict.fromkeys(members) if isinstance(m, str)],
        topic=_text_meta(raw.get("topic")),
        purpose=_text_meta(raw.get("purpose")),
        pins=_pins(raw.get("pins")),
    )


def _check_members(conversation: ExportConversation, known: set[str]) -> None:
    for member in conversation.members:
        if member not in known:
            label = conversation.name or conversation.slack_id
            raise ArchiveError(conversation.source, f"conversation {label} lists unknown member {member}")
    if conversation.kind == IM and not 1 <= len(conversation.members) <= 2:
        raise ArchiveError(conversation.source, f"DM {conversation.slack_id} must have one or two members")


def read_manifest(archive: SlackArchive) -> Manifest:
    users_file = (
        "users.json" if archive.has("users.json") or not archive.has("org_users.json") else "org_users.json"
    )
    raw_users = archive.read_list(users_file, required=True)
    archive.require("channels.json")  # even if it lists nothing
    users: dict[str, ExportUser] = {}
    for raw in raw_users:
        user = _user(raw, users_file)
        if user.slack_id in users:
            raise ArchiveError(users_file, f"duplicate user id {user.slack_id}")
        users[user.slack_id] = user
    known = set(users)
    conversations: dict[str, ExportConversation] = {}
    names: dict[str, str] = {}
    folders: dict[str, str] = {}
    previous: dict[str, str] = {}
    for source, kind in CONVERSATION_FILES:
        for raw in archive.read_list(source):
            conversation = _conversation(raw, kind, source)
            if conversation.slack_id in conversations:
                raise ArchiveError(source, f"duplicate conversation id {conversation.slack_id}")
            if conversation.name is not None:
                if conversation.name in names:
                    raise ArchiveError(source, f"duplicate conversation name {conversation.name!r}")
                names[conversation.name] = conversation.slack_id
            _check_members(conversation, known)
            conversations[conversation.slack_id] = conversation
            folders[conversation.folder] = conversation.slack_id
            for old in raw.get("previous_names") or []:
                if isinstance(old, str):
                    previous.setdefault(old, conversation.slack_id)
    for old, slack_id in previous.items():
        folders.setdefault(old, slack_id)  # a folder written under a channel's old name
    return Manifest(list(users.values()), list(conversations.values()), folders)


def conversation_for_folder(manifest: Manifest, folder: str) -> str:
    slack_id = manifest.folders.get(folder)
    if slack_id is None and folder in {c.slack_id for c in manifest.conversations}:
        slack_id = folder  # some exporters name every folder by conversation id
    if slack_id is None:
        raise ArchiveError(f"{folder}/", "folder matches no conversation in channels/groups/dms/mpims.json")
    return slack_id

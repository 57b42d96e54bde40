"""Small Slack exports written from Slack's documented export format, covering what real
exports vary in: deleted and bot users, renamed channel folders, every message subtype
we keep, threads across day files, skin-toned reactions, old and new file shapes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

ALICE, BOB, CAROL, GONE, BOT = "U01ALICE", "U02BOB", "U03CAROL", "U04GONE", "U05BOT"
GENERAL, RANDOM, OLD, SECRET, DM, MPIM = "C01GEN", "C02RND", "C03OLD", "G01SEC", "D01AB", "G02MP"
MPIM_NAME = "mpdm-alice--bob--carol-1"


def ts(n: int, day: int = 0) -> str:
    return f"{1500000000 + day * 86400 + n}.{n:06d}"


def _user(uid: str, name: str, email: str | None, **extra: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {"real_name": name.title(), "display_name": name, "title": "", "phone": ""}
    if email:
        profile["email"] = email
    return {"id": uid, "team_id": "T0OLD", "name": name, "real_name": name.title(), "tz": "UTC",
            "profile": profile, "updated": 1500000000, **extra}  # fmt: skip


def users() -> list[dict[str, Any]]:
    alice = _user(ALICE, "alice", "alice@old.test", is_admin=True, is_owner=True, is_primary_owner=True)
    alice.update(tz="Europe/Berlin")
    alice["profile"]["title"] = "Boss"
    bob = _user(BOB, "bob", "bob@old.test", tz="America/New_York")
    carol = _user(CAROL, "carol", "carol@old.test", is_admin=True)
    # Deleted users come stripped: no email, few fields.
    gone = {"id": GONE, "name": "gone", "deleted": True, "profile": {"real_name": "Gone Person"}}
    bot = _user(BOT, "deploybot", None, is_bot=True)
    bot["profile"]["bot_id"] = "B05BOT"
    return [alice, bob, carol, gone, bot]


def _conv(cid: str, name: str, members: list[str], created: Any, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "name": name, "created": created, "creator": ALICE, "is_archived": False,
            "is_general": False, "members": members, "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0}, **extra}  # fmt: skip


def conversations() -> dict[str, list[dict[str, Any]]]:
    general = _conv(GENERAL, "general", [ALICE, BOB, CAROL], "1500000000", is_general=True)
    general["topic"] = {"value": "Company-wide", "creator": ALICE, "last_set": 1500000001}
    general["purpose"] = {"value": "Everyone", "creator": ALICE, "last_set": "1500000002"}
    general["pins"] = [{"id": ts(1), "type": "C", "created": 1500000100, "user": BOB, "owner": ALICE},
                       {"id": "1400000000.000001", "type": "C", "created": 1, "user": BOB}]  # fmt: skip
    rnd = _conv(RANDOM, "random", [ALICE, BOB], 1500000000, previous_names=["chitchat"])
    old = _conv(OLD, "old-stuff", [ALICE], 1400000000, is_archived=True)
    secret = _conv(SECRET, "secret", [ALICE, BOB], 1500000000)
    dm = {"id": DM, "created": 1500000000, "members": [ALICE, BOB]}
    mpim = _conv(MPIM, MPIM_NAME, [ALICE, BOB, CAROL], 1500000000)
    return {
        "channels.json": [general, rnd, old],
        "groups.json": [secret],
        "dms.json": [dm],
        "mpims.json": [mpim],
    }


def _msg(n: int, user: str | None, text: str, day: int = 0, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "message", "ts": ts(n, day), "text": text, **extra}
    if user:
        message["user"] = user
    return message


FILE = {"id": "F01", "name": "plan.png", "title": "Plan", "mimetype": "image/png", "size": 10,
        "url_private": "https://files.slack.com/plan.png",
        "permalink": "https://x.slack.com/files/F01"}  # fmt: skip


def general_day_1() -> list[dict[str, Any]]:
    return [
        _msg(1, ALICE, f"hello <@{BOB}> see <#{RANDOM}|random>", client_msg_id="c-1",
             reactions=[{"name": "clap::skin-tone-3", "users": [BOB, CAROL], "count": 2},
                        {"name": "+1", "users": ["U99NOPE"], "count": 1}]),
        _msg(2, BOB, f"<@{BOB}> has joined the channel", subtype="channel_join"),
        _msg(3, ALICE, "a thread", thread_ts=ts(3), reply_count=3, reply_users=[BOB, CAROL]),
        _msg(4, BOB, "first reply", thread_ts=ts(3), parent_user_id=ALICE),
        _msg(5, None, "", subtype="bot_message", bot_id="B05BOT", username="deploybot",
             attachments=[{"fallback": "Deployed v1", "text": "Deployed *v1*", "color": "good"}]),
        _msg(6, BOB, "", subtype="file_share", files=[FILE], upload=True),
        _msg(7, CAROL, "old file", subtype="file_share", file=FILE),
        _msg(8, BOB, "", subtype="file_comment", file=FILE, comment={"comment": "nice", "user": BOB}),
        _msg(9, ALICE, "fixed typo", edited={"user": ALICE, "ts": ts(20)}),
        _msg(10, None, "feed item", subtype="bot_message", username="rss", bot_id="B99GONE"),
        _msg(11, "USLACKBOT", "Reminder: stand-up"),
        _msg(12, "USLACKBOT", "This message was deleted.", subtype="tombstone", hidden=True,
             thread_ts=ts(12), reply_count=1),
        _msg(13, ALICE, "pinned a message", subtype="pinned_item", item_type="C"),
        _msg(14, CAROL, "pin me", pinned_to=[GENERAL]),
        _msg(15, BOB, "blocks", blocks=[{"type": "rich_text", "elements": []}]),
        _msg(16, CAROL, "also to channel", subtype="thread_broadcast", thread_ts=ts(3)),
        _msg(17, ALICE, "set the topic", subtype="channel_topic", topic="Company-wide"),
        _msg(18, GONE, "I was here"),
        {"type": "not_a_message", "ts": ts(19)},
        {"type": "message", "user": ALICE, "text": "no ts"},
    ]  # fmt: skip


def general_day_2() -> list[dict[str, Any]]:
    return [
        _msg(1, CAROL, "late reply", day=1, thread_ts=ts(3)),
        _msg(2, BOB, "reply to deleted", day=1, thread_ts=ts(12)),
        _msg(
            3, ALICE, "<!channel> heads up", day=1, reactions=[{"name": "eyes", "users": [BOB], "count": 1}]
        ),
    ]


def export_files() -> dict[str, Any]:
    files: dict[str, Any] = {"users.json": users(), **conversations(), "integration_logs.json": []}
    files["general/2017-07-14.json"] = general_day_1()
    files["general/2017-07-15.json"] = general_day_2()
    files["chitchat/2017-07-14.json"] = [_msg(1, BOB, "in the old name's folder")]
    renamed = _msg(1, ALICE, "renamed", day=2, subtype="channel_name", old_name="chitchat", name="random")
    files["random/2017-07-16.json"] = [renamed]
    files["old-stuff/2014-05-13.json"] = [
        {
            "type": "message",
            "ts": "1400000000.000100",
            "user": ALICE,
            "text": "archiving",
            "subtype": "channel_archive",
        }
    ]
    files["secret/2017-07-14.json"] = [_msg(1, BOB, "psst", purpose="x"), _msg(2, ALICE, "set purpose",
                                       subtype="channel_purpose", purpose="Secrets")]  # fmt: skip
    files[f"{DM}/2017-07-14.json"] = [_msg(1, ALICE, "hi bob"), _msg(2, BOB, "hi alice")]
    files[f"{MPIM_NAME}/2017-07-14.json"] = [_msg(1, CAROL, "group chat")]
    return files


# What the sample export holds (counted by hand from the lists above).
EXPECTED = {
    "members": 5,
    "channels": 6,
    # general 18 + 3, chitchat 1, random 1, old-stuff 1, secret 2, dm 2, mpim 1
    "messages": 29,
    "replies": 4,  # general: 4 and 16 (a broadcast) in thread 3, then day 2's two replies
    "reactions": 3,  # clap x2 (bob, carol) + eyes; +1 by an unknown user is skipped
    "pins": 2,  # ts(1) from channels.json and ts(14) pinned_to; the 1400000000 pin is missing
}


def write_folder(root: Path, files: dict[str, Any]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return root


def write_zip(path: Path, files: dict[str, Any]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content if isinstance(content, bytes) else json.dumps(content))
    return path

"""Writes a synthetic Slack export of any size, streamed (memory does not grow with it):

    .venv/bin/python bench/slack_export_gen.py out.zip --messages 1000000 --channels 500 --members 5000

Members with emails (plus a deleted user and a bot), public channels (the first is
#general; every tenth is private, every twentieth archived) of up to 50 members each,
and messages spread over day files: every 10th starts a thread answered by the next 3
(a reply now and then lands in the next day's file), every 7th carries reactions
(skin tones included), every 5th mentions someone, every 50th is pinned. It writes with
the exporter's own writer (jobs.slack_export.writer).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs.slack_export.writer import ExportWriter  # noqa: E402

BASE_TS = 1_600_000_000
WORDS = "deploy review ship lunch coffee meeting design bug fix test release plan docs".split()


def _user_id(n: int) -> str:
    return f"U{n:08d}"


def _users(members: int) -> list[dict[str, Any]]:
    users = [
        {"id": _user_id(n), "name": f"user{n}", "real_name": f"User {n}", "tz": "UTC", "updated": BASE_TS,
         "is_admin": n == 0, "is_owner": n == 0,
         "profile": {"email": f"user{n}@gen.test", "real_name": f"User {n}", "display_name": f"user{n}"}}
        for n in range(members)
    ]  # fmt: skip
    users.append({"id": "U9DELETED", "name": "gone", "deleted": True, "profile": {"real_name": "Gone"}})
    users.append({"id": "U9BOT", "name": "genbot", "is_bot": True, "profile": {"bot_id": "B9BOT"}})
    return users


def _channel(n: int, members: int, rng: random.Random) -> dict[str, Any]:
    size = min(members, 50)
    chosen = sorted({_user_id(0), *(_user_id(rng.randrange(members)) for _ in range(size))})
    return {
        "id": f"C{n:08d}" if n % 10 != 9 else f"G{n:08d}",
        "name": "general" if n == 0 else f"channel-{n}",
        "created": str(BASE_TS),
        "creator": _user_id(0),
        "is_archived": n % 20 == 19,
        "is_general": n == 0,
        "members": chosen,
        "topic": {"value": f"topic {n}", "creator": _user_id(0), "last_set": BASE_TS},
        "purpose": {"value": "", "creator": "", "last_set": 0},
        "pins": [],
    }


def _messages(
    channel: dict[str, Any], count: int, per_day: int, rng: random.Random
) -> Iterator[dict[str, Any]]:
    members, step = channel["members"], 86_400 // max(per_day, 1)
    parent = ""
    for i in range(count):
        ts = f"{BASE_TS + (i // per_day) * 86_400 + (i % per_day) * step}.{i % 1_000_000:06d}"
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        if i % 5 == 0:
            text += f" <@{rng.choice(members)}>"
        message: dict[str, Any] = {"type": "message", "ts": ts, "user": rng.choice(members), "text": text}
        if i % 10 == 0:
            parent = message["thread_ts"] = ts
        elif i % 10 in (1, 2, 3) and parent:
            message["thread_ts"] = parent
        if i % 7 == 0:
            message["reactions"] = [
                {"name": "+1", "users": members[:2], "count": len(members[:2])},
                {"name": "clap::skin-tone-3", "users": members[-1:], "count": 1},
            ]
        if i % 50 == 0:
            message["pinned_to"] = [channel["id"]]
        yield message


def generate(
    path: Path, messages: int, channels: int, members: int, per_day: int = 195, seed: int = 1
) -> None:
    rng = random.Random(seed)
    convs = [_channel(n, members, rng) for n in range(channels)]
    with ExportWriter(path) as writer:
        writer.json_file("users.json", _users(members))
        writer.json_file("channels.json", [c for c in convs if c["id"][0] == "C"])
        writer.json_file("groups.json", [c for c in convs if c["id"][0] == "G"])
        writer.json_file("integration_logs.json", [])
        for n, channel in enumerate(convs):
            count = messages // channels + (1 if n < messages % channels else 0)
            writer.conversation(channel["name"], _messages(channel, count, per_day, rng))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--per-day", type=int, default=195, help="messages per channel per day file")
    args = parser.parse_args()
    started = time.monotonic()
    generate(args.out, args.messages, args.channels, args.members, args.per_day)
    size = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size:.1f} MB) in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()

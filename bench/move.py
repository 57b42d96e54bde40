"""Moving a team between shards: how long each step takes and how long writes pause.

Run it with the same CHAT_DATA_DIR as a `./run` (it only needs the databases; the server
need not be up):

    CHAT_DATA_DIR=./var .venv/bin/python bench/move.py --messages 100000

It creates a fresh team on shard_0, gives #general --messages messages and the event log
as many events (written with SQL, not posted: this measures the move, not posting), then
moves the team to shard_1 and back, printing each step with its time, the rows copied and
the write freeze. The team is left on shard_0 for `manage.py` to inspect or delete.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")

import django  # noqa: E402

django.setup()

from django.db import connections  # noqa: E402

from teams.actions import create_team  # noqa: E402
from teams.models import Team  # noqa: E402
from teams.moves import move_team_to_shard  # noqa: E402

FILL_SQL = """
INSERT INTO messaging_message (team_id, channel_id, ts, text, reply_count, reply_users, is_deleted,
                               mentions, mentions_all, username, subtype)
SELECT %(team)s, %(channel)s, %(ts)s + g, 'benchmark message number ' || g || ' with some words',
       0, '{}', false, '{}', false, '', ''
  FROM generate_series(1, %(n)s) g;
INSERT INTO messaging_event (team_id, event_id, type, payload, created)
SELECT %(team)s, %(first_event)s + g, 'message', '{"type": "message", "text": "benchmark"}', now()
  FROM generate_series(1, %(n)s) g;
UPDATE messaging_eventsequence SET last_event_id = %(first_event)s + %(n)s WHERE team_id = %(team)s;
"""


def fill(team_id: int, messages: int) -> None:
    with connections["shard_0"].cursor() as cursor:
        cursor.execute("SELECT id FROM messaging_channel WHERE team_id = %s AND is_general", [team_id])
        (channel,) = cursor.fetchone()
        cursor.execute("SELECT last_event_id FROM messaging_eventsequence WHERE team_id = %s", [team_id])
        (first_event,) = cursor.fetchone()
        params = {"team": team_id, "channel": channel, "ts": int(time.time()) * 1_000_000, "n": messages}
        cursor.execute(FILL_SQL, {**params, "first_event": first_event})


def timed_move(team: Team, target: str) -> None:
    start = time.monotonic()

    def progress(line: str) -> None:
        print(f"  {time.monotonic() - start:7.2f}s  {line}", flush=True)

    move = move_team_to_shard(team, target, progress=progress)
    rows_per_sec = move.copied_rows / max(time.monotonic() - start, 1e-9)
    print(
        f"  -> {move.copied_rows} rows, writes paused {move.freeze_ms} ms, {rows_per_sec:,.0f} rows/s overall"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    domain = f"movebench-{secrets.token_hex(3)}"
    created = create_team(domain, "Move bench", f"owner@{domain}.test", shard="shard_0")
    fill(created.team.id, args.messages)
    print(f"{domain}: {args.messages} messages and as many events on shard_0", flush=True)
    for target in ("shard_1", "shard_0"):
        print(f"move to {target}:")
        timed_move(Team.objects.get(id=created.team.id), target)


if __name__ == "__main__":
    main()

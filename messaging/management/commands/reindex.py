"""manage.py reindex: rebuild the search vectors of a team's messages on its shard.

Repairs what the indexing job missed (a broker outage, a failed job) and fills in the
vectors of messages that predate search. Safe while the team is in use.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from messaging.search.index import BATCH_SIZE, ReindexProgress, reindex_team
from teams.directory import TeamEntry, team_by_domain
from teams.errors import ApiError
from teams.models import Team

PROGRESS_EVERY_SECS = 10.0
# Past this many rewritten vectors the planner's statistics of the column are stale, and
# search chooses its plans from them: refresh them rather than wait for autovacuum.
ANALYZE_AFTER = 10_000


class Command(BaseCommand):
    help = "Recompute the search index of a team's messages (or of every team)."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--team", help="team domain")
        which.add_argument("--all", action="store_true", help="every team, one after another")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="messages per UPDATE")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["all"]:
            teams = [
                team_by_domain(domain)
                for domain in Team.objects.order_by("id").values_list("domain", flat=True)
            ]
        else:
            try:
                teams = [team_by_domain(options["team"])]
            except ApiError:
                raise CommandError(f"no team with domain {options['team']!r}") from None
        touched: dict[str, int] = {}
        for team in teams:
            if team.status == Team.Status.MOVING:
                # Its rows are being copied to another shard: reindex there once it has moved.
                raise CommandError(f"{team.domain} is moving to another shard; reindex it after the move")
            indexed = self._reindex(team, options["batch_size"])
            touched[team.shard] = touched.get(team.shard, 0) + indexed
        for shard, indexed in touched.items():
            if indexed >= ANALYZE_AFTER:
                with connections[shard].cursor() as cursor:
                    cursor.execute("ANALYZE messaging_message")
                self.stdout.write(f"analyzed messaging_message on {shard}")

    def _reindex(self, team: TeamEntry, batch_size: int) -> int:
        with connections[team.shard].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM messaging_message WHERE team_id = %s", [team.id])
            expected = int(cursor.fetchone()[0])
        self.stdout.write(
            f"reindexing {team.domain} ({team.slack_id}) on {team.shard}: {expected:,} messages"
        )
        started = last_report = time.monotonic()

        def report(progress: ReindexProgress) -> None:
            nonlocal last_report
            if time.monotonic() - last_report >= PROGRESS_EVERY_SECS:
                last_report = time.monotonic()
                self.stdout.write(f"  {progress.indexed:,} / {expected:,}")

        done = reindex_team(team.shard, team.id, batch_size=batch_size, progress=report)
        secs = max(time.monotonic() - started, 1e-9)
        self.stdout.write(
            f"indexed {done.indexed:,} messages of {team.domain} in {done.batches:,} batches, "
            f"{secs:.1f} s ({done.indexed / secs:,.0f} messages/s)"
        )
        return done.indexed

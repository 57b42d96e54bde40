"""manage.py import_slack ZIP_OR_FOLDER [--team D] [--name N] [--shard S] [--json]

Imports a Slack export (zip or unpacked folder) into a new team, or into an existing one
that is still empty (`--team` naming it; see jobs.slack_export.existing), with a progress
bar; the same code the import job runs. While the shard's breaker is open it waits, then
carries on from its checkpoint.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.breakers import BreakerOpen
from jobs.slack_export.importer import ImportFailed, abandon_import, run_import
from jobs.slack_export.progress import S, set_status
from jobs.slack_export.reserve import start_import
from jobs.slack_export.terminal import ProgressBar
from teams import ids
from teams.errors import ApiError


class Command(BaseCommand):
    help = "Import a Slack export (zip or folder) into a new team or an existing empty one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", metavar="ZIP_OR_FOLDER")
        parser.add_argument(
            "--team",
            metavar="DOMAIN",
            help="domain of the new team, or of an existing empty team (default: from the file name)",
        )
        parser.add_argument("--name", help="the team's name (default: its domain, or kept)")
        parser.add_argument("--shard", help="shard alias (default: placement policy)")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            job = start_import(
                options["archive"], domain=options["team"], name=options["name"], shard=options["shard"]
            )
        except ApiError as exc:
            raise CommandError(exc.detail or exc.code) from None
        bar = ProgressBar(self.stderr._out)  # type: ignore[attr-defined]
        while True:
            try:
                job = run_import(job.id, bar)
                break
            except ImportFailed as exc:
                bar.finish()
                raise CommandError(f"import failed: {exc}") from None
            except KeyboardInterrupt:
                # Ctrl-C: undo rather than leave the team closed with nobody to finish it.
                bar.finish()
                self.stderr.write("\ninterrupted: undoing the import")
                abandon_import(job.id, "interrupted (Ctrl-C)")
                raise CommandError("import interrupted and undone") from None
            except BreakerOpen as exc:
                set_status(job, S.PAUSED)
                wait = max(exc.retry_at - time.time(), 1.0)
                self.stderr.write(f"\nshard breaker open; paused, retrying in {wait:.0f} s")
                time.sleep(wait)
        bar.finish()
        result = {
            "team_id": ids.encode(ids.TEAM, int(job.team_id or 0)),
            "domain": job.domain,
            "counts": job.counts,
            "skipped": job.skipped,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        counts = ", ".join(f"{value} {key}" for key, value in job.counts.items())
        self.stdout.write(
            f"imported {result['team_id']} ({job.domain}): {counts}; {len(job.skipped)} skipped"
        )
        for item in job.skipped:
            self.stdout.write(f"  skipped: {item}")

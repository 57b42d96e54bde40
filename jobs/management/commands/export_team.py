"""manage.py export_team --team D OUT.zip: a team in Slack's export format, with a
progress bar; the same code the export job runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.slack_export.exporter import run_export, start_export
from jobs.slack_export.terminal import ProgressBar
from teams.directory import team_by_domain
from teams.errors import ApiError


class Command(BaseCommand):
    help = "Export a team to a Slack export zip."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", metavar="DOMAIN", required=True)
        parser.add_argument("out", metavar="OUT.zip", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            team = team_by_domain(options["team"])
        except ApiError as exc:
            raise CommandError(exc.detail or exc.code) from None
        out: Path = options["out"].resolve()
        if not out.parent.is_dir():
            raise CommandError(f"no such folder: {out.parent}")
        bar = ProgressBar(self.stderr._out)  # type: ignore[attr-defined]
        try:
            job = run_export(start_export(team, output=out).id, bar)
        except OSError as exc:
            raise CommandError(f"export failed: {exc}") from None
        bar.finish()
        counts = ", ".join(f"{value} {key}" for key, value in job.counts.items())
        self.stdout.write(f"exported {team.domain} to {out}: {counts}")

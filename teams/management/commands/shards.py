"""manage.py shards: every configured shard with its teams and size."""

import json
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from teams.shard_report import next_placement, shard_reports


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "-"
    size = float(size_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


class Command(BaseCommand):
    help = "List the shards: teams on each (by status), database size, whether it is reachable."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the list as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        reports = shard_reports()
        placement = {"policy": settings.SHARD_PLACEMENT, "next_team_goes_to": next_placement()}
        if options["json"]:
            self.stdout.write(json.dumps({"shards": [asdict(r) for r in reports], "placement": placement}))
            return
        self.stdout.write(f"{'shard':10} {'teams':>6} {'size':>10} {'events~':>9}  {'state':12} server")
        for r in reports:
            state = "ok" if r.reachable else "UNREACHABLE"
            if not r.accepts_new_teams:
                state += " closed"
            events = "-" if r.event_log_rows is None else str(r.event_log_rows)
            self.stdout.write(
                f"{r.alias:10} {r.teams:6} {_size(r.size_bytes):>10} {events:>9}  {state:12} {r.server}"
            )
            if r.teams_by_status and set(r.teams_by_status) != {"active"}:
                detail = ", ".join(f"{n} {status}" for status, n in sorted(r.teams_by_status.items()))
                self.stdout.write(f"{'':10} ({detail})")
            if r.error:
                self.stdout.write(f"{'':10} {r.error}")
        target = placement["next_team_goes_to"] or "no shard"
        self.stdout.write(f"placement: {placement['policy']}; the next new team goes to {target}")

"""manage.py breakers: inspect and steer the shared circuit breakers."""

import json
import time
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs.breakers import CLOSED, DISABLED, FORCED_CLOSED, FORCED_OPEN, all_breakers, force, reset


class Command(BaseCommand):
    help = "List circuit breakers, or force one open/closed, disable or reset it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the list as JSON")
        steer = parser.add_mutually_exclusive_group()
        steer.add_argument("--force-open", metavar="KEY")
        steer.add_argument("--force-closed", metavar="KEY")
        steer.add_argument("--disable", metavar="KEY", help="let every call through and record nothing")
        steer.add_argument("--reset", metavar="KEY", help="back to automatic: closed, no history")

    def handle(self, *args: Any, **options: Any) -> None:
        for option, state in (
            ("force_open", FORCED_OPEN),
            ("force_closed", FORCED_CLOSED),
            ("disable", DISABLED),
        ):
            if options[option]:
                force(options[option], state)
                self.stdout.write(f"{options[option]}: {state}")
                return
        if options["reset"]:
            reset(options["reset"])
            self.stdout.write(f"{options['reset']}: {CLOSED} (reset)")
            return
        statuses = all_breakers()
        if options["json"]:
            self.stdout.write(json.dumps([asdict(s) for s in statuses]))
            return
        if not statuses:
            self.stdout.write("no circuit breakers have been used yet")
            return
        self.stdout.write(
            f"{'key':40} {'state':14} {'fail%':>6} {'calls':>6} {'rejected':>8}  last transition"
        )
        for s in statuses:
            ago = f"{time.time() - s.last_transition_at:.0f}s ago" if s.last_transition_at else "-"
            self.stdout.write(
                f"{s.key:40} {s.state:14} {s.failure_rate * 100:6.1f} {s.calls:6} {s.rejections:8}  "
                f"{s.last_transition or '-'} {ago}"
            )

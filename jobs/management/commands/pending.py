"""manage.py pending: what batched work waits, and the items set aside because their drains
kept dying (jobs.pending): list them, requeue them once the fault is fixed, or discard them."""

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.pending import PendingWork


def _kinds() -> dict[str, PendingWork]:
    from jobs.search_tasks import PENDING as PENDING_INDEXING
    from jobs.tasks import PENDING_UNFURLS

    return {work.name: work for work in (PENDING_UNFURLS, PENDING_INDEXING)}


class Command(BaseCommand):
    help = "List pending batched work by kind and group, or requeue or discard a group's set-aside items."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the list as JSON")
        steer = parser.add_mutually_exclusive_group()
        steer.add_argument(
            "--requeue", nargs=2, metavar=("KIND", "GROUP"), help="set-aside items pending again"
        )
        steer.add_argument("--discard", nargs=2, metavar=("KIND", "GROUP"), help="drop set-aside items")

    def handle(self, *args: Any, **options: Any) -> None:
        kinds = _kinds()
        for option, verb in (("requeue", "requeued"), ("discard", "discarded")):
            if options[option]:
                name, group = options[option]
                work = kinds.get(name)
                if work is None:
                    raise CommandError(f"no kind of work {name!r}; the kinds are: {', '.join(sorted(kinds))}")
                done = work.requeue_set_aside(group) if option == "requeue" else work.discard_set_aside(group)
                if not done:
                    raise CommandError(f"nothing set aside in {name} group {group!r}")
                self.stdout.write(f"{name} {group}: {done} items {verb}")
                return
        states = {name: work.groups() for name, work in sorted(kinds.items())}
        if options["json"]:
            self.stdout.write(
                json.dumps({name: [asdict(s) for s in groups] for name, groups in states.items()})
            )
            return
        if not any(states.values()):
            self.stdout.write("nothing pending, claimed or set aside")
            return
        self.stdout.write(f"{'kind':10} {'group':24} {'pending':>8} {'claimed':>8} {'set aside':>9}")
        for name, groups in states.items():
            for s in groups:
                self.stdout.write(f"{name:10} {s.group:24} {s.pending:8} {s.claimed:8} {len(s.set_aside):9}")
                for item in s.set_aside:
                    self.stdout.write(f"{'':10}   set aside: {item}")

"""manage.py move_team: move a team to another shard online (or resume a move that stopped)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from teams.errors import ApiError
from teams.moves import STEPS, find_team, move_team_to_shard


class Command(BaseCommand):
    help = (
        "Move a team to another shard while it keeps working: copy, a short write freeze, "
        "verify, flip the directory, clean up. Run it again to resume a move that stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="team domain or T… id")
        parser.add_argument("--to", required=True, dest="target", help="the shard to move to, e.g. shard_1")
        parser.add_argument(
            "--stop-after",
            choices=STEPS,
            help="stop once this step is done (e.g. copy now, freeze later); run again to continue",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            team = find_team(options["team"])
            move = move_team_to_shard(
                team, options["target"], stop_after=options["stop_after"], progress=self.stdout.write
            )
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}" if exc.detail else exc.code) from None
        if move.finished is None:
            self.stdout.write(f"Stopped after step {move.step}; run the same command again to continue.")

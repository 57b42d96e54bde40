"""manage.py move_team: move a team to another shard online (or resume a move that stopped)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from teams.errors import ApiError
from teams.moves import STEPS, abandon_move, find_team, move_team_to_shard


class Command(BaseCommand):
    help = (
        "Move a team to another shard while it keeps working: copy, a short write freeze, "
        "verify, flip the directory, clean up. Run it again to resume a move that stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="team domain or T… id")
        parser.add_argument("--to", dest="target", help="the shard to move to, e.g. shard_1")
        parser.add_argument(
            "--stop-after",
            choices=STEPS,
            help="stop once this step is done (e.g. copy now, freeze later); run again to continue",
        )
        parser.add_argument(
            "--abandon",
            action="store_true",
            help="give up the team's unfinished move (before its flip): the team stays where it is",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            team = find_team(options["team"])
            if options["abandon"]:
                abandon_move(team, progress=self.stdout.write)
                return
            if not options["target"]:
                raise CommandError("give --to <shard> (or --abandon)")
            move = move_team_to_shard(
                team, options["target"], stop_after=options["stop_after"], progress=self.stdout.write
            )
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}" if exc.detail else exc.code) from None
        if move.finished is None:
            self.stdout.write(f"Stopped after step {move.step}; run the same command again to continue.")

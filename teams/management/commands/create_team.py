"""manage.py create_team: a new team with its owner, a bot and #general/#random."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from teams.actions import create_team
from teams.errors import ApiError


class Command(BaseCommand):
    help = "Create a team (owner, bot, #general, #random) and print its tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--domain", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner-email", required=True)
        parser.add_argument("--password", help="lets the owner sign in to the web client")
        parser.add_argument("--shard", help="shard alias (shard_N); default: placement policy")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = create_team(
                options["domain"],
                options["name"],
                options["owner_email"],
                password=options["password"],
                shard=options["shard"],
            )
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}" if exc.detail else exc.code) from None
        result = created.as_json()
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(f"Created {result['domain']} ({result['team_id']}) on {result['shard']}")
            self.stdout.write(f"owner token: {result['owner']['token']}")  # type: ignore[index]
            self.stdout.write(f"bot token:   {result['bot']['token']}")  # type: ignore[index]

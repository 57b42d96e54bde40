"""manage.py create_member: add a person to a team and print their token."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from teams import ids
from teams.actions import create_member
from teams.directory import team_by_domain
from teams.errors import ApiError


class Command(BaseCommand):
    help = "Add a member to a team and print their user id and token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="team domain")
        parser.add_argument("--email", required=True)
        parser.add_argument("--name")
        parser.add_argument("--password", help="lets them sign in to the web client")
        parser.add_argument("--admin", action="store_true")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            team = team_by_domain(options["team"])
            member, token = create_member(
                team,
                options["email"],
                name=options["name"],
                password=options["password"],
                is_admin=options["admin"],
            )
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}" if exc.detail else exc.code) from None
        result = {"user_id": ids.encode(ids.USER, member.id), "token": token}
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(f"Added {member.name} ({result['user_id']}) to {team.domain}; token {token}")

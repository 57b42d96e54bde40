"""manage.py seed_demo: the first time, a demo team to sign in to; later, nothing."""

from typing import Any

from django.core.management.base import BaseCommand

from teams.actions import create_member, create_team
from teams.directory import team_by_domain
from teams.models import Team

DEMO_DOMAIN = "demo"
DEMO_PASSWORD = "demo-password"
DEMO_PEOPLE = [("alice@example.com", "Alice"), ("bob@example.com", "Bob"), ("carol@example.com", "Carol")]


class Command(BaseCommand):
    help = "Create the demo team (alice, bob, carol) unless it exists."

    def handle(self, *args: Any, **options: Any) -> None:
        if not Team.objects.filter(domain=DEMO_DOMAIN).exists():
            owner_email, _ = DEMO_PEOPLE[0]
            created = create_team(DEMO_DOMAIN, "Demo Team", owner_email, password=DEMO_PASSWORD)
            team = team_by_domain(DEMO_DOMAIN)
            for email, name in DEMO_PEOPLE[1:]:
                create_member(team, email, name=name, password=DEMO_PASSWORD)
            self.stdout.write(f"Created the demo team on {created.team.shard}.")
            self.stdout.write(f"Bot token for API experiments: {created.bot_token}")
        emails = ", ".join(email for email, _ in DEMO_PEOPLE)
        self.stdout.write(f"Sign in as any of {emails} with password {DEMO_PASSWORD!r}.")

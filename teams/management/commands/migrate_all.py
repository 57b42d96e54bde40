"""Migrate the control database and every configured shard."""

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Apply migrations to the control database and every shard."

    def handle(self, *args: Any, **options: Any) -> None:
        for alias in settings.DATABASES:
            self.stdout.write(f"migrating {alias}")
            call_command("migrate", database=alias, interactive=False, verbosity=0)

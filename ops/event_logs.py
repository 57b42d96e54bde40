"""Event log size per team, read from each shard (a shard that is down shows its error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, connections, transaction

from chatproject.dbrouter import set_local_timeouts
from teams.models import Team

STATEMENT_TIMEOUT_MS = 5000  # a count over a huge log must not hold an admin page forever

_PER_TEAM_SQL = """
SELECT team_id, count(*), min(event_id), max(event_id), min(created), max(created)
FROM messaging_event GROUP BY team_id ORDER BY count(*) DESC
"""


@dataclass
class TeamEventLog:
    team_id: int
    domain: str
    events: int
    first_event_id: int
    last_event_id: int
    oldest: datetime
    newest: datetime


@dataclass
class ShardEventLog:
    alias: str
    table_bytes: int = 0
    teams: list[TeamEventLog] = field(default_factory=list)
    error: str = ""


def _read_shard(alias: str, domains: dict[int, str]) -> ShardEventLog:
    report = ShardEventLog(alias)
    try:
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            set_local_timeouts(cursor, statement_ms=STATEMENT_TIMEOUT_MS)
            cursor.execute("SELECT pg_total_relation_size('messaging_event')")
            (report.table_bytes,) = cursor.fetchone()
            cursor.execute(_PER_TEAM_SQL)
            for team_id, count, first, last, oldest, newest in cursor.fetchall():
                domain = domains.get(team_id, f"(not in directory: {team_id})")
                report.teams.append(TeamEventLog(team_id, domain, count, first, last, oldest, newest))
    except DatabaseError as exc:
        report.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return report


def event_log_sizes() -> list[ShardEventLog]:
    domains = dict(Team.objects.values_list("id", "domain"))
    return [_read_shard(alias, domains) for alias in settings.SHARD_ALIASES]

"""What each configured shard holds: its teams (from the directory) and its size (asked of
the shard itself, which may be down: then it says so instead of failing)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import Count

from chatproject.dbrouter import set_local_timeouts
from teams.directory import accepts_new_teams, place_new_team
from teams.errors import ApiError
from teams.models import Team

SIZE_STATEMENT_TIMEOUT_MS = 3000  # sizes are cheap; a shard slower than this is reported, not waited on


@dataclass
class ShardReport:
    alias: str
    server: str  # host:port/database, never the password
    teams: int
    teams_by_status: dict[str, int] = field(default_factory=dict)
    size_bytes: int | None = None
    event_log_rows: int | None = None  # an estimate (planner statistics)
    reachable: bool = True
    error: str = ""
    accepts_new_teams: bool = True


def _server(alias: str) -> str:
    config = connections.settings[alias]
    return f"{config.get('HOST') or 'localhost'}:{config.get('PORT') or 5432}/{config['NAME']}"


def _measure(report: ShardReport) -> None:
    try:
        with transaction.atomic(using=report.alias), connections[report.alias].cursor() as cursor:
            set_local_timeouts(cursor, statement_ms=SIZE_STATEMENT_TIMEOUT_MS)
            cursor.execute(
                "SELECT pg_database_size(current_database()),"
                " (SELECT reltuples::bigint FROM pg_class WHERE relname = 'messaging_event')"
            )
            report.size_bytes, estimate = cursor.fetchone()
            report.event_log_rows = max(int(estimate or 0), 0)
    except DatabaseError as exc:
        report.reachable = False
        report.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def shard_reports(measure: bool = True) -> list[ShardReport]:
    counts: dict[str, dict[str, int]] = {}
    for shard, status, n in Team.objects.values_list("shard", "status").annotate(n=Count("id")):
        counts.setdefault(shard, {})[status] = n
    reports = []
    for alias in settings.SHARD_ALIASES:
        by_status = counts.get(alias, {})
        report = ShardReport(
            alias,
            _server(alias),
            sum(by_status.values()),
            by_status,
            accepts_new_teams=accepts_new_teams(alias),
        )
        if measure:
            _measure(report)
        reports.append(report)
    return reports


def next_placement() -> str | None:
    """Where the placement policy would put a new team now (None when no shard takes one)."""
    try:
        return place_new_team()
    except ApiError:
        return None

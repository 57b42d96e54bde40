"""A transfer job's progress row: phase, items done of total, errors, status, what an
import skipped; and the JSON shape the Web API, the admin and the web client read it in."""

from __future__ import annotations

import time
from typing import Any

from django.urls import reverse
from django.utils import timezone

from jobs.models import TransferJob
from teams import ids
from teams.auth import TEAM_QUERY

S = TransferJob.Status
EXPIRED = "expired"  # the phase of a done export whose zip was deleted (jobs.slack_export.retention)
SAVE_EVERY_SECS = 0.5  # progress is for people watching; no need to write it per item
_last_saved: dict[int, float] = {}
MAX_SKIPPED_KEPT = 10_000  # the report keeps this many entries and counts the rest


def save_progress(job: TransferJob, phase: str, done: int, total: int, *, force: bool = False) -> None:
    job.phase, job.done, job.total = phase, done, total
    now = time.monotonic()
    if force or now - _last_saved.get(job.id, 0.0) >= SAVE_EVERY_SECS:
        _last_saved[job.id] = now
        job.updated = timezone.now()
        job.save(update_fields=["phase", "done", "total", "updated"])


def save_checkpoint(job: TransferJob, **changes: Any) -> None:
    """Record how far the job got; called after the shard commit it describes."""
    job.checkpoint = {**job.checkpoint, **changes}
    job.updated = timezone.now()
    job.save(update_fields=["checkpoint", "phase", "done", "total", "updated"])


def set_status(job: TransferJob, status: str, *, error: str | None = None) -> None:
    job.status = status
    if error:
        job.errors = [*job.errors, error]
    if status == S.DONE:
        job.phase = "done"
    job.updated = timezone.now()
    job.save(update_fields=["status", "errors", "phase", "done", "total", "updated"])


class SkipReport:
    """What an import leaves out, as its job reports it: the first MAX_SKIPPED_KEPT
    entries, then how many more. No more is held: an archive may skip millions."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.more = 0

    def extend(self, entries: list[str]) -> None:
        room = MAX_SKIPPED_KEPT - len(self.kept)
        self.kept.extend(entries[:room])
        self.more += max(len(entries) - room, 0)

    def entries(self) -> list[str]:
        return [*self.kept, f"... and {self.more} more"] if self.more else self.kept


def download_url(job: TransferJob) -> str | None:
    if job.kind != TransferJob.Kind.EXPORT or job.status != S.DONE or job.phase == EXPIRED:
        return None  # jobs.slack_export.retention deleted the zip
    url = reverse("transfer_download", args=[job.id])
    if job.requested_by_team_id is None:
        return url
    # Names its team (the one whose admins may have it), not the session's last: the link
    # may sit in a tab of another team than the one opened last (teams.auth.TEAM_QUERY).
    return f"{url}?{TEAM_QUERY}={ids.encode(ids.TEAM, job.requested_by_team_id)}"


def job_json(job: TransferJob) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "kind": job.kind,
        "status": job.status,
        "phase": job.phase,
        "done": job.done,
        "total": job.total,
        "errors": list(job.errors),
        "team_id": ids.encode(ids.TEAM, job.team_id) if job.team_id else None,
        "domain": job.domain or None,
        "download_url": download_url(job),
    }

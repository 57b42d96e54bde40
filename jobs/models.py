"""Control-database rows of long jobs: an import or export's progress, checkpoint and
report. They live in the control database because an import's team does not exist (or
is invisible) until the job is done, and the job must still be found."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils import timezone

from teams.models import chat_id_field


class TransferJob(models.Model):
    class Kind(models.TextChoices):
        IMPORT = "import"
        EXPORT = "export"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        PAUSED = "paused"  # a breaker is open: rescheduled, not failed
        DONE = "done"
        FAILED = "failed"

    id = chat_id_field()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    phase = models.CharField(max_length=32, default="queued")
    done = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    team_id = models.BigIntegerField(null=True, blank=True)  # imported into / exported from
    domain = models.CharField(max_length=63, blank=True, default="")
    # Who asked: their team's admins may read the job (the imported team is not theirs yet).
    requested_by_team_id = models.BigIntegerField(null=True, blank=True)
    requested_by_account_id = models.BigIntegerField(null=True, blank=True)
    archive = models.CharField(max_length=1000, blank=True, default="")  # import source / export output
    options = models.JSONField(default=dict, blank=True)
    checkpoint = models.JSONField(default=dict, blank=True)  # where a resumed run picks up
    skipped = models.JSONField(default=list, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes: ClassVar[list[models.Index]] = [models.Index(fields=["requested_by_team_id", "created"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status}, {self.phase} {self.done}/{self.total})"

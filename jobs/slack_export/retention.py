"""Finished exports are kept for download for EXPORT_RETENTION_SECS, then deleted (beat
runs `jobs.prune_exports` hourly), with the staged parts any ended export left behind.
Only files under TRANSFER_DIR are touched: a zip written by `manage.py export_team` to a
path of the operator's choosing is theirs."""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from jobs.models import TransferJob
from jobs.slack_export.exporter import partial_file, staging_dir
from jobs.slack_export.progress import EXPIRED, S

logger = logging.getLogger(__name__)
PRUNED = "pruned"  # checkpoint key of a failed export whose leftovers were deleted


def _ours(path: Path) -> bool:
    return path.resolve().is_relative_to(Path(settings.TRANSFER_DIR).resolve())


def prune_exports(retention_secs: float | None = None) -> int:
    """Delete the zips of exports that ended longer ago than the retention; returns how many."""
    retention_secs = settings.EXPORT_RETENTION_SECS if retention_secs is None else retention_secs
    cutoff = timezone.now() - timedelta(seconds=retention_secs)
    ended = (
        TransferJob.objects.filter(
            kind=TransferJob.Kind.EXPORT, status__in=[S.DONE, S.FAILED], updated__lt=cutoff
        )
        .exclude(phase=EXPIRED)
        .exclude(checkpoint__has_key=PRUNED)
    )
    pruned = 0
    for job in ended.iterator():
        output = Path(job.archive)
        if job.archive and _ours(output):
            output.unlink(missing_ok=True)
            partial_file(job).unlink(missing_ok=True)
            shutil.rmtree(staging_dir(job), ignore_errors=True)
            pruned += 1
        # `updated` stays: when the export ended. A failed job keeps its phase (where it
        # failed); a done one's says its zip is gone (no download link).
        if job.status == S.DONE:
            job.phase = EXPIRED
            job.save(update_fields=["phase"])
        else:
            job.checkpoint = {**job.checkpoint, PRUNED: True}
            job.save(update_fields=["checkpoint"])
    if pruned:
        logger.info("deleted %s expired exports", pruned)
    return pruned

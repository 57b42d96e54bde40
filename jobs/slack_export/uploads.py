"""Starting transfer jobs from a door (the Web API or Django admin): keeping an uploaded
archive and queueing the job, the same way whichever door it came in."""

from __future__ import annotations

import logging
import re
import secrets
import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from jobs.breakers import BreakerOpen
from jobs.models import TransferJob
from jobs.slack_export.storage import StorageFailure, on_store
from teams.errors import ApiError

logger = logging.getLogger(__name__)

UPLOAD_RETRY_AFTER_SECS = 30


def save_upload(upload: UploadedFile) -> Path:
    """Keep an uploaded archive under TRANSFER_DIR until its job ends."""
    if upload.size is not None and upload.size > settings.IMPORT_MAX_UPLOAD_BYTES:
        raise ApiError("file_too_large", f"uploads are limited to {settings.IMPORT_MAX_UPLOAD_BYTES} bytes")
    # Kept under the uploaded name (made safe): a new team's default domain comes from it.
    safe_name = re.sub(r"[^A-Za-z0-9._ -]+", "", Path(upload.name or "").name).strip(" .") or "export.zip"
    path = Path(settings.TRANSFER_DIR) / f"import-{secrets.token_hex(8)}" / safe_name
    try:
        with on_store():
            path.parent.mkdir(parents=True)
            with path.open("wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
    except (StorageFailure, BreakerOpen) as exc:
        shutil.rmtree(path.parent, ignore_errors=True)  # nothing half written is kept
        logger.warning("upload %s refused: %s", safe_name, exc)
        raise ApiError(
            "service_unavailable",
            "the archive store is not taking files now; try again later",
            status=503,
            retry_after=UPLOAD_RETRY_AFTER_SECS,
        ) from None
    return path


def queue_job(job: TransferJob) -> None:
    from jobs.transfer_tasks import enqueue

    try:
        enqueue(job)
    except Exception as exc:  # the stalled-job sweep queues it once the broker is back
        logger.warning("transfer job %s not queued yet: %s", job.id, exc)

"""admin.teams.import, admin.teams.export, admin.jobs.info: whole teams in and out of
Slack's export format as background jobs, for a team's admins and owners."""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import Annotated, Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from pydantic import ConfigDict, WithJsonSchema

from jobs.models import TransferJob
from jobs.slack_export.access import admin_account_id, job_for_admin
from jobs.slack_export.exporter import start_export
from jobs.slack_export.importer import start_import
from jobs.slack_export.progress import job_json
from messaging.api.registry import ApiCall, Args, api_method
from teams.errors import ApiError

logger = logging.getLogger(__name__)


class ImportArgs(Args):
    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)
    file: Annotated[UploadedFile, WithJsonSchema({"type": "string", "format": "binary"})]
    domain: str = ""
    name: str = ""


def _queue(job: TransferJob) -> None:
    from jobs.transfer_tasks import enqueue

    try:
        enqueue(job)
    except Exception as exc:  # the stalled-job sweep queues it once the broker is back
        logger.warning("transfer job %s not queued yet: %s", job.id, exc)


def _save_upload(upload: UploadedFile) -> Path:
    if upload.size is not None and upload.size > settings.IMPORT_MAX_UPLOAD_BYTES:
        raise ApiError("file_too_large", f"uploads are limited to {settings.IMPORT_MAX_UPLOAD_BYTES} bytes")
    folder = Path(settings.TRANSFER_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    # Kept under the uploaded name (made safe): a new team's default domain comes from it.
    safe_name = re.sub(r"[^A-Za-z0-9._ -]+", "", Path(upload.name or "").name).strip(" .") or "export.zip"
    path = folder / f"import-{secrets.token_hex(8)}" / safe_name
    path.parent.mkdir()
    with path.open("wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return path


@api_method("admin.teams.import", ImportArgs, tier=1, errors={"file": "no_file_data"})
def teams_import(call: ApiCall) -> dict[str, Any]:
    """Import a Slack export zip (`file`) into a new team owned by the caller."""
    account_id = admin_account_id(call.caller)
    if not isinstance(call.args.file, UploadedFile):
        raise ApiError("no_file_data")
    path = _save_upload(call.args.file)
    try:
        job = start_import(
            path,
            domain=call.args.domain or None,
            name=call.args.name or None,
            owner_account_id=account_id,
            requested_by_team_id=call.caller.team_id,
        )
    except ApiError:
        path.unlink(missing_ok=True)
        raise
    _queue(job)
    return {"job": job_json(job)}


@api_method("admin.teams.export", tier=1)
def teams_export(call: ApiCall) -> dict[str, Any]:
    """Export the caller's team to a Slack export zip."""
    job = start_export(call.caller.team, requested_by_account_id=admin_account_id(call.caller))
    _queue(job)
    return {"job": job_json(job)}


class JobArgs(Args):
    job: str


@api_method("admin.jobs.info", JobArgs, tier=4, errors={"job": "job_not_found"})
def jobs_info(call: ApiCall) -> dict[str, Any]:
    """Progress of an import or export job the caller's team started."""
    return {"job": job_json(job_for_admin(call.caller, call.args.job))}

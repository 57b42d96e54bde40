"""admin.teams.import, admin.teams.export, admin.jobs.info: whole teams in and out of
Slack's export format as background jobs, for a team's admins and owners."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from django.core.files.uploadedfile import UploadedFile
from pydantic import ConfigDict, WithJsonSchema

from jobs.slack_export.access import admin_account_id, job_for_admin
from jobs.slack_export.exporter import start_export
from jobs.slack_export.progress import job_json
from jobs.slack_export.reserve import start_import
from jobs.slack_export.uploads import queue_job, save_upload
from messaging.api.registry import ApiCall, Args, api_method
from teams.errors import ApiError

logger = logging.getLogger(__name__)


class ImportArgs(Args):
    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)
    file: Annotated[UploadedFile, WithJsonSchema({"type": "string", "format": "binary"})]
    domain: str = ""
    name: str = ""


@api_method("admin.teams.import", ImportArgs, tier=1, errors={"file": "no_file_data"})
def teams_import(call: ApiCall) -> dict[str, Any]:
    """Import a Slack export zip (`file`) into a new team owned by the caller, or into an
    existing empty team the caller owns (`domain` naming it)."""
    account_id = admin_account_id(call.caller)
    if not isinstance(call.args.file, UploadedFile):
        raise ApiError("no_file_data")
    path = save_upload(call.args.file)
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
    queue_job(job)
    return {"job": job_json(job)}


@api_method("admin.teams.export", tier=1)
def teams_export(call: ApiCall) -> dict[str, Any]:
    """Export the caller's team to a Slack export zip."""
    job = start_export(call.caller.team, requested_by_account_id=admin_account_id(call.caller))
    queue_job(job)
    return {"job": job_json(job)}


class JobArgs(Args):
    job: str


@api_method("admin.jobs.info", JobArgs, tier=4, errors={"job": "job_not_found"})
def jobs_info(call: ApiCall) -> dict[str, Any]:
    """Progress of an import or export job the caller's team started."""
    return {"job": job_json(job_for_admin(call.caller, call.args.job))}

"""Serves a finished export's zip to the admins of the exported team (a token or the
signed-in session; the download link names its team, ?team=T…, as a tab's calls do)."""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse

from jobs.slack_export.access import job_for_admin
from jobs.slack_export.progress import S
from teams.auth import Caller, caller_from_session, caller_from_token
from teams.errors import ApiError


def _caller(request: HttpRequest) -> Caller:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return caller_from_token(header[7:].strip())
    # A plain link: the team it names, not the one the session opened last (another tab's).
    return caller_from_session(request, in_query=True)


def download_export(request: HttpRequest, job_id: int) -> HttpResponse:
    try:
        job = job_for_admin(_caller(request), job_id)
        if job.kind != "export" or job.status != S.DONE or not Path(job.archive).is_file():
            raise ApiError("job_not_found")
    except ApiError as exc:
        return JsonResponse(
            {"ok": False, "error": exc.code}, status=404 if exc.code == "job_not_found" else 403
        )
    return FileResponse(
        Path(job.archive).open("rb"), as_attachment=True, filename=f"{job.domain} Slack export.zip"
    )

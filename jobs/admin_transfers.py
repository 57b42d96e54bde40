"""Starting exports and imports from Django admin: an action on the team list and an
upload page beside the job list. Same functions as the Web API (jobs.slack_export)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from jobs.models import TransferJob
from jobs.slack_export.exporter import start_export
from jobs.slack_export.progress import S
from jobs.slack_export.reserve import start_import
from jobs.slack_export.uploads import queue_job, save_upload
from teams.directory import team_entry
from teams.errors import ApiError
from teams.models import Team

RECENT_ENDED = 10  # finished jobs the dashboard keeps showing


def transfer_progress() -> list[dict[str, Any]]:
    """Imports and exports for the jobs dashboard (ops.admin.PROGRESS_SOURCES): every
    unfinished one, and the last few that ended."""
    unfinished = TransferJob.objects.exclude(status__in=[S.DONE, S.FAILED])
    ended = TransferJob.objects.filter(status__in=[S.DONE, S.FAILED]).order_by("-updated")[:RECENT_ENDED]
    return [
        {
            "kind": job.kind,
            "team": job.domain,
            "state": f"{job.status} ({job.phase})" if job.phase else job.status,
            "done": job.done,
            "total": job.total,
            "started": job.created,
            "error": (job.errors or [""])[-1],
        }
        for job in [*unfinished.order_by("-created"), *ended]
    ]


@admin.action(description="Export selected teams (Slack export zip)", permissions=["run_actions"])
def export_teams(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Team]) -> None:
    started, refused = [], []
    for team in list(queryset):
        if team.status != Team.Status.ACTIVE:
            refused.append(f"{team.domain}: team is {team.status}")
            continue
        job = start_export(team_entry(team.id), requested_by_account_id=request.user.pk)
        queue_job(job)
        started.append(f"{team.domain} (job {job.id})")
    if started:
        messages.success(
            request, "Export started for " + ", ".join(started) + "; progress under Transfer jobs."
        )
    for line in refused:
        messages.error(request, f"Not exported: {line}")


class ImportForm(forms.Form):
    archive = forms.FileField(help_text="A Slack export zip, as Slack's exporter writes it.")
    domain = forms.CharField(
        required=False,
        help_text=(
            "The new team's domain (default: from the file name), or an existing empty team's "
            "(its owner, bot and default channels merge with the archive's)."
        ),
    )
    name = forms.CharField(required=False)
    shard = forms.ChoiceField(required=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["shard"].choices = [("", "(placement policy)"), *((a, a) for a in settings.SHARD_ALIASES)]


def import_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """Upload an export; the import runs as a job into a new team or an existing empty one
    (invisible until done)."""
    if not model_admin.has_view_permission(request) or not request.user.is_superuser:
        return HttpResponse("Only superusers import teams.", status=403)
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            path = save_upload(data["archive"])
            try:
                job = start_import(
                    path,
                    domain=data["domain"] or None,
                    name=data["name"] or None,
                    shard=data["shard"] or None,
                )
            except ApiError:
                path.unlink(missing_ok=True)
                raise
        except ApiError as exc:
            form.add_error(None, f"{exc.code}: {exc.detail or exc.code}")
        else:
            queue_job(job)
            messages.success(request, f"Import of {job.domain} started (job {job.id}).")
            return HttpResponseRedirect(reverse("admin:jobs_transferjob_change", args=[job.id]))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Import a Slack export",
        "opts": model_admin.opts,
        "form": form,
    }
    return TemplateResponse(request, "admin/jobs/transferjob/import.html", context)

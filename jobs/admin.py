"""Import and export jobs in Django admin: progress, errors and the skipped-items report."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import URLPattern, path

from jobs.admin_transfers import import_view, transfer_progress
from jobs.models import TransferJob
from jobs.slack_export.progress import S
from jobs.transfer_tasks import abandon_transfer
from ops.admin import PROGRESS_SOURCES

PROGRESS_SOURCES.append(transfer_progress)


@admin.register(TransferJob)
class TransferJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "domain", "status", "phase", "done", "total", "updated")
    list_filter = ("kind", "status")
    search_fields = ("domain",)
    ordering = ("-created",)
    actions = ("abandon_imports",)
    exclude = ("checkpoint",)  # the id plan: large and for the job only
    readonly_fields = (
        "kind", "status", "phase", "done", "total", "errors", "team_id", "domain", "requested_by_team_id",
        "requested_by_account_id", "archive", "options", "skipped", "counts", "created", "updated",
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs start from their own pages: the import upload, the team export action

    def get_urls(self) -> list[URLPattern]:
        upload = path(
            "import/",
            self.admin_site.admin_view(lambda r: import_view(self, r)),
            name="jobs_transferjob_import",
        )
        return [upload, *super().get_urls()]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: TransferJob | None = None) -> bool:
        # An unfinished import keeps its team closed: deleting the job would leave it so for
        # good. "Abandon selected imports" puts the team back, then the job may go.
        if obj is not None and obj.kind == TransferJob.Kind.IMPORT and obj.status not in (S.DONE, S.FAILED):
            return False
        return super().has_delete_permission(request, obj)

    def has_run_actions_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(f"jobs.{get_permission_codename('change', self.opts)}"))

    @admin.action(
        description="Abandon selected imports (undo them: an existing team is put back as it was)",
        permissions=["run_actions"],
    )
    def abandon_imports(self, request: HttpRequest, queryset: QuerySet[TransferJob]) -> None:
        unfinished = queryset.filter(kind=TransferJob.Kind.IMPORT).exclude(status__in=[S.DONE, S.FAILED])
        for job in unfinished:
            ended = abandon_transfer(job.id, f"abandoned by {request.user}")
            if ended is None:
                self.message_user(
                    request, f"Job {job.id} ({job.domain}) is running now: try again", messages.ERROR
                )
            else:
                self.message_user(request, f"Job {job.id} ({job.domain}) abandoned: the import was undone")

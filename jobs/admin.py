"""Import and export jobs in Django admin: progress, errors and the skipped-items report."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern, path

from jobs.admin_transfers import import_view, transfer_progress
from jobs.models import TransferJob
from ops.admin import PROGRESS_SOURCES

PROGRESS_SOURCES.append(transfer_progress)


@admin.register(TransferJob)
class TransferJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "domain", "status", "phase", "done", "total", "updated")
    list_filter = ("kind", "status")
    search_fields = ("domain",)
    ordering = ("-created",)
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

"""Import and export jobs in Django admin: progress, errors and the skipped-items report."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from jobs.models import TransferJob


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
        return False  # jobs start from manage.py or the Web API

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

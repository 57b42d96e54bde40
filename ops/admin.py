"""Operations dashboards in Django admin: circuit breakers (with manual control), job
queues and outcomes, event log sizes. Staff with the model's view permission may look;
steering a breaker needs its change permission, a POST and the CSRF token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from redis import RedisError

from jobs.breaker_log import recent_transitions
from jobs.breakers import DISABLED, FORCED_CLOSED, FORCED_OPEN, all_breakers, force, reset
from ops.event_logs import event_log_sizes
from ops.job_stats import job_stats
from ops.models import CircuitBreaker, EventLog, JobQueue

# Sources of long-running job progress (imports and exports register theirs here): each
# returns rows {"kind", "team", "state", "done", "total", "started", "error"} for the
# jobs dashboard. Registered from the app that owns the jobs, e.g. in its AppConfig.ready().
PROGRESS_SOURCES: list[Callable[[], list[dict[str, Any]]]] = []

BREAKER_COMMANDS = {"force-open": FORCED_OPEN, "force-closed": FORCED_CLOSED, "disable": DISABLED}


def _when(timestamp: float) -> datetime | None:
    return datetime.fromtimestamp(timestamp, tz=UTC) if timestamp else None


class DashboardAdmin(admin.ModelAdmin):
    """A model admin whose list page is a dashboard (the model has no rows)."""

    template = ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.dashboard_view), name=name)]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            self.handle_post(request)
            return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": str(self.opts.verbose_name_plural).capitalize(),
            "can_change": self.has_change_permission(request),
        }
        try:
            context.update(self.dashboard_context(request))
        except RedisError as exc:
            context["unavailable"] = f"Redis is unreachable: {exc}"
        return TemplateResponse(request, self.template, context)

    def dashboard_context(self, request: HttpRequest) -> dict[str, Any]:
        return {}

    def handle_post(self, request: HttpRequest) -> None:
        raise PermissionDenied


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(DashboardAdmin):
    template = "admin/ops/breakers.html"

    def dashboard_context(self, request: HttpRequest) -> dict[str, Any]:
        breakers = [
            {**asdict(b), "retry_at_time": _when(b.retry_at), "changed": _when(b.last_transition_at)}
            for b in all_breakers()
        ]
        transitions = [{**t, "time": _when(t["at"])} for t in recent_transitions()]
        return {"breakers": breakers, "transitions": transitions, "commands": BREAKER_COMMANDS}

    def handle_post(self, request: HttpRequest) -> None:
        key, command = request.POST.get("key", "").strip(), request.POST.get("command", "")
        if not key or (command not in BREAKER_COMMANDS and command != "reset"):
            messages.error(request, "Choose a breaker and what to do with it.")
            return
        try:
            if command == "reset":
                reset(key)
            else:
                force(key, BREAKER_COMMANDS[command])
        except RedisError as exc:
            messages.error(request, f"Redis is unreachable; {key} is unchanged: {exc}")
            return
        messages.success(request, f"{key}: {command}")


@admin.register(JobQueue)
class JobQueueAdmin(DashboardAdmin):
    template = "admin/ops/jobs.html"

    def dashboard_context(self, request: HttpRequest) -> dict[str, Any]:
        stats = job_stats()
        failures = [{**f, "time": _when(f["at"])} for f in stats.recent_failures]
        outcomes = [
            {"task": task, "running": stats.running.get(task, 0), **counts}
            for task, counts in sorted(stats.outcomes.items())
        ]
        for task, running in stats.running.items():
            if task not in stats.outcomes:
                outcomes.append({"task": task, "running": running, "succeeded": 0, "failed": 0, "retried": 0})
        progress = [row for source in PROGRESS_SOURCES for row in source()]
        return {"stats": stats, "outcomes": outcomes, "failures": failures, "progress": progress}


@admin.register(EventLog)
class EventLogAdmin(DashboardAdmin):
    template = "admin/ops/event_logs.html"

    def dashboard_context(self, request: HttpRequest) -> dict[str, Any]:
        return {"shards": event_log_sizes()}

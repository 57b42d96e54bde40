"""/healthz, /readyz and /metrics: for load balancers, orchestrators and Prometheus.

None of them needs a session, CSRF or a team; /healthz touches nothing at all.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from ops.collectors import exposition
from ops.health import readiness


@csrf_exempt
@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive and serving (restart it when this fails)."""
    return JsonResponse({"status": "ok"})


@csrf_exempt
@never_cache
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Whether every part this process depends on answers; 503 when one does not."""
    report = readiness()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


@csrf_exempt
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)

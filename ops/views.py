"""/healthz, /readyz and /metrics: for load balancers, orchestrators and Prometheus.

None of them needs a session, CSRF or a team; /healthz touches nothing at all. /metrics
wants CHAT_METRICS_TOKEN as a bearer token.
"""

from __future__ import annotations

import hmac

from django.conf import settings
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
    if not may_scrape(request):
        response = HttpResponse(
            "/metrics needs CHAT_METRICS_TOKEN as a bearer token (set it on the server first)\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def may_scrape(request: HttpRequest) -> bool:
    """Only the configured bearer token; without one, nobody. Where a request came from
    proves nothing: a reverse proxy on the same host (nginx's default proxy_pass adds no
    forwarding header) makes every visitor's request look local."""
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

"""Counts every HTTP response, and answers 503 (retryable) when a page's shard is down."""

from __future__ import annotations

from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse

from chatproject.shard_outage import ShardUnavailable
from ops.metrics import count_http

RETRY_AFTER_SECS = 5


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        count_http(request.method or "", response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # A page whose shard (or the control database) is unreachable: say so, quickly and
        # retryably, instead of a 500. The API answers its own Slack-style error.
        if isinstance(exception, OperationalError):
            response = HttpResponse(
                "This team is temporarily unavailable. Please try again in a few seconds.\n",
                status=503,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(RETRY_AFTER_SECS)
            if isinstance(exception, ShardUnavailable):
                response._has_been_logged = True  # type: ignore[attr-defined]  # logged once, when marked
            return response
        return None

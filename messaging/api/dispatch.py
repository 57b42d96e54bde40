"""The one view behind /api/<method>: parse, authenticate, rate-limit, validate, call.

Arguments come from the query string, a form body or a JSON body; the token from
`Authorization: Bearer`, the `token` argument, or the signed-in session (with CSRF).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import DatabaseError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from redis import RedisError

from chatproject.dbrouter import on_shard
from chatproject.shard_outage import ShardUnavailable
from messaging.api import methods  # noqa: F401 - registers every method
from messaging.api.ratelimit import check_rate_limit
from messaging.api.registry import REGISTRY, ApiCall, ApiMethod, PreEncoded
from messaging.realtime.deflate import accepts_gzip
from ops.metrics import count_api_call
from teams.auth import Caller, caller_from_session, caller_from_token
from teams.errors import ApiError

logger = logging.getLogger(__name__)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_BODY_BYTES = 2 * 1024 * 1024
RETRY_AFTER_SECS = 5  # a shard or Redis outage is retried after this (clients add jitter)


def _params(request: HttpRequest) -> dict[str, Any]:
    params: dict[str, Any] = {k: v for k, v in request.GET.items()}
    if request.method != "POST":
        return params
    content_type = (request.content_type or "").lower()
    if content_type == "application/json":
        if len(request.body) > MAX_BODY_BYTES:
            raise ApiError("request_too_large", status=413)
        try:
            body = json.loads(request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError("invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError("json_not_object")
        params.update(body)
    elif content_type in FORM_TYPES:
        params.update({k: v for k, v in request.POST.items()})
        params.update({k: v for k, v in request.FILES.items()})  # uploads (admin.teams.import)
    elif request.body:
        raise ApiError("invalid_post_type", f"unsupported content type {content_type!r}")
    return params


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _session_caller(request: HttpRequest) -> Caller:
    if not request.user.is_authenticated:
        raise ApiError("not_authed")
    # Token calls are CSRF-exempt (no ambient credential); session calls are not, and only
    # POST is checked: a cookie sent with a GET (an <img> in a message, a link from another
    # site) would otherwise call any method as whoever's browser loaded it.
    if request.method != "POST":
        raise ApiError("invalid_csrf", "cookie calls must be POST, with the CSRF token", status=403)
    if CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {}) is not None:
        raise ApiError("invalid_csrf", status=403)
    return caller_from_session(request)


def _authenticate(request: HttpRequest, params: dict[str, Any]) -> Caller:
    token = _bearer(request) or params.pop("token", None)
    if token:
        if not isinstance(token, str):
            raise ApiError("invalid_auth")
        return caller_from_token(token)
    return _session_caller(request)


def _error(exc: ApiError) -> JsonResponse:
    response = JsonResponse({"ok": False, "error": exc.code}, status=exc.status)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


def _call(method: ApiMethod, request: HttpRequest) -> dict[str, Any] | PreEncoded:
    params = _params(request)
    if not method.needs_auth:
        params.pop("token", None)
        return method.handler(ApiCall(None, method.parse(params), request.build_absolute_uri("/")))  # type: ignore[arg-type]
    caller = _authenticate(request, params)
    check_rate_limit(caller, method)
    args = method.parse(params)
    gzip_ok = accepts_gzip(request.headers.get("Accept-Encoding", ""))
    with on_shard(caller.shard):
        return method.handler(ApiCall(caller, args, request.build_absolute_uri("/"), gzip_ok))


@csrf_exempt
def api_view(request: HttpRequest, method_name: str) -> HttpResponse:
    method = REGISTRY.get(method_name)
    error = "ok"
    try:
        if request.method not in ("GET", "POST"):
            raise ApiError("method_not_allowed", status=405)
        if method is None:
            raise ApiError("unknown_method", status=404)
        result = _call(method, request)
        if isinstance(result, PreEncoded):
            response = HttpResponse(result.body, content_type="application/json")
            if result.gzipped:
                response["Content-Encoding"] = "gzip"
            response["Vary"] = "Accept-Encoding"
            return response
        return JsonResponse({"ok": True, **result})
    except ApiError as exc:
        error = exc.code
        return _error(exc)
    except ShardUnavailable:
        # Known down (chatproject.shard_outage logged it once): answered at once, and not
        # logged again per call by Django either.
        error = "service_unavailable"
        response = _error(ApiError(error, status=503, retry_after=RETRY_AFTER_SECS))
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response
    except (OperationalError, RedisError):
        # The team's database (or Redis, for what cannot fail open) is unreachable: a
        # retryable error, fast, for this team only.
        logger.exception("service unavailable in %s", method_name)
        error = "service_unavailable"
        return _error(ApiError(error, status=503, retry_after=RETRY_AFTER_SECS))
    except DatabaseError:
        logger.exception("database error in %s", method_name)
        error = "internal_error"
        return _error(ApiError(error, status=500))
    finally:
        count_api_call(method.name if method else "unknown", error)

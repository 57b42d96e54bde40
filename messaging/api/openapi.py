"""The OpenAPI document of the Web API, generated from the schemas that validate input."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.http import HttpRequest, JsonResponse
from pydantic.json_schema import models_json_schema

from messaging.api.dispatch import REGISTRY

REF_TEMPLATE = "#/components/schemas/{model}"


def _response_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["ok"],
        "properties": {
            "ok": {"type": "boolean"},
            "error": {"type": "string", "description": "Slack's error code when ok is false"},
        },
        "additionalProperties": True,
    }


def _operation(name: str, schema_ref: str, summary: str, tier: int, needs_auth: bool) -> dict[str, Any]:
    body = {"$ref": schema_ref}
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": summary or name,
        "tags": [name.split(".")[0]],
        "x-rate-tier": tier,
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {"schema": body},
                "application/json": {"schema": body},
            },
        },
        "responses": {
            "200": {
                "description": "Slack-style result",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SlackResponse"}}},
            },
            "429": {"description": "rate limited; see Retry-After"},
        },
    }
    if not needs_auth:
        operation["security"] = []
    return operation


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    methods = sorted(REGISTRY.values(), key=lambda m: m.name)
    keyed = [((m.name, m.args), "validation") for m in methods]
    refs, defs = models_json_schema([(args, mode) for (_, args), mode in keyed], ref_template=REF_TEMPLATE)  # type: ignore[misc]
    schemas = dict(defs.get("$defs", {}))
    schemas["SlackResponse"] = _response_schema()
    paths = {}
    for method in methods:
        ref = refs[(method.args, "validation")]["$ref"]
        paths[f"/api/{method.name}"] = {
            "post": _operation(method.name, ref, method.summary, method.tier, method.needs_auth)
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Team chat Web API (a Slack-compatible subset)", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
    }


def openapi_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_document())

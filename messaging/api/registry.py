"""Declaring Web API methods: a name, a pydantic schema for its arguments (which also
feeds the OpenAPI document), the Slack error for each missing argument, a rate tier."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from teams.auth import Caller
from teams.errors import ApiError


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _json_list(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("not JSON") from None
    if value is not None and not isinstance(value, list):
        raise ValueError("not a JSON array")
    return value


def _slack_bool(value: Any) -> Any:
    # Slack's clients send "1"/"0", "true"/"false" and sometimes "" for false.
    if isinstance(value, str) and value.strip() == "":
        return False
    return value


CommaList = Annotated[list[str], BeforeValidator(_split_list)]
JsonList = Annotated[list[Any] | None, BeforeValidator(_json_list)]
SlackBool = Annotated[bool, BeforeValidator(_slack_bool)]


class Args(BaseModel):
    """Base of every method's arguments: unknown arguments are ignored, as Slack does."""

    model_config = ConfigDict(extra="ignore")


class PageArgs(Args):
    cursor: str = ""
    limit: int = 100


@dataclass(frozen=True)
class ApiCall:
    caller: Caller
    args: Any
    base_url: str
    accepts_gzip: bool = False  # the request's Accept-Encoding allows a gzip'd body

    @property
    def ws_base_url(self) -> str:
        """Where websockets dial: this server, over ws:// or wss:// as the request came."""
        return "ws" + self.base_url.removeprefix("http")


@dataclass(frozen=True)
class PreEncoded:
    """A whole response body already encoded as JSON (large, partly cached payloads)."""

    body: bytes
    gzipped: bool = False  # the body is gzip'd JSON (only when the request accepted gzip)


Handler = Callable[[ApiCall], "dict[str, Any] | PreEncoded"]


@dataclass(frozen=True)
class ApiMethod:
    name: str
    handler: Handler
    args: type[Args]
    tier: int
    needs_auth: bool = True
    errors: dict[str, str] = field(default_factory=dict)  # argument -> Slack error when bad/missing
    summary: str = ""

    def parse(self, params: dict[str, Any]) -> Args:
        try:
            return self.args.model_validate(params)
        except ValidationError as exc:
            first = exc.errors()[0]
            argument = str(first["loc"][0]) if first["loc"] else ""
            raise ApiError(
                self.errors.get(argument, "invalid_arguments"), f"{argument}: {first['msg']}"
            ) from None


REGISTRY: dict[str, ApiMethod] = {}

# Requests per minute per token and method, after Slack's tiers (generous, since one
# browser session or bot token carries a whole client).
TIER_LIMITS = {1: 20, 2: 100, 3: 300, 4: 600, 9: 1200}
POSTING_TIER = 9


def api_method(
    name: str,
    args: type[Args] = Args,
    *,
    tier: int = 3,
    needs_auth: bool = True,
    errors: dict[str, str] | None = None,
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        REGISTRY[name] = ApiMethod(
            name,
            handler,
            args,
            tier,
            needs_auth,
            errors or {},
            (handler.__doc__ or "").strip().split("\n")[0],
        )
        return handler

    return register

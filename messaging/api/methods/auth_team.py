"""api.test, auth.test, auth.revoke, team.info."""

from __future__ import annotations

from typing import Any

from messaging.api.registry import ApiCall, Args, api_method
from teams import ids
from teams.actions import revoke_member_tokens
from teams.errors import ApiError
from teams.models import Member
from teams.shapes import team_json


class ApiTestArgs(Args):
    model_config = Args.model_config | {"extra": "allow"}
    error: str = ""


@api_method("api.test", ApiTestArgs, tier=4, needs_auth=False)
def api_test(call: ApiCall) -> dict[str, Any]:
    """Checks API calling code: echoes the arguments, or fails with `error`."""
    if call.args.error:
        raise ApiError(call.args.error[:100])
    extra = call.args.model_extra or {}
    return {"args": extra} if extra else {}


@api_method("auth.test", tier=4)
def auth_test(call: ApiCall) -> dict[str, Any]:
    """Who the token belongs to."""
    caller = call.caller
    name = (
        Member.objects.filter(id=caller.member_id, team_id=caller.team_id)
        .values_list("name", flat=True)
        .first()
    )
    result: dict[str, Any] = {
        "url": call.base_url,
        "team": caller.team.name,
        "user": name or "",
        "team_id": caller.team.slack_id,
        "user_id": caller.user_slack_id,
        "is_enterprise_install": False,
    }
    if caller.bot_id:
        result["bot_id"] = ids.encode(ids.BOT, caller.bot_id)
    return result


class RevokeArgs(Args):
    test: bool = False


@api_method("auth.revoke", RevokeArgs, tier=3)
def auth_revoke(call: ApiCall) -> dict[str, Any]:
    """Revoke every token of the calling member (or only report with test=true)."""
    if call.args.test:
        return {"revoked": False}
    caller = call.caller
    revoke_member_tokens(caller.team, caller.member_id)
    return {"revoked": True}


@api_method("team.info", tier=3)
def team_info(call: ApiCall) -> dict[str, Any]:
    """The caller's team."""
    return {"team": team_json(call.caller.team)}

"""users.list, users.info, users.profile.get, users.lookupByEmail, users.getPresence/setPresence."""

from __future__ import annotations

from typing import Any

from messaging.api.pages import clamp_limit, decode_cursor, page_metadata
from messaging.api.registry import ApiCall, Args, PageArgs, api_method
from messaging.queries import member
from presence import state as presence_state
from teams.errors import ApiError
from teams.models import Member
from teams.shapes import member_json


@api_method("users.list", PageArgs, tier=2)
def users_list(call: ApiCall) -> dict[str, Any]:
    """Every member of the team, in pages."""
    caller, args = call.caller, call.args
    limit = clamp_limit(args.limit, default=200)
    after = decode_cursor(args.cursor, "user")
    queryset = Member.objects.filter(team_id=caller.team_id).order_by("id")
    if after is not None:
        queryset = queryset.filter(id__gt=after)
    rows = list(queryset[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    team = caller.team.slack_id
    return {
        "members": [member_json(m, team) for m in rows],
        "cache_ts": 0,
        **page_metadata(rows[-1].id if more else None, "user"),
    }


class UserArgs(Args):
    user: str


@api_method("users.info", UserArgs, tier=4, errors={"user": "user_not_found"})
def users_info(call: ApiCall) -> dict[str, Any]:
    """One member."""
    return {"user": member_json(member(call.caller, call.args.user), call.caller.team.slack_id)}


class ProfileArgs(Args):
    user: str = ""


@api_method("users.profile.get", ProfileArgs, tier=4)
def users_profile_get(call: ApiCall) -> dict[str, Any]:
    """A member's profile (the caller's when no user is given)."""
    caller = call.caller
    found = member(caller, call.args.user or caller.user_slack_id)
    return {"profile": member_json(found, caller.team.slack_id)["profile"]}


class EmailArgs(Args):
    email: str


@api_method("users.lookupByEmail", EmailArgs, tier=3, errors={"email": "users_not_found"})
def users_lookup_by_email(call: ApiCall) -> dict[str, Any]:
    """The member with this email address."""
    caller = call.caller
    found = (
        Member.objects.filter(team_id=caller.team_id, email=call.args.email.strip().lower(), deleted=False)
        .order_by("id")
        .first()
    )
    if found is None:
        raise ApiError("users_not_found")
    return {"user": member_json(found, caller.team.slack_id)}


class GetPresenceArgs(Args):
    user: str = ""


@api_method("users.getPresence", GetPresenceArgs, tier=3)
def users_get_presence(call: ApiCall) -> dict[str, Any]:
    """A member's presence (with connection details when asking about yourself)."""
    caller = call.caller
    found = member(caller, call.args.user or caller.user_slack_id)
    state = presence_state.lookup(caller.team_id, found.id)
    result: dict[str, Any] = {"presence": state.presence}
    if found.id == caller.member_id:
        result.update(
            online=state.connection_count > 0,
            auto_away=state.presence == presence_state.AWAY
            and not state.manual_away
            and state.connection_count > 0,
            manual_away=state.manual_away,
            connection_count=state.connection_count,
            last_activity=state.last_activity,
        )
    return result


class SetPresenceArgs(Args):
    presence: str


@api_method("users.setPresence", SetPresenceArgs, tier=2, errors={"presence": "invalid_presence"})
def users_set_presence(call: ApiCall) -> dict[str, Any]:
    """Choose to be away, or back to automatic presence."""
    if call.args.presence not in ("auto", "away"):
        raise ApiError("invalid_presence")
    presence_state.set_manual_presence(call.caller.team_id, call.caller.member_id, call.args.presence)
    return {}

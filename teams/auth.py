"""Who is calling: a token or a signed-in session resolved to a team, member and shard."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.core.cache import cache
from django.http import HttpRequest

from chatproject.dbrouter import on_shard
from teams import ids
from teams.directory import TeamEntry, team_entry, team_entry_cache_key
from teams.errors import ApiError, team_is_moving
from teams.models import ApiToken, Member, Team, TeamMembership
from teams.tokens import grant_for, team_id_in_token, token_cache_key

SESSION_TEAM_KEY = "team_id"  # the team last opened: where "/" and pages without one go
# Each tab of the web client names its own team on every call (a person in two teams may
# have both open): the session's team is only the default for a call that names none.
TEAM_HEADER = "HTTP_X_CHAT_TEAM"
# A plain link of a tab (an export's download) sends no header: it names its team as
# ?team=T…, as the admin page's URL does.
TEAM_QUERY = "team"


def _named_team(request: HttpRequest, in_query: bool) -> str | None:
    """The team the request's tab names: its header, else (`in_query`) its ?team=."""
    named = request.META.get(TEAM_HEADER) or (request.GET.get(TEAM_QUERY) if in_query else None)
    return named or None


def requested_team_id(request: HttpRequest, *, in_query: bool = False) -> int | None:
    """The team this request is for: the one its tab names, else the session's last.
    `in_query`: for a link (a GET the page cannot add a header to), ?team= names it too."""
    named = _named_team(request, in_query)
    if named:
        try:
            return ids.decode(named, ids.TEAM)
        except ids.BadId:
            raise ApiError("not_authed", "the request names no team") from None
    team_id = request.session.get(SESSION_TEAM_KEY)
    return int(team_id) if team_id else None


def session_digest(session_key: str) -> str:
    """What names a signed-in session outside it (a socket's ticket must not hold its key)."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Caller:
    team: TeamEntry
    member_id: int
    bot_id: int | None
    kind: str  # "user", "bot" or "session"
    token_id: int | None
    session: str | None = None  # a session caller's session_digest

    @property
    def shard(self) -> str:
        return self.team.shard

    @property
    def team_id(self) -> int:
        return self.team.id

    @property
    def user_slack_id(self) -> str:
        return ids.encode(ids.USER, self.member_id)

    @property
    def is_bot(self) -> bool:
        return self.kind == ApiToken.Kind.BOT

    @property
    def rate_key(self) -> str:
        return f"t{self.token_id}" if self.token_id else f"m{self.member_id}"


def _open_team(entry: TeamEntry) -> TeamEntry:
    if not entry.is_open:
        # Importing/disabled teams are invisible; a moving team is frozen for a moment.
        raise team_is_moving() if entry.status == Team.Status.MOVING else ApiError("team_not_found")
    return entry


def caller_from_token(text: str) -> Caller:
    team_id = team_id_in_token(text)
    if team_id is None:
        raise ApiError("invalid_auth")
    token_key, team_key = token_cache_key(text), team_entry_cache_key(team_id)
    cached = cache.get_many([token_key, team_key])  # one round trip for both
    grant = grant_for(text, cached.get(token_key))
    if grant.team_id != team_id:
        raise ApiError("invalid_auth")
    entry = _open_team(team_entry(team_id, cached.get(team_key)))
    return Caller(entry, grant.member_id, grant.bot_id, grant.kind, grant.token_id)


def _is_member_of(request: HttpRequest, team_id: int) -> bool:
    return TeamMembership.objects.filter(account_id=request.user.pk, team_id=team_id).exists()


def caller_from_session(request: HttpRequest, *, in_query: bool = False) -> Caller:
    """The signed-in account, as a member of the team the request is for (requested_team_id,
    `in_query` as there): naming a team the account is not a member of is refused like no
    session at all."""
    if not request.user.is_authenticated:
        raise ApiError("not_authed")
    team_id = requested_team_id(request, in_query=in_query)
    if not team_id:
        raise ApiError("not_authed", "no team chosen in this session")
    try:
        entry = _open_team(team_entry(team_id))
    except ApiError:
        # A team named by someone not in it says nothing of itself (that it exists, is
        # moving or closed). Asked only when the team is not open: an open one's members
        # are checked on its shard below, so a tab's every call pays no query for it.
        if _named_team(request, in_query) and not _is_member_of(request, team_id):
            raise ApiError("not_authed") from None
        raise
    with on_shard(entry.shard):
        member = (
            Member.objects.filter(team_id=entry.id, account_id=request.user.pk)
            .values("id", "deleted")
            .first()
        )
    if member is None:
        raise ApiError("not_authed")
    if member["deleted"]:
        raise ApiError("account_inactive")
    session = session_digest(request.session.session_key or "")
    return Caller(entry, member["id"], None, "session", None, session)

"""Invitations: a signed link naming a team and an email; accepting it makes the account
(or uses the existing one, after its password is checked) and the member."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.core import signing
from django.db.models import Q
from django.http import HttpRequest

from chatproject.dbrouter import on_shard
from teams import sign_in_limits
from teams.actions import create_member
from teams.directory import TeamEntry, team_entry
from teams.errors import ApiError
from teams.models import Account, Member

INVITE_SALT = "teams.invite"
INVITE_MAX_AGE_SECS = 7 * 24 * 3600  # a week, as Slack's invitations


@dataclass(frozen=True)
class Invite:
    team: TeamEntry
    email: str


def may_administer(team: TeamEntry, member_id: int) -> bool:
    """Owners and admins invite people, import and export."""
    with on_shard(team.shard):
        return (
            Member.objects.filter(team_id=team.id, id=member_id, deleted=False)
            .filter(Q(is_admin=True) | Q(is_owner=True))
            .exists()
        )


def invite_token(team: TeamEntry, email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise ApiError("invalid_email", "that is not an email address")
    return signing.dumps({"team": team.id, "email": email}, salt=INVITE_SALT, compress=True)


def read_invite(token: str) -> Invite:
    try:
        data = signing.loads(token, salt=INVITE_SALT, max_age=INVITE_MAX_AGE_SECS)
    except signing.SignatureExpired:
        raise ApiError("invite_expired", "this invitation has expired; ask for a new one") from None
    except signing.BadSignature:
        raise ApiError("invalid_invite", "this invitation link is not valid") from None
    team = team_entry(int(data["team"]))
    if not team.is_open:
        raise ApiError("team_not_found", "this team is not open")
    return Invite(team, data["email"])


def accept_invite(request: HttpRequest, invite: Invite, name: str, password: str) -> Account:
    """Join the team as the invited email. An existing account must prove its password:
    an invitation never resets anyone's password. One nobody ever signed in to (an import
    made it for an email in its archive) has none to prove: the invitation, sent to that
    address, claims it, as it would a new one."""
    existing = Account.objects.filter(email=invite.email).first()
    if existing is not None and existing.has_usable_password():
        address = sign_in_limits.client_address(request)
        wait = sign_in_limits.wait_secs(invite.email, address)
        if wait:
            raise ApiError("ratelimited", sign_in_limits.wait_message(wait))
        account = authenticate(request, username=invite.email, password=password)
        if account is None:
            sign_in_limits.failed(invite.email, address)
            raise ApiError("wrong_password", "that email already has an account: use its password")
        sign_in_limits.succeeded(invite.email, address)
        create_member(invite.team, invite.email, name=name or None, password=None)
        return account
    if len(password) < 8:
        raise ApiError("weak_password", "choose a password of at least 8 characters")
    create_member(invite.team, invite.email, name=name or None, password=password)
    return Account.objects.get(email=invite.email)

"""Invitations: a signed link naming a team and an email; accepting it makes the account
(or uses the existing one, after its password is checked) and the member.

Every invitation is emailed. The inviting admin also sees a copy of the link, except for
an address whose account was never signed in to (an import made it): that link sets the
account's password, so only the address's owner may hold it. The copy the admin sees
cannot claim such an account, even one an import makes after the link was issued."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.core import signing
from django.core.mail import BadHeaderError, send_mail
from django.db.models import Q
from django.http import HttpRequest
from django_redis import get_redis_connection
from redis import RedisError

from chatproject.dbrouter import on_shard
from teams import sign_in_limits
from teams.actions import create_member
from teams.directory import TeamEntry, team_entry
from teams.errors import ApiError
from teams.models import Account, Member
from teams.queries import account_member

logger = logging.getLogger(__name__)

INVITE_SALT = "teams.invite"
INVITES_PER_HOUR = 200  # per team
INVITE_MAX_AGE_SECS = 7 * 24 * 3600  # a week, as Slack's invitations


@dataclass(frozen=True)
class Invite:
    team: TeamEntry
    email: str
    # Sent to the address itself, so it may set the password of an account nobody ever
    # signed in to. The admin's copy may not.
    may_claim: bool = False


@dataclass(frozen=True)
class IssuedInvite:
    email: str
    link_for_admin: str | None  # None when the link went by email only


def may_administer(team: TeamEntry, member_id: int) -> bool:
    """Owners and admins invite people, import and export."""
    with on_shard(team.shard):
        return (
            Member.objects.filter(team_id=team.id, id=member_id, deleted=False)
            .filter(Q(is_admin=True) | Q(is_owner=True))
            .exists()
        )


def _normal_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise ApiError("invalid_email", "that is not an email address")
    return email


def _refuse_a_member(team: TeamEntry, email: str) -> None:
    """ApiError when the address's account is in the team already (deactivated too):
    create_member would refuse the invitation's link, so it is not sent."""
    account = Account.objects.filter(email=email).first()
    if account is None:
        return
    member = account_member(team, account.pk)
    if member is not None and member["deleted"]:
        raise ApiError("already_in_team", f"{email} is deactivated in this team: reactivate them instead")
    if member is not None:
        raise ApiError("already_in_team", f"{email} is already a member of this team")


def invite_token(team: TeamEntry, email: str, *, may_claim: bool = False) -> str:
    data = {"team": team.id, "email": _normal_email(email), "claim": may_claim}
    return signing.dumps(data, salt=INVITE_SALT, compress=True)


def _count_invite(team: TeamEntry) -> str | None:
    """ApiError past INVITES_PER_HOUR for the team: each invitation is a mail we send, with
    text an admin chose, to an address they chose. Returns the counter it added to (None
    when nothing was counted), for _uncount_invite."""
    if not settings.RATE_LIMITS_ENABLED:
        return None
    now = time.time()
    window = int(now // 3600)
    key = f"invites:{team.id}:{window}"
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 7200)
        count = pipe.execute()[0]
    except RedisError as exc:  # as the API's limits: an outage must not stop inviting
        logger.warning("invitations not counted: %s", exc)
        return None
    if count > INVITES_PER_HOUR:
        minutes = max(1, math.ceil(((window + 1) * 3600 - now) / 60))
        raise ApiError("ratelimited", f"too many invitations this hour: try again in {minutes} minutes")
    return key


def _uncount_invite(key: str | None) -> None:
    """An invitation the mail server refused was not sent: the admin's retry must not use
    up the hour's allowance (a mail server away for a while would otherwise spend it)."""
    if key is None:
        return
    try:
        get_redis_connection("default").decr(key)
    except RedisError as exc:
        logger.warning("a refused invitation stays counted: %s", exc)


def issue_invite(team: TeamEntry, email: str, link_for: Callable[[str], str]) -> IssuedInvite:
    """Email an invitation to `email`; `link_for` turns a token into an absolute URL."""
    email = _normal_email(email)
    _refuse_a_member(team, email)
    counted = _count_invite(team)
    emailed_link = link_for(invite_token(team, email, may_claim=True))
    team_name = " ".join(team.name.split())  # a header holds no line break
    try:
        send_mail(
            f"Join {team_name} on Team chat",
            f"You are invited to join {team_name} ({team.domain}).\n\n"
            f"Open this link within a week to join:\n{emailed_link}\n",
            None,
            [email],
        )
    except (OSError, BadHeaderError) as exc:  # smtplib's errors are OSErrors
        logger.warning("an invitation of team %s was not sent: %s", team.id, exc)
        _uncount_invite(counted)
        raise ApiError("invite_not_sent", "the invitation could not be emailed; try again later") from exc
    account = Account.objects.filter(email=email).first()
    if account is not None and not account.has_usable_password():  # only the emailed link may claim it
        return IssuedInvite(email, None)
    return IssuedInvite(email, link_for(invite_token(team, email)))


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
    return Invite(team, data["email"], may_claim=bool(data.get("claim")))


def accept_invite(request: HttpRequest, invite: Invite, name: str, password: str) -> Account:
    """Join the team as the invited email. An existing account must prove its password:
    an invitation never resets anyone's password. One nobody ever signed in to (an import
    made it for an email in its archive) has none to prove: the emailed invitation claims
    it, as it would a new one; the admin's copy of the link does not (create_member decides
    that on the locked account)."""
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
    create_member(invite.team, invite.email, name=name or None, password=password, claim=invite.may_claim)
    return Account.objects.get(email=invite.email)

"""Writes to the team directory and to a team's members.

A new team is written shard-first: its members and channels land on the shard, then
the directory row that makes the team reachable is written last, so the directory
never points at a team that is only half there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from dataclasses import dataclass

from django.db import IntegrityError, connections, transaction

from chatproject.dbrouter import CONTROL_DB, on_shard
from messaging.actions.channels import new_channel
from messaging.actions.system_messages import announce_join
from messaging.events import append_event
from messaging.models import Channel, ChannelMember
from teams import ids
from teams.directory import TeamEntry, forget_team, place_new_team
from teams.errors import ApiError
from teams.models import Account, ApiToken, Bot, Member, Team, TeamMembership
from teams.queries import account_member
from teams.shapes import member_json
from teams.tokens import issue_token, revoke_tokens

_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HANDLE_UNSAFE = re.compile(r"[^a-z0-9._-]+")
DEFAULT_BOT_NAME = "chatbot"


@dataclass(frozen=True)
class CreatedTeam:
    team: TeamEntry
    owner_id: int
    owner_token: str
    bot_id: int
    bot_user_id: int
    bot_token: str

    def as_json(self) -> dict[str, object]:
        return {
            "team_id": self.team.slack_id,
            "domain": self.team.domain,
            "shard": self.team.shard,
            "owner": {"user_id": ids.encode(ids.USER, self.owner_id), "token": self.owner_token},
            "bot": {
                "bot_id": ids.encode(ids.BOT, self.bot_id),
                "user_id": ids.encode(ids.USER, self.bot_user_id),
                "token": self.bot_token,
            },
        }


def _handle_from(email: str, name: str | None) -> str:
    handle = _HANDLE_UNSAFE.sub("", (name or email.split("@")[0]).lower())[:80]
    return handle or "member"


def _account(email: str, password: str | None, claim: bool | None = None) -> Account:
    """The email's account, made if missing. `password` is set on an existing account as
    `claim` says: None, always (an operator's command line); True, only on one nobody has
    signed in to (an invitation emailed to that address); False, never (an invitation
    link an admin passed on: it may only make a new account).

    Decided on the locked row, so a check made earlier (accept_invite) cannot be overtaken:
    an import making the account, or its owner claiming it, between the two."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise ApiError("invalid_email", f"not an email address: {email!r}")
    with transaction.atomic(using=CONTROL_DB):
        account = Account.objects.select_for_update().filter(email=email).first()
        if account is None:
            try:
                with transaction.atomic(using=CONTROL_DB):
                    return Account.objects.create_user(email, password)
            except IntegrityError:  # made meanwhile: decide on it as on any existing one
                account = Account.objects.select_for_update().filter(email=email).first()
                if account is None:  # another constraint refused the row: say that one
                    raise
        if not password:
            return account
        if claim is not None and account.has_usable_password():
            raise ApiError("account_exists", "that email already has an account: use its password")
        if claim is False:
            raise ApiError(
                "claim_by_email",
                "this address already has an account: open the invitation that was emailed to it",
            )
        account.set_password(password)
        account.save(update_fields=["password"])
        return account


def _mint_team_id() -> int:
    with connections[CONTROL_DB].cursor() as cursor:
        cursor.execute("SELECT chat_next_id()")
        return int(cursor.fetchone()[0])


def create_team(
    domain: str, name: str, owner_email: str, *, password: str | None = None, shard: str | None = None
) -> CreatedTeam:
    domain = domain.strip().lower()
    if not _DOMAIN.match(domain):
        raise ApiError("invalid_domain", "a domain is 1-63 lowercase letters, digits and hyphens")
    if not name.strip():
        raise ApiError("invalid_name_required", "a team needs a name")
    if Team.objects.filter(domain=domain).exists():
        raise ApiError("domain_taken", f"a team with domain {domain!r} exists")
    alias = place_new_team(shard)
    account = _account(owner_email, password)
    team_id = _mint_team_id()
    entry = TeamEntry(team_id, domain, name.strip(), alias, Team.Status.ACTIVE)
    now = int(time.time())
    with on_shard(alias), transaction.atomic(using=alias):
        owner = Member.objects.create(
            team_id=team_id,
            account_id=account.pk,
            name=_handle_from(account.email, None),
            real_name=account.get_full_name(),
            email=account.email,
            is_admin=True,
            is_owner=True,
            updated=now,
        )
        bot_user = Member.objects.create(
            team_id=team_id, name=DEFAULT_BOT_NAME, real_name="Chat Bot", is_bot=True, updated=now
        )
        bot = Bot.objects.create(team_id=team_id, name=DEFAULT_BOT_NAME, member_id=bot_user.id, updated=now)
        Member.objects.filter(id=bot_user.id).update(bot_id=bot.id)
        # No channel_join messages for the owner: a new team holds no messages, so an
        # archive can still be imported into it (jobs.slack_export.existing).
        new_channel(team_id, "general", Channel.Kind.PUBLIC, owner.id, is_general=True)
        new_channel(team_id, "random", Channel.Kind.PUBLIC, owner.id)
        append_event(team_id, "team_join", {"user": member_json(owner, entry.slack_id)})
    try:
        with transaction.atomic(using=CONTROL_DB):
            Team.objects.create(id=team_id, domain=domain, name=entry.name, shard=alias)
            TeamMembership.objects.create(account=account, team_id=team_id, member_id=owner.id)
            owner_token = issue_token(team_id, owner.id, ApiToken.Kind.USER)
            bot_token = issue_token(team_id, bot_user.id, ApiToken.Kind.BOT, bot_id=bot.id)
    except IntegrityError:
        # Lost a race for the domain; the shard rows stay unreachable (no directory entry).
        raise ApiError("domain_taken", f"a team with domain {domain!r} exists") from None
    return CreatedTeam(entry, owner.id, owner_token, bot.id, bot_user.id, bot_token)


def create_member(
    team: TeamEntry,
    email: str,
    *,
    name: str | None = None,
    password: str | None = None,
    is_admin: bool = False,
    claim: bool | None = None,
) -> tuple[Member, str]:
    """Add a person to a team (joining #general) and mint their user token. `claim`: how
    `password` may touch an existing account (see _account)."""
    account = _account(email, password, claim)
    if account_member(team, account.pk) is not None:
        raise ApiError("already_in_team", f"{account.email} is already in {team.domain}")
    with on_shard(team.shard):
        with transaction.atomic(using=team.shard):
            unclaimed = (
                Member.objects.select_for_update()
                .filter(
                    team_id=team.id, account_id__isnull=True, email=account.email, deleted=False, is_bot=False
                )
                .first()
            )
            if unclaimed is not None:
                # Imported for this email but never linked (see accounts_by_email): the
                # person takes over their history instead of starting a second member.
                member = _claim_member(team, unclaimed, account)
            else:
                member = Member.objects.create(
                    team_id=team.id,
                    account_id=account.pk,
                    name=_handle_from(account.email, name),
                    real_name=name or "",
                    display_name=name or "",
                    email=account.email,
                    is_admin=is_admin,
                    updated=int(time.time()),
                )
                # Locked first, as every write takes the channel's lock before the event
                # sequence's: taken only by the join message below, after team_join, a post in
                # #general meanwhile would hold one and wait for the other (a deadlock).
                general = (
                    Channel.objects.select_for_update(no_key=True)
                    .filter(team_id=team.id, is_general=True)
                    .first()
                )
                if general is not None:
                    ChannelMember.objects.create(team_id=team.id, channel=general, member=member)
                append_event(team.id, "team_join", {"user": member_json(member, team.slack_id)})
                if general is not None:
                    # As Slack says in #general who joined the team; after team_join, so
                    # clients know whom the message names.
                    announce_join(team, general, member.id)
    with transaction.atomic(using=CONTROL_DB):
        TeamMembership.objects.create(account=account, team_id=team.id, member_id=member.id)
        token = issue_token(team.id, member.id, ApiToken.Kind.USER)
    return member, token


def _claim_member(team: TeamEntry, member: Member, account: Account) -> Member:
    member.account_id = account.pk
    member.updated = int(time.time())
    member.save(update_fields=["account_id", "updated"])
    append_event(team.id, "user_change", {"user": member_json(member, team.slack_id)})
    return member


def set_member_active(team: TeamEntry, member_id: int, active: bool) -> Member:
    """Deactivate (revoking every token) or reactivate a member."""
    with on_shard(team.shard):
        with transaction.atomic(using=team.shard):
            member = Member.objects.select_for_update().filter(team_id=team.id, id=member_id).first()
            if member is None:
                raise ApiError("user_not_found")
            if member.is_owner and not active:
                raise ApiError("cant_disable_owner")
            member.deleted = not active
            member.updated = int(time.time())
            member.save(update_fields=["deleted", "updated"])
            append_event(team.id, "user_change", {"user": member_json(member, team.slack_id)})
    if not active:
        revoke_tokens(team.id, member_id)
    return member


def reset_member_tokens(team: TeamEntry, member_id: int) -> str:
    """Revoke every token of a member and issue one new one (a bot user gets a bot token);
    the member's sockets hear Slack's `tokens_revoked`. Returns the new token's text, the
    only copy there is."""
    with on_shard(team.shard):
        member = Member.objects.filter(team_id=team.id, id=member_id).first()
        if member is None:
            raise ApiError("user_not_found")
        if member.deleted:
            raise ApiError("account_inactive")
        if member.is_bot and member.bot_id is None:
            raise ApiError("bot_not_found")
        kind = ApiToken.Kind.BOT if member.is_bot else ApiToken.Kind.USER
        # The tokens change in one control transaction, so a member never ends up with none.
        with transaction.atomic(using=team.shard), transaction.atomic(using=CONTROL_DB):
            _revoke_with_event(team, member)
            return issue_token(team.id, member.id, kind, bot_id=member.bot_id if member.is_bot else None)


def revoke_member_tokens(team: TeamEntry, member_id: int) -> None:
    """auth.revoke: every token of the member stops working, and their open sockets hear
    Slack's `tokens_revoked` (the gateway closes them)."""
    with on_shard(team.shard):
        member = Member.objects.filter(team_id=team.id, id=member_id).first()
        if member is None:
            raise ApiError("user_not_found")
        with transaction.atomic(using=team.shard), transaction.atomic(using=CONTROL_DB):
            _revoke_with_event(team, member)


def _revoke_with_event(team: TeamEntry, member: Member) -> None:
    """Inside a shard and a control transaction. The event first: a team frozen by a move
    refuses it before any token changes."""
    append_event(
        team.id,
        "tokens_revoked",
        {"tokens": {"bot" if member.is_bot else "oauth": [member.slack_id]}},
        audience=[member.id],
    )
    revoke_tokens(team.id, member.id)


def set_team_status(team_id: int, status: str, *, only_from: Collection[str] | None = None) -> bool:
    """Set the team's status; with `only_from`, only if it is one of those now (checked in
    the UPDATE itself: an import or move that just took the team keeps it). True if set."""
    teams = Team.objects.filter(id=team_id)
    changed = (teams.filter(status__in=only_from) if only_from is not None else teams).update(status=status)
    forget_team(team_id)
    return bool(changed)

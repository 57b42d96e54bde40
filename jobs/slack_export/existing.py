"""Importing into an existing team that is still empty, as `teams.actions.create_team`
left it: its owner, its bot, #general and #random, and nothing said yet.

"Empty" means: no messages, and no person besides its one owner (bots, channels without
messages and custom emoji are setup, not content, and stay). The archive merges in:
- the owner keeps their member, account and tokens; an archive user with the owner's email
  (not deleted, not a bot) becomes that member, so their history is the owner's and the
  profile comes from the archive; otherwise the owner stays as they were, beside the
  archive's people;
- the team's bot and any other bots stay as they are, beside the archive's bots;
- the archive's general channel becomes the team's #general, and an archive conversation
  with the name of an existing channel (or the member set of an existing DM) becomes that
  channel: its row takes the archive's kind, name, topic, purpose and dates, and everyone
  already in it stays; existing channels the archive does not name stay as they were.

While it imports, the team is `importing` (invisible: tokens and sockets are refused) and
its event log is frozen, so nothing can be written into it but the import. A failed import
puts it back: everything the import added is deleted and the rows it changed get their
old values, and the team is active and empty again, never deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections, transaction

from chatproject.dbrouter import CONTROL_DB, on_shard
from jobs.models import TransferJob
from messaging.events import TEAM_IMPORTED
from messaging.models import Channel, ChannelMember, Event, Message, Pin, Reaction
from teams.directory import forget_team
from teams.errors import ApiError
from teams.models import Bot, Member, Team
from teams.moves import say_goodbye, set_events_frozen

# What an import may change on the rows an empty team already has: kept to put them back.
OWNER_FIELDS = ("name", "real_name", "display_name", "title", "phone", "tz", "color", "updated")
CHANNEL_FIELDS = (
    "kind", "name", "dm_key", "topic", "topic_creator_id", "topic_last_set", "purpose", "purpose_creator_id",
    "purpose_last_set", "is_archived", "is_general", "creator_id", "created", "last_ts", "latest_ts",
)  # fmt: skip


def _nothing() -> None:
    pass


def _not_empty(team: Team, why: str) -> ApiError:
    return ApiError(
        "team_not_empty",
        f"team {team.domain!r} is not empty ({why}); import into a new team or an empty one",
    )


def _owner_account(team: Team) -> int | None:
    with on_shard(team.shard):
        return (
            Member.objects.filter(team_id=team.id, is_owner=True, is_bot=False, deleted=False)
            .values_list("account_id", flat=True)
            .first()
        )


def claim_empty_team(
    team: Team,
    *,
    shard: str | None,
    requested_by_account_id: int | None,
    record_job: Callable[[dict[str, Any]], TransferJob],
) -> TransferJob:
    """Make an existing empty team invisible for an import into it, and record the import's
    job with what the team holds (the job keeps it, to put the team back if it fails).

    The status flip and the job commit together: a team is never closed without a job
    that can reopen it. `requested_by_account_id` (the Web API's caller) must be the
    team's owner; a team someone else owns is refused as a taken domain, which tells them
    nothing about it."""
    if requested_by_account_id is not None and _owner_account(team) != requested_by_account_id:
        raise ApiError("domain_taken", f"a team with domain {team.domain!r} exists")
    if shard and shard != team.shard:
        raise ApiError("invalid_shard", f"team {team.domain!r} is on {team.shard}, not {shard}")
    frozen = False
    try:
        with transaction.atomic(using=CONTROL_DB):
            closed = Team.objects.filter(id=team.id, status=Team.Status.ACTIVE, shard=team.shard)
            if not closed.update(status=Team.Status.IMPORTING):
                raise ApiError("team_not_active", f"team {team.domain!r} is {team.status}, not active")
            # Waits for every write of the team in flight; after it, none can commit, so
            # what is checked below stays true until the import is done.
            set_events_frozen(team.shard, team.id, True)
            frozen = True
            job = record_job(_contents(team))
    except BaseException:
        if frozen:
            set_events_frozen(team.shard, team.id, False)
        forget_team(team.id)
        raise
    forget_team(team.id)  # a request may have cached it open meanwhile
    say_goodbye(team.id)  # its sockets reconnect, and are refused until the import ends
    return job


def _contents(team: Team) -> dict[str, Any]:
    with on_shard(team.shard):
        if Message.objects.filter(team_id=team.id).exists():
            raise _not_empty(team, "it has messages")
        people = list(
            Member.objects.filter(team_id=team.id, is_bot=False).values(
                "id", "account_id", "email", "is_owner", "deleted", *OWNER_FIELDS
            )
        )
        if len(people) > 1 or any(not p["is_owner"] or p["deleted"] for p in people):
            raise _not_empty(team, "it has members besides its owner and bots")
        return {
            "status": Team.Status.ACTIVE,
            "owner": people[0] if people else None,
            "members": list(Member.objects.filter(team_id=team.id).values_list("id", flat=True)),
            "bots": list(Bot.objects.filter(team_id=team.id).values_list("id", flat=True)),
            "channels": list(Channel.objects.filter(team_id=team.id).values("id", *CHANNEL_FIELDS)),
            "memberships": list(ChannelMember.objects.filter(team_id=team.id).values_list("id", "last_read")),
        }


def general_channel(existing: dict[str, Any]) -> int | None:
    """The team's general channel: it stays general whatever archive conversation it becomes."""
    return next((c["id"] for c in existing["channels"] if c["is_general"]), None)


def matched_channels(
    existing: dict[str, Any], conversations: list[tuple[str, str, bool, str | None]]
) -> dict[str, int]:
    """Archive conversation id -> the existing channel it becomes. `conversations` are
    (slack id, name or "", is_general, dm_key with this team's member ids or None)."""
    by_name = {c["name"]: c["id"] for c in existing["channels"] if c["name"]}
    by_dm_key = {c["dm_key"]: c["id"] for c in existing["channels"] if c["dm_key"]}
    general = general_channel(existing)
    matched: dict[str, int] = {}
    for slack_id, name, is_general, dm_key in conversations:
        found = general if is_general and general else by_dm_key.get(dm_key) if dm_key else by_name.get(name)
        if found is not None and found not in matched.values():
            matched[slack_id] = found
    return matched


def update_owner(team_id: int, shard: str, member_id: int, profile: dict[str, Any]) -> None:
    """The owner takes their archive self's profile (they stay owner and admin)."""
    with on_shard(shard), transaction.atomic(using=shard):
        Member.objects.filter(team_id=team_id, id=member_id).update(**profile)


def restore_empty_team(
    team_id: int, shard: str, existing: dict[str, Any], *, rows_restored: Callable[[], None] = _nothing
) -> None:
    """Undo a failed import into an existing team: delete what it added, put back what it
    changed, thaw and reopen the team. A team already opened is left alone. Idempotent: the
    team stays `importing` until the last step, so a run cut short anywhere can run again."""
    if not Team.objects.filter(id=team_id, status=Team.Status.IMPORTING).exists():
        return
    keep = {
        Member: existing["members"],
        Bot: existing["bots"],
        Channel: [c["id"] for c in existing["channels"]],
        ChannelMember: [m[0] for m in existing["memberships"]],
    }
    with on_shard(shard), transaction.atomic(using=shard):
        with connections[shard].cursor() as cursor:
            for model in (Pin, Reaction, Message):  # the team had none
                cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE team_id = %s", [team_id])
            for model in (ChannelMember, Channel, Bot, Member):
                cursor.execute(
                    f"DELETE FROM {model._meta.db_table} WHERE team_id = %s AND NOT (id = ANY(%s))",
                    [team_id, keep[model]],
                )
        Event.objects.filter(team_id=team_id, type=TEAM_IMPORTED).delete()
        owner = existing["owner"]
        if owner is not None:
            Member.objects.filter(id=owner["id"]).update(**{f: owner[f] for f in OWNER_FIELDS})
        # Names first out of the way: a channel may have taken another one's old name.
        Channel.objects.filter(team_id=team_id).update(name=None)
        for channel in existing["channels"]:
            Channel.objects.filter(id=channel["id"]).update(**{f: channel[f] for f in CHANNEL_FIELDS})
        for membership_id, last_read in existing["memberships"]:
            ChannelMember.objects.filter(id=membership_id).update(last_read=last_read)
    rows_restored()
    set_events_frozen(shard, team_id, False)
    with transaction.atomic(using=CONTROL_DB):
        Team.objects.filter(id=team_id, status=Team.Status.IMPORTING).update(status=existing["status"])
    forget_team(team_id)

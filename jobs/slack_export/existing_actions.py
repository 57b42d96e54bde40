"""The writes of an import into an existing empty team (jobs.slack_export.existing): close
it for the import, give its owner their archive profile, and put it back when the import
fails.

While it imports, the team is `importing` (invisible: tokens and sockets are refused) and
its event log is frozen, so nothing can be written into it but the import. A failed import
puts it back: everything the import added is deleted and the rows it changed get their
old values, and the team is active and empty again, never deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction

from chatproject.dbrouter import CONTROL_DB, on_shard
from jobs.models import TransferJob
from jobs.slack_export.existing import OWNER_FIELDS, TeamSnapshot, owner_account, team_snapshot
from jobs.slack_export.import_actions import rewrite_channels
from messaging.events import TEAM_IMPORTED
from messaging.models import Channel, ChannelMember, Event, Message, Pin, Reaction
from teams.directory import forget_team
from teams.errors import ApiError
from teams.models import Bot, Member, Team
from teams.moves import say_goodbye, set_events_frozen
from teams.shard_copy import delete_team_rows

# The tables an import writes into; the rows the team had in them are kept on undo.
_IMPORTED_INTO = (Pin, Reaction, Message, ChannelMember, Channel, Bot, Member)


def _nothing() -> None:
    pass


def claim_empty_team(
    team: Team,
    *,
    shard: str | None,
    requested_by_account_id: int | None,
    record_job: Callable[[], TransferJob],
) -> TransferJob:
    """Make an existing empty team invisible for an import into it, and record the import's
    job with what the team holds (the job keeps it, to put the team back if it fails).

    The status flip and the job (`record_job`, its options' "existing" None for now) commit
    together, so a team is never closed without a job that can reopen it; then the team's
    writes are fenced and its contents read into the job. A job whose "existing" is still
    None was cut short there, before the import wrote anything: undoing it reopens the team.
    `requested_by_account_id` (the Web API's caller) must be the team's owner; a team
    someone else owns is refused as a taken domain, which tells them nothing about it."""
    if requested_by_account_id is not None and owner_account(team) != requested_by_account_id:
        raise ApiError("domain_taken", f"a team with domain {team.domain!r} exists")
    if shard and shard != team.shard:
        raise ApiError("invalid_shard", f"team {team.domain!r} is on {team.shard}, not {shard}")
    with transaction.atomic(using=CONTROL_DB):
        closed = Team.objects.filter(id=team.id, status=Team.Status.ACTIVE, shard=team.shard)
        if not closed.update(status=Team.Status.IMPORTING):
            raise ApiError("team_not_active", f"team {team.domain!r} is {team.status}, not active")
        job = record_job()
    forget_team(team.id)
    try:
        # Waits for every write of the team in flight; after it, none can commit, so what
        # is read below stays true until the import is done.
        set_events_frozen(team.shard, team.id, True)
        say_goodbye(team.id)  # its sockets reconnect, and are refused until the import ends
        existing = team_snapshot(team)
    except BaseException:
        # Refused (not empty) or interrupted: reopen the team; the job never was.
        restore_empty_team(team.id, team.shard, None)
        job.delete()
        raise
    owner = existing["owner"]
    owner_account_id = owner["account_id"] if owner else None
    job.options = {**job.options, "existing": existing, "owner_account_id": owner_account_id}
    job.save(update_fields=["options"])
    return job


def update_owner(team_id: int, shard: str, member_id: int, profile: dict[str, Any]) -> None:
    """The owner takes their archive self's profile (they stay owner and admin)."""
    with on_shard(shard), transaction.atomic(using=shard):
        Member.objects.filter(team_id=team_id, id=member_id).update(**profile)


def restore_empty_team(
    team_id: int, shard: str, existing: TeamSnapshot | None, *, rows_restored: Callable[[], None] = _nothing
) -> None:
    """Undo a failed import into an existing team: delete what it added, put back what it
    changed, thaw and reopen the team. A team already opened is left alone. Idempotent: the
    team stays `importing` until the last step, so a run cut short anywhere can run again.
    `existing` None: the claim was cut short before the team was read, and the import
    never wrote: only thaw and reopen it."""
    if not Team.objects.filter(id=team_id, status=Team.Status.IMPORTING).exists():
        return
    if existing is None:
        set_events_frozen(shard, team_id, False)
        _reopen(team_id, Team.Status.ACTIVE)
        return
    kept = {
        Member: existing["members"],
        Bot: existing["bots"],
        Channel: [c["id"] for c in existing["channels"]],
        ChannelMember: [m[0] for m in existing["memberships"]],
        Message: existing.get("messages", []),
    }
    with on_shard(shard), transaction.atomic(using=shard):
        delete_team_rows(shard, team_id, keep=lambda table: table.model not in _IMPORTED_INTO, keep_rows=kept)
        Event.objects.filter(team_id=team_id, type=TEAM_IMPORTED).delete()
        owner = existing["owner"]
        if owner is not None:
            Member.objects.filter(team_id=team_id, id=owner["id"]).update(
                **{f: owner[f] for f in OWNER_FIELDS}
            )
        rewrite_channels(team_id, existing["channels"])
        for membership_id, last_read in existing["memberships"]:
            ChannelMember.objects.filter(team_id=team_id, id=membership_id).update(last_read=last_read)
    rows_restored()
    set_events_frozen(shard, team_id, False)
    _reopen(team_id, existing["status"])


def _reopen(team_id: int, status: str) -> None:
    with transaction.atomic(using=CONTROL_DB):
        Team.objects.filter(id=team_id, status=Team.Status.IMPORTING).update(status=status)
    forget_team(team_id)

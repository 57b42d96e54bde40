"""Reads of a team's members, on the team's shard."""

from __future__ import annotations

from typing import Any

from chatproject.dbrouter import on_shard
from teams.directory import TeamEntry
from teams.models import Member


def members_of_team(team: TeamEntry, member_ids: list[int]) -> set[int]:
    """Those of `member_ids` that are members (people or bots) of `team`."""
    if not member_ids:
        return set()
    with on_shard(team.shard):
        return set(Member.objects.filter(team_id=team.id, id__in=member_ids).values_list("id", flat=True))


def account_member(team: TeamEntry, account_id: int) -> dict[str, Any] | None:
    """The account's member in `team`, deactivated too, as {"deleted"}; None if it
    has none. Joining refuses an account that has one (teams.actions, teams.invites)."""
    with on_shard(team.shard):
        return Member.objects.filter(team_id=team.id, account_id=account_id).values("deleted").first()

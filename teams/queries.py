"""Reads of a team's members that the realtime gateway needs, on the team's shard."""

from __future__ import annotations

from chatproject.dbrouter import on_shard
from teams.directory import TeamEntry
from teams.models import Member


def members_of_team(team: TeamEntry, member_ids: list[int]) -> set[int]:
    """Those of `member_ids` that are members (people or bots) of `team`."""
    if not member_ids:
        return set()
    with on_shard(team.shard):
        return set(Member.objects.filter(team_id=team.id, id__in=member_ids).values_list("id", flat=True))

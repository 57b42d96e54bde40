"""Celery entry points of the teams app: moving a team between shards (on the `io` queue)."""

from __future__ import annotations

import logging

from celery import shared_task

from teams.errors import ApiError
from teams.models import Team
from teams.moves import move_team_to_shard

logger = logging.getLogger(__name__)


@shared_task(name="teams.move_team", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def move_team(team_id: int, target: str) -> str:
    """Run (or resume) a team's move. Safe to deliver twice: the move resumes from the step
    it recorded, and a second runner meanwhile is refused by the move's lock."""
    team = Team.objects.filter(id=team_id).first()
    if team is None:
        return "team gone"
    try:
        return move_team_to_shard(team, target).step
    except ApiError as exc:
        logger.warning("move of team %s to %s refused: %s %s", team_id, target, exc.code, exc.detail)
        return exc.code

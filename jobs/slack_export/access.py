"""Who may start, read and download transfer jobs: the admins and owners of the team
that asked (an export's team is the team that asked)."""

from __future__ import annotations

from chatproject.dbrouter import on_shard
from jobs.models import TransferJob
from teams.auth import Caller
from teams.errors import ApiError
from teams.models import Member


def admin_account_id(caller: Caller) -> int:
    """The calling admin's sign-in account; refuses bots and non-admins."""
    with on_shard(caller.shard):
        member = (
            Member.objects.filter(team_id=caller.team_id, id=caller.member_id)
            .values("is_admin", "is_owner", "is_bot", "account_id")
            .first()
        )
    if caller.is_bot or member is None or member["is_bot"]:
        raise ApiError("not_allowed_token_type")
    if not (member["is_admin"] or member["is_owner"]) or member["account_id"] is None:
        raise ApiError("not_an_admin")
    return int(member["account_id"])


def job_for_admin(caller: Caller, job_ref: object) -> TransferJob:
    admin_account_id(caller)
    try:
        job_id = int(str(job_ref))
    except ValueError:
        raise ApiError("job_not_found") from None
    job = TransferJob.objects.filter(id=job_id, requested_by_team_id=caller.team_id).first()
    if job is None:
        raise ApiError("job_not_found")
    return job

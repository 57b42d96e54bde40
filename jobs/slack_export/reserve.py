"""Starting an import: the team it goes into is reserved (a new, invisible team) or
claimed (an existing empty one, jobs.slack_export.existing), and its job recorded; the
caller runs or queues the job (jobs.slack_export.importer.run_import)."""

from __future__ import annotations

import re
from pathlib import Path

from django.db import transaction

from chatproject.dbrouter import CONTROL_DB
from jobs.models import TransferJob
from jobs.slack_export import import_actions as actions
from jobs.slack_export.existing_actions import claim_empty_team
from jobs.slack_export.plan import mint_ids
from teams.directory import place_new_team
from teams.errors import ApiError
from teams.models import Team

_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _free_domain(wanted: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", wanted.lower()).strip("-")[:50] or "imported"
    domain, n = base, 1
    while Team.objects.filter(domain=domain).exists():
        n += 1
        domain = f"{base}-{n}"
    return domain


def start_import(
    archive: str | Path,
    *,
    domain: str | None = None,
    name: str | None = None,
    shard: str | None = None,
    owner_account_id: int | None = None,
    requested_by_team_id: int | None = None,
) -> TransferJob:
    """Reserve the (invisible) team and queue nothing yet: the caller runs or enqueues it.

    A `domain` naming an existing team imports into it if it is empty (and, when
    `owner_account_id` is given, the Web API's caller, theirs): jobs.slack_export.existing."""
    existing_team = None
    if domain:
        domain = domain.strip().lower()
        if not _DOMAIN.match(domain):
            raise ApiError("invalid_domain", "a domain is 1-63 lowercase letters, digits and hyphens")
        existing_team = Team.objects.filter(domain=domain).first()
    else:
        domain = _free_domain(Path(archive).stem.removesuffix(" Slack export"))
    if existing_team is not None:
        return _start_into_existing(
            archive, existing_team, name, shard, owner_account_id, requested_by_team_id
        )
    alias = place_new_team(shard)
    team_id = mint_ids(CONTROL_DB, 1)[0]
    with transaction.atomic(using=CONTROL_DB):
        actions.reserve_team(team_id, domain, (name or domain).strip()[:200], alias)
        return TransferJob.objects.create(
            kind=TransferJob.Kind.IMPORT,
            team_id=team_id,
            domain=domain,
            archive=str(archive),
            requested_by_team_id=requested_by_team_id,
            requested_by_account_id=owner_account_id,
            options={"owner_account_id": owner_account_id},
        )


def _start_into_existing(
    archive: str | Path,
    team: Team,
    name: str | None,
    shard: str | None,
    requested_by_account_id: int | None,
    requested_by_team_id: int | None,
) -> TransferJob:
    def record_job() -> TransferJob:
        return TransferJob.objects.create(
            kind=TransferJob.Kind.IMPORT,
            team_id=team.id,
            domain=team.domain,
            archive=str(archive),
            requested_by_team_id=requested_by_team_id,
            requested_by_account_id=requested_by_account_id,
            # The team's owner and contents: the claim fills them in once it has read them.
            options={"existing": None, "name": (name or "").strip()[:200] or None},
        )

    return claim_empty_team(
        team, shard=shard, requested_by_account_id=requested_by_account_id, record_job=record_job
    )

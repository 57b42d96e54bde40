"""Moving a team to another shard, online: `move_team_to_shard` (the action behind
`manage.py move_team` and the admin's "Move to another shard").

Bulk copy while the team keeps working, re-copy what changed meanwhile, then a short write
freeze (the directory says "moving", the source's event sequence is frozen so no write can
commit there, sockets are told goodbye), copy the tail, verify counts and checksums per
table, flip the directory, clean up the source. Each finished step is recorded on the
TeamMove row (control DB) before the next begins, and every step can run again, so a move
that crashed resumes where it stopped; the directory names the target only after the copy
was verified while frozen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from chatproject.dbrouter import CONTROL_DB
from messaging.events import publish_to_group, team_group
from messaging.models import EventSequence, Message
from teams import ids
from teams.directory import TeamEntry, forget_team
from teams.errors import ApiError
from teams.models import Team, TeamMove
from teams.shard_copy import (
    TeamTable,
    bulk_copy,
    compare_shards,
    count_of,
    delete_team_rows,
    snapshot_xmin,
    sync,
)

logger = logging.getLogger(__name__)

Step = TeamMove.Step
STEPS: tuple[str, ...] = tuple(Step.values)
VERIFY_ATTEMPTS = 3  # a tail copy that still differs is synced again; a third miss is a bug
Progress = Callable[[str], None]


@dataclass(frozen=True)
class MoveTarget:
    team: Team
    target: str


def _quiet(line: str) -> None:
    logger.info("%s", line)


def find_team(reference: str) -> Team:
    """A team by domain, Slack id (T…) or numeric id."""
    text = reference.strip()
    team = Team.objects.filter(domain=text.lower()).first()
    if team is None and text[:1] == ids.TEAM:
        try:
            team = Team.objects.filter(id=ids.decode(text, ids.TEAM)).first()
        except ids.BadId:
            team = None
    if team is None and text.isdigit():
        team = Team.objects.filter(id=int(text)).first()
    if team is None:
        raise ApiError("team_not_found", f"no team {reference!r} (give its domain or T… id)")
    return team


def plan_move(team: Team, target: str) -> TeamMove:
    """The team's unfinished move to `target`, or a new one. Refuses bad input before anything
    is written: an unknown shard, the team's own shard, a different move already under way."""
    if target not in settings.SHARD_ALIASES:
        raise ApiError(
            "invalid_shard", f"{target!r} is not a shard; shards are {', '.join(settings.SHARD_ALIASES)}"
        )
    current = TeamMove.objects.filter(team=team, finished__isnull=True).first()
    if current is not None:
        if current.target != target:
            raise ApiError(
                "move_in_progress",
                f"{team.domain} is being moved to {current.target}; finish that move first",
            )
        return current
    if team.shard == target:
        raise ApiError("already_on_shard", f"{team.domain} already lives on {target}")
    if team.status != Team.Status.ACTIVE:
        raise ApiError("team_not_active", f"{team.domain} is {team.status}; only an active team can move")
    try:
        with transaction.atomic(using=CONTROL_DB):
            return TeamMove.objects.create(team=team, source=team.shard, target=target)
    except IntegrityError:  # another process planned one at the same moment
        raise ApiError("move_in_progress", f"{team.domain} is already being moved") from None


@contextmanager
def _move_lock(team_id: int) -> Iterator[None]:
    """One process runs a given team's move at a time (the command and an admin job may race).

    Keyed by the whole 64-bit team id (ids are unique across all tables and shards): the
    two-int form would need the id cut to 31 bits, where unrelated teams collide."""
    with connections[CONTROL_DB].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [team_id])
        if not cursor.fetchone()[0]:
            raise ApiError("move_in_progress", "another process is running this move right now")
        try:
            yield
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [team_id])


def _record(move: TeamMove, step: str, **fields: object) -> None:
    for name, value in fields.items():
        setattr(move, name, value)
    move.step = step
    move.updated = timezone.now()
    move.error = ""
    move.save(update_fields=["step", "updated", "error", *fields])


def _set_directory(team_id: int, **fields: object) -> None:
    Team.objects.filter(id=team_id).update(**fields)
    forget_team(team_id)


def set_events_frozen(alias: str, team_id: int, frozen: bool) -> None:
    """Freeze or thaw the team's event sequence on one shard. The UPDATE waits for every
    transaction holding the row (each append holds it until commit), so once it commits, no
    write of the team can still commit on that shard."""
    table = EventSequence._meta.db_table
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (team_id, last_event_id, boot_version, frozen) VALUES (%s, 0, 0, %s)"
            " ON CONFLICT (team_id) DO UPDATE SET frozen = EXCLUDED.frozen",
            [team_id, frozen],
        )


def say_goodbye(team_id: int) -> None:
    """Every socket of the team, on every server, reconnects (and finds the new shard)."""
    try:
        publish_to_group(team_group(team_id), {"type": "team.moving"})
    except Exception as exc:  # sockets left open are still fenced: their writes fail, retryably
        logger.warning("goodbye to team %s sockets not published: %s", team_id, exc)


def _verify(move: TeamMove, progress: Progress) -> None:
    for attempt in range(1, VERIFY_ATTEMPTS + 1):
        sums, differing = compare_shards(move.source, move.target, move.team_id)
        if not differing:
            rows = sum(s.rows for s in sums.values())
            tables = count_of(len(sums), "table")
            progress(
                f"Verified: {tables}, {count_of(rows, 'row')}, counts and checksums equal on both shards."
            )
            return
        # Compare every row this time, not only those written since the last copy.
        progress(f"  attempt {attempt}: {', '.join(differing)} differ; copying them again row by row")
        sync(move.source, move.target, move.team_id)
    # Give the team back its source shard rather than leave it frozen.
    set_events_frozen(move.source, move.team_id, False)
    _set_directory(move.team_id, status=Team.Status.ACTIVE)
    _record(move, Step.CAUGHT_UP, frozen_at=None)
    raise ApiError(
        "move_verification_failed", f"{', '.join(differing)} still differ; the team stays on {move.source}"
    )


def _keep_tombstone(table: TeamTable) -> bool:
    # The frozen sequence row stays behind as a fence: a writer still holding the old
    # directory entry is refused (retryably) instead of writing to a shard nobody reads.
    return table.model is EventSequence


def _reindex_recent(move: TeamMove) -> None:
    """Messages whose search vector was written on the source after the tail copy (the
    indexer writes no event, so the freeze does not hold it) are indexed again."""
    from jobs.search_tasks import enqueue_index

    since = int(move.started.timestamp() * 1_000_000)
    message_ids = list(
        Message.objects.using(move.target)
        .filter(team_id=move.team_id, ts__gte=since, search_vector__isnull=True, is_deleted=False)
        .values_list("id", flat=True)
    )
    if message_ids:
        enqueue_index(move.team_id, message_ids)


def _run_step(move: TeamMove, progress: Progress) -> None:
    team_id, source, target = move.team_id, move.source, move.target
    if move.step == Step.PLANNED:
        progress(f"Clearing any leftovers of an earlier attempt on {target}...")
        delete_team_rows(target, team_id, keep=lambda table: False)
        _record(move, Step.TARGET_CLEARED)
    elif move.step == Step.TARGET_CLEARED:
        progress(f"Copying rows to {target} while the team keeps working...")
        since = snapshot_xmin(source)
        if move.synced_xmin is None:
            _record(move, Step.TARGET_CLEARED, synced_xmin=since)
            copied = bulk_copy(source, target, team_id, progress)
        else:
            # A copy that stopped part-way: what it left may have changed since (a renamed
            # channel would collide with its new namesake), so finish in one transaction
            # that also replaces changed rows and drops deleted ones.
            progress("  resuming a copy that stopped part-way")
            copied = sum(sync(source, target, team_id, since=move.synced_xmin).values())
        _record(move, Step.COPIED, copied_rows=move.copied_rows + copied, synced_xmin=since)
        progress(f"Copied {count_of(copied, 'row')}.")
    elif move.step == Step.COPIED:
        progress("Catching up with rows written during the copy...")
        since = snapshot_xmin(source)
        changed = sync(source, target, team_id, since=move.synced_xmin)
        _record(move, Step.CAUGHT_UP, synced_xmin=since)
        progress(f"Caught up: {count_of(sum(changed.values()), 'row')} re-copied.")
    elif move.step == Step.CAUGHT_UP:
        progress("Freezing writes (clients get a retryable team_is_moving) and saying goodbye to sockets...")
        # Only an active team freezes (or one this step froze before a crash): a team
        # disabled during the copy must not come back active at the flip.
        freezable = Team.objects.filter(id=team_id, status__in=[Team.Status.ACTIVE, Team.Status.MOVING])
        if not freezable.update(status=Team.Status.MOVING):
            raise ApiError("team_not_active", "the team was disabled during the copy; enable it, run again")
        forget_team(team_id)
        set_events_frozen(source, team_id, True)
        say_goodbye(team_id)
        _record(move, Step.FROZEN, frozen_at=timezone.now())
    elif move.step == Step.FROZEN:
        changed = sync(source, target, team_id, since=move.synced_xmin)
        _record(move, Step.TAIL_COPIED)
        progress(f"Copied the tail: {count_of(sum(changed.values()), 'row')}.")
    elif move.step == Step.TAIL_COPIED:
        _verify(move, progress)
        _record(move, Step.VERIFIED)
    elif move.step == Step.VERIFIED:
        set_events_frozen(target, team_id, False)
        _set_directory(team_id, shard=target, status=Team.Status.ACTIVE)
        frozen_for = timezone.now() - (move.frozen_at or timezone.now())
        _record(move, Step.FLIPPED, freeze_ms=int(frozen_for.total_seconds() * 1000))
        progress(f"Flipped: the team now lives on {target} (writes were paused for {move.freeze_ms} ms).")
    elif move.step == Step.FLIPPED:
        progress(f"Cleaning up {source}...")
        deleted = delete_team_rows(source, team_id, keep=_keep_tombstone)
        forget_team(team_id)  # again: a request that read the old entry may have cached it
        _reindex_recent(move)
        _record(move, Step.CLEANED, finished=timezone.now())
        progress(f"Cleaned up: {count_of(deleted, 'row')} deleted from {source}.")


def move_team_to_shard(
    team: Team | TeamEntry, target: str, *, stop_after: str | None = None, progress: Progress = _quiet
) -> TeamMove:
    """Move (or resume moving) a team to shard `target`; returns the move as far as it got.

    `stop_after` ends the run once that step is recorded (operators can copy now and freeze
    later; tests stop a move there to resume it). Raises ApiError on bad input.
    """
    if stop_after is not None and stop_after not in STEPS:
        raise ApiError("invalid_step", f"{stop_after!r} is not one of {', '.join(STEPS)}")
    row = team if isinstance(team, Team) else find_team(str(team.id))
    move = plan_move(row, target)
    progress(
        f"Moving {row.domain} ({row.slack_id}) from {move.source} to {move.target}, at step {move.step}."
    )
    with _move_lock(row.id):
        move.refresh_from_db()
        while move.finished is None and move.step != stop_after:
            try:
                _run_step(move, progress)
            except Exception as exc:
                TeamMove.objects.filter(id=move.id).update(
                    error=f"{move.step}: {exc}"[:2000], updated=timezone.now()
                )
                raise
    if move.finished is not None:
        progress(f"Done: {row.domain} lives on {move.target} only.")
    return move


def abandon_move(team: Team, progress: Progress = _quiet) -> TeamMove:
    """Give up a team's unfinished move before its flip: the source is thawed and stays the
    team's shard, the partial copy is deleted. After the flip there is nothing to give up
    (the team lives on the target); running the move again finishes its clean-up."""
    # The lock first, then the step: a move that flipped and crashed just before we got
    # the lock must not have its new home deleted by a step read earlier.
    with _move_lock(team.id):
        move = TeamMove.objects.filter(team=team, finished__isnull=True).first()
        if move is None:
            raise ApiError("no_move_in_progress", f"{team.domain} is not being moved")
        if STEPS.index(move.step) >= STEPS.index(Step.FLIPPED):
            raise ApiError(
                "move_already_flipped", f"{team.domain} already lives on {move.target}; run the move again"
            )
        set_events_frozen(move.source, team.id, False)
        Team.objects.filter(id=team.id, status=Team.Status.MOVING).update(status=Team.Status.ACTIVE)
        forget_team(team.id)
        deleted = delete_team_rows(move.target, team.id, keep=lambda table: False)
        move.error = f"abandoned at step {move.step}"
        move.finished = timezone.now()
        move.save(update_fields=["error", "finished"])
    gone = count_of(deleted, "copied row")
    progress(f"Abandoned the move of {team.domain}: it stays on {move.source}; {gone} deleted.")
    return move

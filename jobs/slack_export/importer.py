"""An import, phase by phase: check the whole archive (nothing is written for a bad
one), then members, conversations, messages in batches, threads and pins, the search
index, and finally open the team. Each phase records its checkpoint after its shard
commit; a run that died anywhere starts again from the last checkpoint, and a phase
repeated writes nothing twice.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from redis.exceptions import RedisError

from jobs.breakers import BreakerOpen
from jobs.models import TransferJob
from jobs.slack_export import import_actions as actions
from jobs.slack_export.archive import ArchiveError, DayFile, SlackArchive
from jobs.slack_export.existing import OWNER_FIELDS
from jobs.slack_export.existing_actions import restore_empty_team, update_owner
from jobs.slack_export.import_actions import MemberPlan, PinRow
from jobs.slack_export.manifest import ExportConversation, Manifest, conversation_for_folder, read_manifest
from jobs.slack_export.messages import IdMap, MessageRow, convert_message
from jobs.slack_export.pins import channel_pins, message_pin
from jobs.slack_export.pipeline import batch_writer
from jobs.slack_export.plan import id_map, make_plan, owner_user
from jobs.slack_export.progress import S, SkipReport, save_checkpoint, save_progress, set_status
from jobs.slack_export.seen_ts import SeenTs
from jobs.slack_export.shard import shard_breaker
from jobs.slack_export.storage import StorageFailure
from teams.directory import TeamEntry, forget_team
from teams.errors import ApiError
from teams.models import Team

logger = logging.getLogger(__name__)

Progress = Callable[[TransferJob], None]


# The shard or the transfer store (or a breaker) said "not now": the job pauses instead
# of failing. Redis too: a blip while the job refreshes its lock or reports progress must
# not throw away hours of import work.
RETRYABLE = (BreakerOpen, OperationalError, InterfaceError, RedisError, StorageFailure)


class ImportFailed(Exception):
    """The archive was refused; the job is failed and nothing of the team is left."""


@dataclass
class _Run:
    job: TransferJob
    team: TeamEntry
    archive: SlackArchive
    manifest: Manifest
    days: list[tuple[DayFile, ExportConversation]]
    ids: IdMap
    progress: Progress | None

    def report(self, phase: str, done: int, total: int, *, force: bool = False) -> None:
        save_progress(self.job, phase, done, total, force=force)
        if self.progress:
            self.progress(self.job)

    def messages(
        self, start: int = 0, stop: int | None = None, *, checking: bool = False
    ) -> Iterator[tuple[int, ExportConversation, list[str], list[MessageRow]]]:
        """(file index, conversation, skipped, rows) of each day file from `start` (to `stop`)."""
        for index in range(start, len(self.days) if stop is None else stop):
            day, conv = self.days[index]
            rows, skipped = [], []
            for raw in self.archive.messages(day):
                converted = convert_message(raw, day.path, conv.slack_id, self.ids, checking=checking)
                skipped.extend(converted.skipped)
                if converted.row is not None:
                    rows.append(converted.row)
            yield index, conv, skipped, rows

    def message_ts(self, start: int, stop: int) -> Iterator[int]:
        """The ts of the messages of day files `start` to `stop`, read again."""
        for _index, _conv, _skipped, rows in self.messages(start, stop, checking=True):
            yield from (row.ts for row in rows)


def _ordered_days(archive: SlackArchive, manifest: Manifest) -> list[tuple[DayFile, ExportConversation]]:
    """Day files grouped by conversation (a renamed channel may have two folders)."""
    by_id = {c.slack_id: c for c in manifest.conversations}
    days = [(day, by_id[conversation_for_folder(manifest, day.folder)]) for day in archive.day_files()]
    return sorted(days, key=lambda pair: (pair[1].slack_id, pair[0].name, pair[0].folder))


def _by_conversation(run: _Run) -> Iterator[tuple[ExportConversation, range]]:
    """Each conversation with its day files (one run of them: `days` are grouped by
    conversation), then those without any."""
    start = 0
    for index in range(1, len(run.days) + 1):
        if index == len(run.days) or run.days[index][1] is not run.days[start][1]:
            yield run.days[start][1], range(start, index)
            start = index
    with_days = {conv.slack_id for _day, conv in run.days}
    yield from ((conv, range(0)) for conv in run.manifest.conversations if conv.slack_id not in with_days)


def _check(run: _Run) -> None:
    """Read every day file once: refuse a bad archive before anything is written, count
    what will be imported, and list what will be skipped."""
    counts = {"messages": 0, "replies": 0, "reactions": 0, "pins": 0}
    skipped = SkipReport()
    for conv, files in _by_conversation(run):
        _check_conversation(run, conv, files, counts, skipped)
    run.job.skipped = skipped.entries()
    run.job.counts = {
        "members": len(run.manifest.users),
        "channels": len(run.manifest.conversations),
        **counts,
    }
    run.job.save(update_fields=["skipped", "counts"])


def _check_conversation(
    run: _Run, conv: ExportConversation, files: range, counts: dict[str, int], skipped: SkipReport
) -> None:
    """One conversation's day files: a repeated ts is refused, the rest counted. Of its
    history only the current day's ts (SeenTs) and the ts of its listed pins are held."""
    found_pins: set[int] = set()  # the ts of channels.json's pins met in the messages
    message_pins = 0  # pinned by `pinned_to`: distinct ts (a repeat is refused), none listed
    with SeenTs(functools.partial(run.message_ts, files.start)) as seen:
        for index, _conv, file_skips, rows in run.messages(files.start, files.stop, checking=True):
            day = run.days[index][0]
            repeated = seen.add_file(index, day.name, (row.ts for row in rows))
            if repeated is not None:
                raise ArchiveError(day.path, f"duplicate message ts {repeated / 1e6:.6f}")
            skipped.extend(file_skips)
            for row in rows:
                counts["messages"] += 1
                counts["replies"] += row.is_reply
                counts["reactions"] += len(row.reactions)
                message_pins += message_pin(conv, run.ids, row) is not None
                if row.ts in conv.pinned_ts:
                    found_pins.add(row.ts)
            run.report("checking", index + 1, len(run.days))
    pins, pin_skips = channel_pins(conv, run.ids, found_pins)
    skipped.extend(pin_skips)
    counts["pins"] += message_pins + len({p.ts for p in pins})


def _member_plans(run: _Run) -> list[MemberPlan]:
    plan, owner = run.job.checkpoint["plan"], run.job.checkpoint["plan"]["owner"]
    emails: dict[str, str] = {}  # email -> the one user who gets its account
    for user in run.manifest.users:
        if user.email and not user.deleted and not user.is_bot:
            emails.setdefault(user.email, user.slack_id)
    accounts = actions.accounts_by_email(list(emails))
    members = []
    for user in run.manifest.users:
        is_owner = owner is not None and owner["slack_id"] == user.slack_id
        account = owner["account_id"] if is_owner else None
        if (
            account is None
            and emails.get(user.email) == user.slack_id
            and user.email != (owner or {}).get("email")
        ):
            account = accounts.get(user.email)
        members.append(MemberPlan(user, plan["users"][user.slack_id], account, is_owner))
    if owner is not None and owner["slack_id"] is None and not owner.get("existing"):
        members.append(MemberPlan(owner_user(owner), owner["member_id"], owner["account_id"], True))
    return members


def _write_messages(run: _Run) -> None:
    checkpoint = run.job.checkpoint
    start, written = checkpoint.get("files_done", 0), checkpoint.get("messages_done", 0)
    total = run.job.counts["messages"]
    breaker = shard_breaker(run.team.shard)

    def write(item: tuple[int, list[tuple[int, MessageRow]], list[PinRow]]) -> None:
        nonlocal written
        files_done, batch, pins = item
        with breaker.calling():
            actions.write_messages(run.team, batch, pins)
        written += len(batch)
        run.job.phase, run.job.done, run.job.total = "messages", written, total
        save_checkpoint(run.job, files_done=files_done, messages_done=written)
        run.report("messages", written, total)

    writer = batch_writer(write, threaded=not connections[run.team.shard].in_atomic_block)
    batch: list[tuple[int, MessageRow]] = []
    pins: list[PinRow] = []
    try:
        for index, conv, _skipped, rows in run.messages(start):
            channel_id = run.ids.channels[conv.slack_id]
            batch.extend((channel_id, row) for row in rows)
            pins.extend(p for row in rows if (p := message_pin(conv, run.ids, row)))
            if len(batch) >= settings.IMPORT_BATCH_MESSAGES or index + 1 == len(run.days):
                writer.submit((index + 1, batch, pins))
                batch, pins = [], []
    finally:
        writer.close()


def _finish(run: _Run) -> None:
    if Team.objects.filter(id=run.team.id, status=Team.Status.ACTIVE).exists():
        # A worker died after the team opened but before this step was checkpointed: the
        # team is live now, so its read state and threads are no longer the import's.
        run.job.counts = actions.import_counts(run.team)
        run.job.save(update_fields=["counts"])
        return
    pins = []
    for conv in run.manifest.conversations:
        pins.extend(channel_pins(conv, run.ids, None)[0])
    with shard_breaker(run.team.shard).calling():
        actions.finish_threads(run.team, pins)
    counts = actions.import_counts(run.team)
    with shard_breaker(run.team.shard).calling():
        actions.complete_import(run.team, counts, name=run.job.options.get("name"))
    run.job.counts = counts
    run.job.save(update_fields=["counts"])


# Each phase: the checkpoint key that marks it done, and the name progress shows.
PHASES = {
    "checked": "checking",
    "members": "members",
    "conversations": "conversations",
    "messages_written": "messages",
    "finished": "threads",
}


def _phase(run: _Run, name: str, step: Callable[[], object]) -> None:
    if run.job.checkpoint.get(name):
        return
    run.report(PHASES[name], 0, 0, force=True)  # 0 of 0: a step without its own count
    step()
    save_checkpoint(run.job, **{name: True})


def run_import(job_id: int, progress: Progress | None = None) -> TransferJob:
    """Run (or resume) an import job to the end. Raises ImportFailed for a refused
    archive (the job is failed, the team discarded); BreakerOpen and database errors
    leave the job paused at its checkpoint for a retry."""
    job = TransferJob.objects.get(id=job_id)
    if job.status in (S.DONE, S.FAILED):
        return job
    team_row = Team.objects.filter(id=job.team_id).first()
    if team_row is None:
        # Gone: deleted, or a failed new team's undo got as far as its directory row.
        error = job.checkpoint.get("undoing") or "the team being imported into is gone"
        set_status(job, S.FAILED, error=error)
        _forget_upload(job)
        raise ImportFailed(job.errors[-1])
    team = TeamEntry(team_row.id, team_row.domain, team_row.name, team_row.shard, team_row.status)
    set_status(job, S.RUNNING)
    if "undoing" in job.checkpoint:
        # A failed run died while undoing: finish the undo, never resume the import (its
        # checkpoint says members and conversations are done, and they may be gone).
        _fail(job, team, job.checkpoint["undoing"], progress)
        raise ImportFailed(job.errors[-1])
    if "existing" in job.options:
        if job.options["existing"] is None:  # its claim was cut short: nothing to import into
            error = "the import stopped before it had read the team; start it again"
            _fail(job, team, error, progress)
            raise ImportFailed(error)
        forget_team(team.id)  # again: a request that read the team just before it closed may have cached it
    try:
        with SlackArchive.open(job.archive) as archive:
            manifest = read_manifest(archive)
            if "plan" not in job.checkpoint:
                existing = job.options.get("existing")
                plan = make_plan(team.shard, manifest, job.options.get("owner_account_id"), existing)
                save_checkpoint(job, plan=plan)
            ids = id_map(job.checkpoint["plan"], manifest)
            run = _Run(job, team, archive, manifest, _ordered_days(archive, manifest), ids, progress)
            _phase(run, "checked", lambda: _check(run))
            _phase(run, "members", lambda: _with_breaker(run, lambda: _write_members(run)))
            _phase(run, "conversations", lambda: _with_breaker(run, lambda: _write_conversations(run)))
            _phase(run, "messages_written", lambda: _write_messages(run))
            _phase(run, "finished", lambda: _finish(run))
    except ArchiveError as exc:
        _fail(job, team, str(exc), progress)
        raise ImportFailed(str(exc)) from None
    except ApiError as exc:
        _fail(job, team, exc.detail or exc.code, progress)
        raise ImportFailed(exc.detail or exc.code) from None
    except RETRYABLE:
        raise  # the job waits at its checkpoint for a retry
    except Exception as exc:
        logger.exception("import job %s failed", job.id)
        _fail(job, team, f"internal error: {exc}", progress)
        raise
    job.done = job.total = job.counts.get("messages", 0)
    set_status(job, S.DONE)
    _forget_upload(job)
    if progress:
        progress(job)
    return job


def abandon_import(job_id: int, why: str, progress: Progress | None = None) -> TransferJob:
    """End an unfinished import for good: record why, undo it (an existing team put back
    as it was, a new one removed) and fail the job. The caller makes sure no worker runs
    the job meanwhile (jobs.transfer_tasks.abandon_transfer holds its lock)."""
    job = TransferJob.objects.get(id=job_id)
    if job.status in (S.DONE, S.FAILED):
        return job
    if "undoing" not in job.checkpoint:
        save_checkpoint(job, undoing=why)
    with contextlib.suppress(ImportFailed):
        run_import(job.id, progress)  # a job being undone is undone to the end, never resumed
    job.refresh_from_db()
    return job


def _write_members(run: _Run) -> None:
    plans = _member_plans(run)
    actions.write_members(run.team, plans, run.ids)
    owner = run.job.checkpoint["plan"]["owner"]
    if owner and owner.get("existing") and owner["slack_id"]:
        user = next(p.user for p in plans if p.user.slack_id == owner["slack_id"])
        profile = {f: getattr(user, f) for f in OWNER_FIELDS}
        update_owner(run.team.id, run.team.shard, owner["member_id"], profile)


def _write_conversations(run: _Run) -> None:
    plan = run.job.checkpoint["plan"]
    owner = [plan["owner"]["member_id"]] if plan["owner"] else []
    actions.write_conversations(
        run.team,
        run.manifest.conversations,
        run.ids,
        existing=set(plan.get("existing_channels", [])),
        general=plan.get("general_channel"),
        also_in_general=owner,
    )


def _with_breaker(run: _Run, write: Callable[[], None]) -> None:
    with shard_breaker(run.team.shard).calling():
        write()


def _fail(job: TransferJob, team: TeamEntry, error: str, progress: Progress | None) -> None:
    """Record the failure, then undo the import, then mark the job failed. The record comes
    first: a worker that dies while undoing leaves a job that a retry (run_import) undoes
    to the end instead of resuming; every undo step can run twice."""
    if "undoing" not in job.checkpoint:
        save_checkpoint(job, undoing=error)

    def report(done: int) -> None:  # also keeps the job's lock fresh through a long undo
        save_progress(job, "undoing", done, 2, force=True)
        if progress:
            progress(job)

    report(0)
    if "existing" in job.options:  # the team was there before: put it back as it was
        restore_empty_team(team.id, team.shard, job.options["existing"], rows_restored=lambda: report(1))
    else:
        actions.discard_import(team.id, team.shard, rows_deleted=lambda: report(1))
    set_status(job, S.FAILED, error=job.checkpoint["undoing"])
    _forget_upload(job)


def _forget_upload(job: TransferJob) -> None:
    """An archive uploaded through the API is kept only until its job ends."""
    archive = Path(job.archive).resolve()
    if archive.is_relative_to(Path(settings.TRANSFER_DIR).resolve()) and archive.is_file():
        archive.unlink()
        with contextlib.suppress(OSError):
            archive.parent.rmdir()

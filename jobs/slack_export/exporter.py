"""A team exported to Slack's format: users.json, channels.json, groups.json, dms.json,
mpims.json and a folder of day files per conversation, streamed from the shard in
keyset-paged chunks (memory bounded by a chunk, not the team). Reads go through the
shard's breaker; the zip appears only when complete.

Resumable: the first step reads the people, conversations, memberships and pins in one
snapshot, writes the top-level files, and pins the export to that moment: each
conversation's newest message ts and the newest reaction id then. Messages are then
written in segments (one staged zip each, ending at a day-file boundary), each committed
by a checkpoint; a run that died goes on from the last segment, and the staged parts are
joined into the zip at the end. Messages posted and reactions added after the export
began are left out, whichever run reads them, so a resumed export is the same as an
uninterrupted one. (Edits and deletions made while it runs show in the parts read after
them, as they would in a long uninterrupted read.)"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import OperationalError, connections
from django.db.models import Count, Max

from chatproject.dbrouter import current_shard, on_shard
from jobs.models import TransferJob
from jobs.slack_export.importer import RETRYABLE
from jobs.slack_export.manifest import is_safe_folder_name
from jobs.slack_export.progress import S, save_checkpoint, save_progress, set_status
from jobs.slack_export.shard import shard_breaker
from jobs.slack_export.storage import on_store
from jobs.slack_export.writer import ExportWriter
from messaging.models import Channel, ChannelMember, Message, Pin, Reaction
from messaging.shapes import channel_json, dm_member_ids, message_json
from teams import ids
from teams.directory import TeamEntry, team_entry
from teams.models import Member, Team
from teams.shapes import member_json
from teams.shard_copy import source_snapshot

logger = logging.getLogger(__name__)
CHUNK = 2000  # messages per query while exporting
# Staged parts are compressed again when joined: the fastest level keeps them small enough.
STAGING_COMPRESS_LEVEL = 1
MOVE_RETRIES = 5  # a team moving back and forth faster than one segment is read: give up
K = Channel.Kind
_FILES = {K.PUBLIC: "channels.json", K.PRIVATE: "groups.json", K.IM: "dms.json", K.MPIM: "mpims.json"}

Progress = Callable[[TransferJob], None]


def start_export(
    team: TeamEntry, *, requested_by_account_id: int | None = None, output: str | Path | None = None
) -> TransferJob:
    job = TransferJob.objects.create(
        kind=TransferJob.Kind.EXPORT,
        team_id=team.id,
        domain=team.domain,
        requested_by_team_id=team.id,
        requested_by_account_id=requested_by_account_id,
    )
    job.archive = str(output or Path(settings.TRANSFER_DIR) / f"export-{job.id}.zip")
    job.save(update_fields=["archive"])
    return job


def _users(team: TeamEntry) -> list[dict[str, Any]]:
    users = []
    for member in Member.objects.filter(team_id=team.id).order_by("id"):
        user = member_json(member, team.slack_id)
        user["is_primary_owner"] = member.is_owner
        users.append(user)
    return users


def _conversation_json(
    team: TeamEntry, channel: Channel, members: list[int], pins: list[tuple[int, int, int]]
) -> dict[str, Any]:
    user_ids = [ids.encode(ids.USER, m) for m in members]
    if channel.kind == K.IM:
        return {"id": channel.slack_id, "created": channel.created, "members": user_ids}
    data = channel_json(channel)
    data.update(members=user_ids, previous_names=[])
    data["pins"] = [
        {"id": ids.format_ts(ts), "type": "C", "created": created, "user": ids.encode(ids.USER, pinned_by)}
        for ts, created, pinned_by in pins
    ]
    return data


def _folder(channel: Channel, shape: dict[str, Any]) -> str:
    name = str(shape["name"]) if channel.kind != K.IM else ""
    # A name that could escape its folder (from an admin rename or an old import) never
    # becomes a path in the zip: whoever unpacks an export must not be at risk.
    return name if name and is_safe_folder_name(name) else channel.slack_id


def _reactions(
    team_id: int, channel_id: int, after: int, last: int, newest_reaction: int
) -> dict[int, list[dict[str, Any]]]:
    """Slack's `reactions` of each message in (after, last], grouped in the order given."""
    rows = (
        Reaction.objects.filter(
            team_id=team_id,
            message__channel_id=channel_id,
            message__ts__gt=after,
            message__ts__lte=last,
            id__lte=newest_reaction,
        )
        .order_by("created", "id")
        .values_list("message_id", "name", "member_id")
    )
    grouped: dict[int, dict[str, list[str]]] = defaultdict(dict)
    for message_id, name, member_id in rows:
        grouped[message_id].setdefault(name, []).append(ids.encode(ids.USER, member_id))
    return {
        message_id: [{"name": name, "users": who, "count": len(who)} for name, who in names.items()]
        for message_id, names in grouped.items()
    }


@dataclass
class _Run:
    job: TransferJob
    team_id: int
    team_slack_id: str
    staging: Path
    progress: Progress | None

    def report(self, phase: str, done: int, total: int, *, force: bool = False) -> None:
        save_progress(self.job, phase, done, total, force=force)
        if self.progress:
            self.progress(self.job)

    def message_chunks(
        self, conv: dict[str, Any], after: int, newest_reaction: int
    ) -> Iterator[list[dict[str, Any]]]:
        """A conversation's messages in (after, its newest at the start], oldest first, a
        chunk at a time: each read (through the shard's breaker) and shaped before it is
        yielded, so that writing it is file work only."""
        alias = current_shard()
        breaker = shard_breaker(alias)
        pinned = set(conv["pinned"])
        while True:
            with breaker.calling():
                chunk = list(
                    Message.objects.filter(
                        team_id=self.team_id, channel_id=conv["id"], ts__gt=after, ts__lte=conv["newest"]
                    ).order_by("ts")[:CHUNK]
                )
                if not chunk:
                    return
                reactions = _reactions(self.team_id, conv["id"], after, chunk[-1].ts, newest_reaction)
            shapes = []
            for message in chunk:
                pinned_to = [conv["slack_id"]] if message.ts in pinned else []
                shape = message_json(message, self.team_slack_id, pinned_to=pinned_to)
                if message.id in reactions and not message.is_deleted:
                    shape["reactions"] = reactions[message.id]
                shapes.append(shape)
            yield shapes
            after = chunk[-1].ts
            save_progress(self.job, "messages", self.job.done + len(chunk), self.job.total)
            if self.progress:
                self.progress(self.job)


@contextmanager
def _one_snapshot(alias: str) -> Iterator[None]:
    if connections[alias].in_atomic_block:  # inside a caller's transaction: its reads stand
        yield
        return
    with source_snapshot(alias):
        yield


@contextmanager
def _reading(team_id: int) -> Iterator[str]:
    """One snapshot of the shard the team is on now. A move may have flipped the team to
    another shard since the last segment and cleaned up the old copy: the directory is
    read again once the snapshot is taken, and a team that moved meanwhile is read where
    it went (a snapshot taken before the flip still holds every row)."""
    for _attempt in range(MOVE_RETRIES):
        alias = _shard_of(team_id)
        with on_shard(alias), _one_snapshot(alias):
            with shard_breaker(alias).calling():
                Message.objects.filter(team_id=team_id).exists()  # takes the snapshot
            if _shard_of(team_id) == alias:
                yield alias
                return
    raise OperationalError(f"team {team_id} kept moving while it was exported")


def _shard_of(team_id: int) -> str:
    shard = Team.objects.filter(id=team_id).values_list("shard", flat=True).first()
    if shard is None:
        raise ExportFailed("the team is gone")
    return shard


class ExportFailed(Exception):
    """The export cannot go on (the team was deleted)."""


def _plan(run: _Run) -> dict[str, Any]:
    """Read everything but the messages in one snapshot, write the top-level files, and
    pin the export to this moment (each conversation's newest ts, the newest reaction)."""
    team_id = run.team_id
    with _reading(team_id) as alias, shard_breaker(alias).calling():
        team = team_entry(team_id)
        users = _users(team)
        channels = list(Channel.objects.filter(team_id=team_id).order_by("id"))
        members: dict[int, list[int]] = defaultdict(list)
        for channel_id, member_id in (
            ChannelMember.objects.filter(team_id=team_id)
            .order_by("id")
            .values_list("channel_id", "member_id")
        ):
            members[channel_id].append(member_id)
        # Plain tuples: whole pinned messages held for the export would grow with the team.
        pins: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        for channel_id, *pin in (
            Pin.objects.filter(team_id=team_id)
            .order_by("id")
            .values_list("channel_id", "message__ts", "created", "pinned_by")
        ):
            pins[channel_id].append(tuple(pin))  # type: ignore[arg-type]
        heads = {
            row["channel_id"]: (row["newest"], row["n"])
            for row in Message.objects.filter(team_id=team_id)
            .values("channel_id")
            .annotate(newest=Max("ts"), n=Count("id"))
        }
        newest_reaction = Reaction.objects.filter(team_id=team_id).aggregate(newest=Max("id"))["newest"] or 0
    shapes = {
        c.id: _conversation_json(team, c, members[c.id] or dm_member_ids(c), pins[c.id]) for c in channels
    }
    head = run.staging / "head.zip"
    with on_store():
        with ExportWriter(head.with_suffix(".tmp"), STAGING_COMPRESS_LEVEL) as writer:
            writer.json_file("users.json", users)
            for kind, name in _FILES.items():
                writer.json_file(name, [shapes[c.id] for c in channels if c.kind == kind])
        _commit_file(head.with_suffix(".tmp"), head)
    plan = {
        "conversations": [
            {
                "id": c.id,
                "slack_id": c.slack_id,
                "folder": _folder(c, shapes[c.id]),
                "newest": heads[c.id][0],
                "pinned": [ts for ts, _created, _by in pins[c.id]],
            }
            for c in channels
            if c.id in heads
        ],
        "newest_reaction": newest_reaction,
        "members": len(users),
        "channels": len(channels),
        "total": sum(n for _newest, n in heads.values()),
    }
    staged = run.staging / "plan.json"
    with on_store():
        staged.with_suffix(".tmp").write_text(json.dumps(plan))
        _commit_file(staged.with_suffix(".tmp"), staged)
    return plan


def _commit_file(written: Path, final: Path) -> None:
    """A staged file counts once it is whole on disk: fsync, then rename into place."""
    with written.open("rb") as handle:
        os.fsync(handle.fileno())
    written.replace(final)


def _segment_path(staging: Path, index: int) -> Path:
    return staging / f"segment-{index:06d}.zip"


def _write_segments(run: _Run, plan: dict[str, Any]) -> None:
    """Messages in segments of about EXPORT_SEGMENT_MESSAGES, each staged and then
    checkpointed (segment count, where in which conversation, messages written)."""
    checkpoint = run.job.checkpoint
    conversations = plan["conversations"]
    segment, index = checkpoint.get("segments", 0), checkpoint.get("conversation", 0)
    after = checkpoint.get("after_ts", -1)
    while index < len(conversations):
        path = _segment_path(run.staging, segment)
        staged = path.with_suffix(".tmp")
        written = 0
        # Store steps around the file work only: the shard's reads between them are its
        # own breaker's. Timed with them, a shard slower per segment than the store's
        # slow-call limit counted as a slow store, and could open the store's breaker,
        # pausing every import and export.
        with on_store():
            writer = ExportWriter(staged, STAGING_COMPRESS_LEVEL)
        with writer:  # closed on the way out, should reading or writing fail
            with _reading(run.team_id):
                while index < len(conversations) and written < settings.EXPORT_SEGMENT_MESSAGES:
                    conv = conversations[index]
                    days = writer.day_files(conv["folder"], budget=settings.EXPORT_SEGMENT_MESSAGES - written)
                    stopped_at = None
                    for chunk in run.message_chunks(conv, after, plan["newest_reaction"]):
                        with on_store():
                            stopped_at = days.write(chunk)
                        if stopped_at is not None:
                            break  # at the budget's day boundary, its day file ended
                    if stopped_at is None:
                        with on_store():
                            days.end()  # the conversation's last day file
                        index, after = index + 1, -1
                    else:
                        after = ids.parse_ts(stopped_at)
                    written += days.count
            with on_store():
                writer.close()
                _commit_file(staged, path)
        segment += 1
        run.job.done = checkpoint.get("messages_done", 0) + written
        save_checkpoint(
            run.job, segments=segment, conversation=index, after_ts=after, messages_done=run.job.done
        )
        checkpoint = run.job.checkpoint


def _assemble(run: _Run, partial: Path) -> None:
    """Join the staged parts into one zip, in order (a rerun joins them again)."""
    run.report("zipping", run.job.done, run.job.total, force=True)
    parts = [run.staging / "head.zip"]
    parts += [_segment_path(run.staging, index) for index in range(run.job.checkpoint.get("segments", 0))]
    with on_store():
        writer = ExportWriter(partial)
    try:
        for part in parts:
            with on_store():  # a step per part: a long join is not one slow call
                writer.copy_entries(part)
            # Still alive: keeps the job's lock and `updated` fresh, or a long join would
            # look stalled and a second run would start writing the same file.
            run.report("zipping", run.job.done, run.job.total)
    except BaseException:
        with contextlib.suppress(OSError):  # a rerun joins the parts again, from the start
            writer.close()
        raise
    with on_store():
        writer.close()


def staging_dir(job: TransferJob) -> Path:
    """Where the job stages its parts, beside its zip; the job's own, so two exports to
    the same path (two `export_team` runs, say) never share or delete each other's."""
    output = Path(job.archive)
    return output.with_name(f"{output.name}.parts-{job.id}")


def partial_file(job: TransferJob) -> Path:
    """The zip being joined, renamed to the job's path only once whole."""
    output = Path(job.archive)
    return output.with_name(f"{output.name}.{job.id}.part")


def run_export(job_id: int, progress: Progress | None = None) -> TransferJob:
    """Run (or resume) an export job to the end."""
    job = TransferJob.objects.get(id=job_id)
    if job.status in (S.DONE, S.FAILED):
        return job
    output = Path(job.archive)
    staging, partial = staging_dir(job), partial_file(job)
    run = _Run(job, int(job.team_id or 0), ids.encode(ids.TEAM, int(job.team_id or 0)), staging, progress)
    set_status(job, S.RUNNING)
    if job.checkpoint.get("planned") and not (staging / "plan.json").exists():
        save_checkpoint(job, planned=False, segments=0, conversation=0, after_ts=-1, messages_done=0)
    try:
        if not job.checkpoint.get("planned"):
            with on_store():
                shutil.rmtree(staging, ignore_errors=True)  # an earlier run's plan never finished
                staging.mkdir(parents=True)
            plan = _plan(run)
            job.total = plan["total"]
            save_checkpoint(job, planned=True, starts=[0])
        else:
            with on_store():
                plan = json.loads((staging / "plan.json").read_text())
            job.total = plan["total"]
            job.done = job.checkpoint.get("messages_done", 0)
            save_checkpoint(job, starts=[*job.checkpoint.get("starts", []), job.done])
        run.report("messages", job.done, job.total, force=True)
        _write_segments(run, plan)
        _assemble(run, partial)
    except RETRYABLE:
        raise  # paused; the retry goes on from the last segment
    except Exception as exc:
        logger.exception("export job %s failed", job.id)
        partial.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        set_status(job, S.FAILED, error=f"export failed: {exc}")
        raise
    with on_store():
        partial.replace(output)  # only a complete export is ever served
    written = job.checkpoint.get("messages_done", 0)
    job.counts = {"members": plan["members"], "channels": plan["channels"], "messages": written}
    job.done = job.total
    job.save(update_fields=["counts", "done"])
    set_status(job, S.DONE)
    shutil.rmtree(staging, ignore_errors=True)
    if progress:
        progress(job)
    return job

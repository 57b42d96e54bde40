"""A team exported to Slack's format: users.json, channels.json, groups.json, dms.json,
mpims.json and a folder of day files per conversation, streamed from the shard in
keyset-paged chunks (memory bounded by a chunk, not the team). Reads go through the
shard's breaker. A retried export starts over; the zip appears only when complete."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

from chatproject.dbrouter import on_shard
from jobs.models import TransferJob
from jobs.slack_export.importer import RETRYABLE
from jobs.slack_export.manifest import is_safe_folder_name
from jobs.slack_export.progress import S, save_progress, set_status
from jobs.slack_export.shard import shard_breaker
from jobs.slack_export.writer import ExportWriter
from messaging.models import Channel, ChannelMember, Message, Pin, Reaction
from messaging.shapes import channel_json, dm_member_ids, message_json
from teams import ids
from teams.directory import TeamEntry, team_entry
from teams.models import Member
from teams.shapes import member_json
from teams.shard_copy import source_snapshot

logger = logging.getLogger(__name__)
CHUNK = 2000  # messages per query while exporting
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
    channel: Channel, after: int, last: int, users: dict[int, str]
) -> dict[int, list[dict[str, Any]]]:
    """Slack's `reactions` of each message in (after, last], grouped in the order given."""
    rows = (
        Reaction.objects.filter(message__channel=channel, message__ts__gt=after, message__ts__lte=last)
        .order_by("created", "id")
        .values_list("message_id", "name", "member_id")
    )
    grouped: dict[int, dict[str, list[str]]] = defaultdict(dict)
    for message_id, name, member_id in rows:
        grouped[message_id].setdefault(name, []).append(
            users.get(member_id) or ids.encode(ids.USER, member_id)
        )
    return {
        message_id: [{"name": name, "users": who, "count": len(who)} for name, who in names.items()]
        for message_id, names in grouped.items()
    }


def _messages(
    team: TeamEntry, channel: Channel, users: dict[int, str], job: TransferJob, progress: Progress | None
) -> Iterator[dict[str, Any]]:
    """The conversation's messages oldest first, with reactions and pins, a chunk at a time."""
    breaker = shard_breaker(team.shard)
    after = -1
    while True:
        with breaker.calling():
            chunk = list(Message.objects.filter(channel=channel, ts__gt=after).order_by("ts")[:CHUNK])
            if not chunk:
                return
            reactions = _reactions(channel, after, chunk[-1].ts, users)
            pinned = set(
                Pin.objects.filter(
                    channel=channel, message__ts__gt=after, message__ts__lte=chunk[-1].ts
                ).values_list("message_id", flat=True)
            )
        for message in chunk:
            shape = message_json(
                message, team.slack_id, pinned_to=[channel.slack_id] if message.id in pinned else []
            )
            if message.id in reactions and not message.is_deleted:
                shape["reactions"] = reactions[message.id]
            yield shape
        after = chunk[-1].ts
        save_progress(job, "messages", job.done + len(chunk), job.total)
        if progress:
            progress(job)


@contextmanager
def _one_snapshot(alias: str) -> Iterator[None]:
    if connections[alias].in_atomic_block:  # inside a caller's transaction: its reads stand
        yield
        return
    with source_snapshot(alias):
        yield


def write_export(
    team: TeamEntry, path: Path, job: TransferJob, progress: Progress | None = None
) -> dict[str, int]:
    # One snapshot for the whole export: rows written, or a move's clean-up deleting the
    # old copy, while it pages through the team cannot make it inconsistent or short.
    with on_shard(team.shard), _one_snapshot(team.shard):
        with shard_breaker(team.shard).calling():
            users = _users(team)
            channels = list(Channel.objects.filter(team_id=team.id).order_by("id"))
            members: dict[int, list[int]] = defaultdict(list)
            for channel_id, member_id in (
                ChannelMember.objects.filter(team_id=team.id)
                .order_by("id")
                .values_list("channel_id", "member_id")
            ):
                members[channel_id].append(member_id)
            # Plain tuples: whole pinned messages held for the export would grow with the team.
            pins: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
            for channel_id, *pin in (
                Pin.objects.filter(team_id=team.id)
                .order_by("id")
                .values_list("channel_id", "message__ts", "created", "pinned_by")
            ):
                pins[channel_id].append(tuple(pin))  # type: ignore[arg-type]
            total = Message.objects.filter(team_id=team.id).count()
        save_progress(job, "messages", 0, total, force=True)
        user_ids = {int(ids.decode(user["id"], ids.USER_PREFIXES)): user["id"] for user in users}
        shapes = {
            c.id: _conversation_json(team, c, members[c.id] or dm_member_ids(c), pins[c.id]) for c in channels
        }
        with ExportWriter(path) as writer:
            writer.json_file("users.json", users)
            for kind, name in _FILES.items():
                writer.json_file(name, [shapes[c.id] for c in channels if c.kind == kind])
            written = 0
            for channel in channels:
                folder = _folder(channel, shapes[channel.id])
                written += writer.conversation(folder, _messages(team, channel, user_ids, job, progress))
    return {"members": len(users), "channels": len(channels), "messages": written}


def run_export(job_id: int, progress: Progress | None = None) -> TransferJob:
    job = TransferJob.objects.get(id=job_id)
    if job.status in (S.DONE, S.FAILED):
        return job
    team = team_entry(int(job.team_id or 0))
    set_status(job, S.RUNNING)
    job.done = 0
    output = Path(job.archive)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    try:
        job.counts = write_export(team, partial, job, progress)
    except RETRYABLE:
        raise  # paused; a retry starts the file over
    except Exception as exc:
        logger.exception("export job %s failed", job.id)
        partial.unlink(missing_ok=True)
        set_status(job, S.FAILED, error=f"export failed: {exc}")
        raise
    partial.replace(output)  # only a complete export is ever served
    job.done = job.total
    job.save(update_fields=["counts", "done"])
    set_status(job, S.DONE)
    if progress:
        progress(job)
    return job

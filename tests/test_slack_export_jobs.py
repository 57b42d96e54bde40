"""Exports as Celery jobs on a real worker: a worker killed mid-export is resumed from its
last staged segment (not from the start) and ends with the same zip as an uninterrupted
export; what is written in the team after the export began is left out of it."""

from __future__ import annotations

import json
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from bench.slack_export_gen import generate
from chatproject.dbrouter import on_shard
from jobs.models import TransferJob
from jobs.slack_export.exporter import run_export, staging_dir, start_export
from jobs.slack_export.importer import run_import
from jobs.slack_export.reserve import start_import
from jobs.transfer_tasks import enqueue, resume_transfers
from messaging.actions.channels import join_channel
from messaging.actions.posting import post_message
from messaging.actions.reactions import add_reaction
from messaging.models import Channel, Message
from teams import ids, moves
from teams.actions import create_member
from teams.auth import caller_from_token
from teams.directory import team_entry
from teams.models import Team
from tests import slack_fixtures as fx
from tests.servers import running_worker
from tests.test_slack_import_jobs import _kill_hard, _wait_for

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

WORKER_ENV = {"CHAT_EXPORT_SEGMENT_MESSAGES": "500", "CHAT_TRANSFER_LOCK_SECS": "3"}


def _contents(path: Path) -> dict[str, object]:
    with zipfile.ZipFile(path) as archive:
        return {name: json.loads(archive.read(name)) for name in archive.namelist()}


def test_killed_export_resumes_to_the_same_zip(tmp_path: Path) -> None:
    generate(tmp_path / "in.zip", messages=10_000, channels=8, members=40)
    imported = run_import(start_import(tmp_path / "in.zip", shard="shard_0").id)
    team = team_entry(int(imported.team_id or 0))
    reference = run_export(start_export(team, output=tmp_path / "reference.zip").id)
    assert reference.status == "done" and reference.counts["messages"] == 10_000

    job = start_export(team)
    output = Path(job.archive)
    with running_worker("io", concurrency=1, extra_env=WORKER_ENV) as worker:
        enqueue(job)
        job = _wait_for(lambda j: 3 <= j.checkpoint.get("segments", 0) <= 12, job)
        _kill_hard(worker.pid)
    job.refresh_from_db()
    killed_at = job.checkpoint["messages_done"]
    assert job.status == "running" and 0 < killed_at < 10_000
    assert not output.exists() and staging_dir(job).is_dir()
    plan = json.loads((staging_dir(job) / "plan.json").read_text())
    # The last conversation is not written yet: what lands in it now is read by the
    # resumed run, which must still leave it out.
    assert job.checkpoint["conversation"] < len(plan["conversations"]) - 1

    # Written after the export began: a new member, their message, their reaction.
    late, token = create_member(team, "late@new.test", name="Late")
    caller = caller_from_token(token)
    with on_shard(team.shard):
        last = Channel.objects.get(team_id=team.id, id=plan["conversations"][-1]["id"])
        first = Message.objects.filter(channel=last).order_by("ts").first()
        assert first is not None
        join_channel(caller, last.slack_id)
        post_message(caller, last.slack_id, text="after the export began")
        add_reaction(caller, last.slack_id, ids.format_ts(first.ts), "tada")

    time.sleep(3.5)  # the dead worker's lock lapses
    with running_worker("io", concurrency=1, extra_env=WORKER_ENV):
        assert resume_transfers(stalled_secs=0) == 1
        job = _wait_for(lambda j: j.status in ("done", "failed"), job)
    assert job.status == "done", job.errors
    # The second run began where the first one's last segment ended.
    assert job.checkpoint["starts"] == [0, killed_at]
    assert job.counts == reference.counts
    resumed, uninterrupted = _contents(output), _contents(tmp_path / "reference.zip")
    assert sorted(resumed) == sorted(uninterrupted)
    for name, content in uninterrupted.items():
        assert resumed[name] == content, name
    assert late.slack_id not in json.dumps(resumed["users.json"])
    assert not staging_dir(job).exists()  # staging cleaned up


def _move_to_shard_1(team_id: int) -> None:
    try:
        moves.move_team_to_shard(team_entry(team_id), "shard_1")
    finally:
        connections.close_all()  # this thread's own


def test_an_export_goes_on_after_its_team_moved(tmp_path: Path, settings: Any) -> None:
    """The team moves to another shard (and its old copy is cleaned up) while an export
    runs: the segment being read keeps its snapshot, the next ones read the new shard, and
    the zip is the same as one exported without a move."""
    archive = fx.write_zip(tmp_path / "in.zip", fx.export_files())
    imported = run_import(start_import(archive, shard="shard_0").id)
    team = team_entry(int(imported.team_id or 0))
    run_export(start_export(team, output=tmp_path / "before.zip").id)
    settings.EXPORT_SEGMENT_MESSAGES = 5
    moved: list[str] = []

    def move_once(job: TransferJob) -> None:
        if job.phase == "messages" and job.done and not moved:
            # Its own thread: this one is inside the export's read-only snapshot.
            mover = threading.Thread(target=_move_to_shard_1, args=[team.id])
            mover.start()
            mover.join()
            moved.append(Team.objects.get(id=team.id).shard)

    job = run_export(start_export(team, output=tmp_path / "moved.zip").id, move_once)
    assert job.status == "done" and moved == ["shard_1"]
    assert job.checkpoint["segments"] > 2  # segments read after the move, from shard_1
    with on_shard("shard_0"):
        assert not Message.objects.filter(team_id=team.id).exists()  # the old copy is gone
    assert _contents(tmp_path / "moved.zip") == _contents(tmp_path / "before.zip")


def test_two_exports_to_one_path_do_not_share_their_parts(tmp_path: Path, settings: Any) -> None:
    """A second export to the same path, run while the first one is mid-way, stages its
    own parts: both end with the whole zip."""
    archive = fx.write_zip(tmp_path / "in.zip", fx.export_files())
    team = team_entry(int(run_import(start_import(archive, shard="shard_0").id).team_id or 0))
    run_export(start_export(team, output=tmp_path / "reference.zip").id)
    settings.EXPORT_SEGMENT_MESSAGES = 5
    output = tmp_path / "same.zip"
    first, second = start_export(team, output=output), start_export(team, output=output)
    ran: list[str] = []

    def run_second_midway(job: TransferJob) -> None:
        if job.phase == "messages" and job.done and not ran:
            # Its own thread: this one is inside the first export's read-only snapshot.
            runner = threading.Thread(target=lambda: ran.append(_export_in_thread(second.id)))
            runner.start()
            runner.join()

    assert run_export(first.id, run_second_midway).status == "done"
    assert ran == ["done"]
    assert _contents(output) == _contents(tmp_path / "reference.zip")
    assert not staging_dir(first).exists() and not staging_dir(second).exists()


def _export_in_thread(job_id: int) -> str:
    try:
        return run_export(job_id).status
    finally:
        connections.close_all()  # this thread's own

"""Exports as Celery jobs on a real worker: a worker killed mid-export is resumed from its
last staged segment (not from the start) and ends with the same zip as an uninterrupted
export; what is written in the team after the export began is left out of it."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import pytest

from bench.slack_export_gen import generate
from chatproject.dbrouter import on_shard
from jobs.slack_export.exporter import run_export, start_export
from jobs.slack_export.importer import run_import
from jobs.slack_export.reserve import start_import
from jobs.transfer_tasks import enqueue, resume_transfers
from messaging.actions.posting import post_message
from messaging.actions.reactions import add_reaction
from messaging.models import Channel, Message
from teams import ids
from teams.actions import create_member
from teams.auth import caller_from_token
from teams.directory import team_entry
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
    assert not output.exists() and (output.parent / f"{output.name}.parts").is_dir()

    # Written after the export began: a new member, their message, their reaction.
    late, token = create_member(team, "late@new.test", name="Late")
    caller = caller_from_token(token)
    with on_shard(team.shard):
        general = Channel.objects.get(team_id=team.id, name="general")
        first = Message.objects.filter(channel=general).order_by("ts").first()
        assert first is not None
        post_message(caller, general.slack_id, text="after the export began")
        add_reaction(caller, general.slack_id, ids.format_ts(first.ts), "tada")

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
    assert not (output.parent / f"{output.name}.parts").exists()  # staging cleaned up

"""Imports as Celery jobs on a real worker: a worker killed mid-import is resumed and
ends with the same team as an uninterrupted run; an open shard breaker pauses the job
instead of failing it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from bench.slack_export_gen import generate
from chatproject.dbrouter import on_shard
from jobs import breaker_sight, breakers
from jobs.models import TransferJob
from jobs.slack_export.importer import run_import
from jobs.slack_export.reserve import start_import
from jobs.transfer_tasks import enqueue, resume_transfers
from messaging.models import ChannelMember, Message
from teams.actions import create_team
from teams.models import Member, Team
from tests import servers
from tests.servers import ROOT, running_worker
from tests.slack_snapshot import snapshot

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

WORKER_ENV = {"CHAT_IMPORT_BATCH_MESSAGES": "100", "CHAT_TRANSFER_LOCK_SECS": "3"}


def _wait_for(check: Callable[[TransferJob], bool], job: TransferJob, timeout: float = 120) -> TransferJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if check(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job stuck at {job}")


def _kill_hard(pid: int) -> None:
    process = psutil.Process(pid)
    for child in [*process.children(recursive=True), process]:
        child.send_signal(signal.SIGKILL)
    process.wait(10)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "big.zip"
    generate(path, messages=10_000, channels=8, members=40)
    return path


def _kill_and_resume(job: TransferJob) -> TransferJob:
    """Run the job on a worker, kill the worker mid-messages, resume on a new one."""
    with running_worker("io", concurrency=1, extra_env=WORKER_ENV) as worker:
        enqueue(job)
        job = _wait_for(lambda j: j.phase == "messages" and j.total * 0.2 < j.done < j.total * 0.6, job)
        _kill_hard(worker.pid)
    job.refresh_from_db()
    assert job.status == "running" and job.done < job.total
    assert Team.objects.get(id=job.team_id).status == "importing"  # still invisible
    time.sleep(3.5)  # the dead worker's lock lapses
    with running_worker("io", concurrency=1, extra_env=WORKER_ENV):
        assert resume_transfers(stalled_secs=0) == 1
        job = _wait_for(lambda j: j.status in ("done", "failed"), job)
    assert job.status == "done", job.errors
    assert Team.objects.get(id=job.team_id).status == "active"
    return job


def test_killed_worker_resumes_to_the_same_team(archive: Path) -> None:
    reference = run_import(start_import(archive, shard="shard_0").id)
    job = _kill_and_resume(start_import(archive, shard="shard_1"))
    assert job.counts == reference.counts
    assert snapshot(job.team_id, "shard_1") == snapshot(reference.team_id, "shard_0")


def test_killed_import_into_an_existing_empty_team_resumes(archive: Path) -> None:
    create_team("refco", "Ref", "owner@ref.test", shard="shard_0")
    reference = run_import(start_import(archive, domain="refco").id)
    target = create_team("killco", "Kill", "owner@ref.test", shard="shard_1")
    job = _kill_and_resume(start_import(archive, domain="killco"))
    assert job.team_id == target.team.id
    assert job.counts == reference.counts
    resumed, uninterrupted = snapshot(target.team.id, "shard_1"), snapshot(reference.team_id, "shard_0")
    for team_snapshot in (resumed, uninterrupted):  # #random, not in the archive, keeps its own date
        team_snapshot["conversations"] = [
            (*c[:6], 0, *c[7:]) if c[0] == "random" else c for c in team_snapshot["conversations"]
        ]
    assert resumed == uninterrupted
    with on_shard("shard_1"):
        owner = Member.objects.get(id=target.owner_id)
        assert owner.is_owner
        assert ChannelMember.objects.filter(member_id=owner.id, channel__is_general=True).exists()


def test_open_breaker_pauses_the_job(tmp_path: Path, archive: Path) -> None:
    job = start_import(archive, shard="shard_1")
    breakers.force("shard:shard_1", breakers.FORCED_OPEN)
    try:
        with running_worker("io", concurrency=1, extra_env=WORKER_ENV):
            enqueue(job)
            job = _wait_for(lambda j: j.status == "paused", job, timeout=60)
            assert breakers.breaker_status("shard:shard_1").deferrals >= 1
            breakers.reset("shard:shard_1")
            # The worker trusts the open circuit it saw for SIGHT_SECS more (jobs.breaker_sight):
            # a run sent before then pauses again, until the scheduled retry a minute away.
            time.sleep(breaker_sight.SIGHT_SECS + 0.2)
            enqueue(job)  # resume now
            job = _wait_for(lambda j: j.status in ("done", "failed"), job)
    finally:
        breakers.reset("shard:shard_1")
    assert job.status == "done" and not job.errors
    assert job.counts["messages"] == 10_000


def test_ctrl_c_on_the_command_puts_the_existing_team_back(archive: Path) -> None:
    """An operator's Ctrl-C mid-import (a KeyboardInterrupt, which no `except Exception`
    catches) undoes the import: the team is active and empty again, not closed for good."""
    created = create_team("intco", "Int", "owner@int.test", shard="shard_1")
    command = [sys.executable, "manage.py", "import_slack", str(archive), "--team", "intco"]
    env = {**servers.test_environment(), **WORKER_ENV}
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # As from an operator's terminal: a suite started in the background (nohup, CI
        # runners) passes SIGINT on ignored, and the command would never hear the Ctrl-C.
        preexec_fn=_default_sigint,
    )
    try:
        job = _wait_for(lambda j: j.phase == "messages" and j.done > 0, _job_for(created.team.id))
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0 and b"import interrupted and undone" in err
    job.refresh_from_db()
    assert job.status == "failed" and job.errors == ["interrupted (Ctrl-C)"]
    assert Team.objects.get(id=created.team.id).status == "active"
    with on_shard("shard_1"):
        assert not Message.objects.filter(team_id=created.team.id).exists()
        assert list(
            Member.objects.filter(team_id=created.team.id, is_bot=False).values_list("id", flat=True)
        ) == [created.owner_id]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _job_for(team_id: int, timeout: float = 60) -> TransferJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = TransferJob.objects.filter(team_id=team_id, kind="import").first()
        if job is not None:
            return job
        time.sleep(0.05)
    raise AssertionError("the command started no job")

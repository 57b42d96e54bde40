"""Exporting a team to Slack's format, and the round trip: export then import into a
new team gives the same members, conversations, messages, threads, reactions and pins."""

from __future__ import annotations

import json
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from jobs.models import TransferJob
from jobs.slack_export.exporter import run_export, staging_dir, start_export
from jobs.slack_export.importer import run_import
from jobs.slack_export.progress import job_json
from jobs.slack_export.reserve import start_import
from jobs.slack_export.retention import prune_exports
from teams.directory import team_entry
from tests import slack_fixtures as fx
from tests.slack_snapshot import snapshot

pytestmark = pytest.mark.django_db(databases="__all__")


def _import(path: Path, shard: str) -> int:
    job = run_import(start_import(path, shard=shard).id)
    assert job.status == "done", job.errors
    return int(job.team_id or 0)


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    original = _import(fx.write_zip(tmp_path / "in.zip", fx.export_files()), "shard_0")
    job = run_export(start_export(team_entry(original), output=tmp_path / "out.zip").id)
    assert job.status == "done" and job.counts["messages"] == fx.EXPECTED["messages"]
    again = _import(tmp_path / "out.zip", "shard_1")
    before, after = snapshot(original, "shard_0"), snapshot(again, "shard_1")
    for part in ("members", "conversations", "messages", "reactions", "pins"):
        assert after[part] == before[part], part
    assert len(after["messages"]) == fx.EXPECTED["messages"] and len(after["pins"]) == fx.EXPECTED["pins"]


def test_export_layout(tmp_path: Path) -> None:
    team = _import(fx.write_zip(tmp_path / "in.zip", fx.export_files()), "shard_0")
    run_export(start_export(team_entry(team), output=tmp_path / "out.zip").id)
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        names = set(archive.namelist())
        channels = json.loads(archive.read("channels.json"))
        general_day = json.loads(archive.read("general/2017-07-14.json"))
    assert {"users.json", "channels.json", "groups.json", "dms.json", "mpims.json"} <= names
    assert {"general/2017-07-15.json", "random/2017-07-16.json", "secret/2017-07-14.json"} <= names
    assert {c["name"] for c in channels} == {"general", "random", "old-stuff"}
    clap = general_day[0]["reactions"][0]
    assert (clap["name"], clap["count"]) == ("clap::skin-tone-3", 2)
    assert [m["ts"] for m in general_day] == sorted(m["ts"] for m in general_day)


def test_finished_exports_expire(tmp_path: Path, settings: Any) -> None:
    """Exports under TRANSFER_DIR are deleted a while after they finished; a zip the
    operator wrote elsewhere with export_team is theirs and stays."""
    team = team_entry(_import(fx.write_zip(tmp_path / "in.zip", fx.export_files()), "shard_0"))
    settings.TRANSFER_DIR = tmp_path / "transfers"
    elsewhere = run_export(start_export(team, output=tmp_path / "mine.zip").id)
    old, fresh = run_export(start_export(team).id), run_export(start_export(team).id)
    long_ago = timezone.now() - timedelta(seconds=settings.EXPORT_RETENTION_SECS + 60)
    TransferJob.objects.filter(id__in=[elsewhere.id, old.id]).update(updated=long_ago)
    assert prune_exports() == 1
    assert not Path(old.archive).exists() and Path(fresh.archive).is_file()
    assert (tmp_path / "mine.zip").is_file()
    old.refresh_from_db()
    assert (old.status, old.phase, job_json(old)["download_url"]) == ("done", "expired", None)
    assert job_json(fresh)["download_url"]
    assert prune_exports() == 0
    assert list((tmp_path / "transfers").iterdir()) == [Path(fresh.archive)]  # no staging left


def test_a_failed_export_keeps_its_phase_when_its_leftovers_go(tmp_path: Path, settings: Any) -> None:
    """Retention deletes what a failed export left behind, but the job still says where it
    failed (its phase is not turned into "expired"), and is visited once."""
    team = team_entry(_import(fx.write_zip(tmp_path / "in.zip", fx.export_files()), "shard_0"))
    settings.TRANSFER_DIR = tmp_path / "transfers"
    job = start_export(team)
    staging = staging_dir(job)
    staging.mkdir(parents=True)
    (staging / "segment-000000.zip").write_bytes(b"half")
    long_ago = timezone.now() - timedelta(seconds=settings.EXPORT_RETENTION_SECS + 60)
    TransferJob.objects.filter(id=job.id).update(
        status="failed", phase="messages", errors=["export failed: disk full"], updated=long_ago
    )
    assert prune_exports() == 1
    job.refresh_from_db()
    assert (job.status, job.phase) == ("failed", "messages") and not staging.exists()
    assert prune_exports() == 0

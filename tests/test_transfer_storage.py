"""The transfer store's breaker (jobs.slack_export.storage): a store that fails pauses
imports and exports instead of failing them, and refuses uploads with a retryable error;
an archive's own faults never count against the store.

The store fails for real here: a file of the export is /dev/full, where every write
fails with ENOSPC, as on a full volume."""

from __future__ import annotations

import dataclasses
import errno
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from jobs import breakers
from jobs.models import TransferJob
from jobs.slack_export import storage
from jobs.slack_export.archive import ArchiveError, SlackArchive
from jobs.slack_export.exporter import partial_file, run_export, start_export
from jobs.slack_export.importer import run_import
from jobs.slack_export.reserve import start_import
from jobs.slack_export.storage import STORAGE_KEY, STORAGE_POLICY, StorageFailure, on_store
from jobs.transfer_tasks import enqueue
from teams.directory import team_entry
from tests import slack_fixtures as fx
from tests.conftest import World
from tests.servers import running_worker

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

WORKER_ENV = {"CHAT_TRANSFER_LOCK_SECS": "3", "CHAT_JOB_BASE_BACKOFF_SECS": "30"}


@pytest.fixture(autouse=True)
def store_breaker_reset() -> Iterator[None]:
    breakers.reset(STORAGE_KEY)
    yield
    breakers.reset(STORAGE_KEY)


def _wait_for(job: TransferJob, statuses: tuple[str, ...], timeout: float = 60) -> TransferJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job.id} is {job.status}, not {statuses}")


def test_store_failures_count_and_an_archives_faults_do_not(tmp_path: Path) -> None:
    with pytest.raises(StorageFailure) as failed, on_store(), open("/dev/full", "wb") as full:
        full.write(b"x" * 4096)
        full.flush()
    assert failed.value.errno == errno.ENOSPC
    with pytest.raises(FileNotFoundError), on_store():
        (tmp_path / "nowhere").read_bytes()
    (tmp_path / "damaged.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArchiveError):
        SlackArchive.open(tmp_path / "damaged.zip")
    status = breakers.breaker_status(STORAGE_KEY)
    assert (status.calls, status.failures) == (1, 1)  # the last two said nothing of the store


# The store's slow-call limit for the next test (minutes in production), and how long
# each read of messages then takes on the shard: the export's one segment reads them
# about 25 times (its snapshot, each conversation's chunks and reactions), 2.5 s in all.
STORE_SLOW_SECS = 1.0
SHARD_READ_SECS = 0.1


def _slow_message_reads(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    if sql.startswith("SELECT") and '"messaging_message"' in sql:
        execute("SELECT pg_sleep(%s)", [SHARD_READ_SECS], False, context)
    return execute(sql, params, many, context)


def test_a_slow_shard_is_not_a_slow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export segment's store steps are its file work: a shard that takes longer than
    the store's slow-call limit to give a segment its messages is its own breaker's
    business, and counts nothing against the store's (which pauses every transfer)."""
    archive = fx.write_zip(tmp_path / "in.zip", fx.export_files())
    imported = run_import(start_import(archive, shard="shard_0").id)
    breakers.reset(STORAGE_KEY)  # the import's own store steps
    monkeypatch.setattr(
        storage, "STORAGE_POLICY", dataclasses.replace(STORAGE_POLICY, slow_call_secs=STORE_SLOW_SECS)
    )
    job = start_export(team_entry(int(imported.team_id or 0)), output=tmp_path / "out.zip")
    started = time.monotonic()
    with connections["shard_0"].execute_wrapper(_slow_message_reads):
        job = run_export(job.id)
    assert job.status == "done" and job.checkpoint["segments"] == 1
    assert time.monotonic() - started > 2 * STORE_SLOW_SECS  # the shard was that slow
    status = breakers.breaker_status(STORAGE_KEY)
    assert status.calls > 0 and status.failures == 0


def test_a_shard_failing_between_two_chunks_of_a_day_file_pauses_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that fails while a day file is open (its conversation read a chunk at a
    time) pauses the export, as any shard failure does: closing the zip around the open
    file must not replace that error with one that fails the job and drops its staging."""
    from django.db import OperationalError

    from jobs.slack_export import exporter

    archive = fx.write_zip(tmp_path / "in.zip", fx.export_files())
    imported = run_import(start_import(archive, shard="shard_0").id)
    monkeypatch.setattr(exporter, "CHUNK", 1)  # the day files span chunks
    reads = 0

    def second_read_fails(execute: Callable[..., Any], sql: str, params: Any, *args: Any) -> Any:
        nonlocal reads
        chunk_read = sql.endswith('ORDER BY "messaging_message"."ts" ASC LIMIT 1')
        if chunk_read and params[2] != -1:  # a conversation's second chunk: its day file is open
            reads += 1
            if reads == 1:
                raise OperationalError("the shard went away")
        return execute(sql, params, *args)

    job = start_export(team_entry(int(imported.team_id or 0)), output=tmp_path / "out.zip")
    with connections["shard_0"].execute_wrapper(second_read_fails), pytest.raises(OperationalError):
        run_export(job.id)
    job.refresh_from_db()
    assert job.status != "failed" and reads == 1, job.errors
    done = run_export(job.id)
    assert done.status == "done", done.errors
    with zipfile.ZipFile(tmp_path / "out.zip") as exported:
        assert any(name.startswith("general/") for name in exported.namelist())


def test_a_full_store_pauses_the_export_until_there_is_room(world: World, tmp_path: Path) -> None:
    job = start_export(team_entry(world.acme.team.id), output=tmp_path / "acme.zip")
    partial_file(job).symlink_to("/dev/full")  # the join of the parts finds the volume full
    with running_worker("io", concurrency=1, extra_env=WORKER_ENV):
        enqueue(job)
        paused = _wait_for(job, ("paused", "failed", "done"))
        assert paused.status == "paused", paused.errors
        status = breakers.breaker_status(STORAGE_KEY)
        assert status.failures >= 1 and status.state == "closed"  # one failure does not open it
        partial_file(job).unlink()  # room again
        enqueue(job)  # its retry is half a minute away; resume now
        done = _wait_for(job, ("done", "failed"))
    assert done.status == "done", done.errors
    with zipfile.ZipFile(tmp_path / "acme.zip") as archive:
        assert {member["name"] for member in json.loads(archive.read("users.json"))} >= {"alice", "bob"}


def test_an_open_store_breaker_pauses_imports_and_refuses_uploads(
    world: World, client: Client, tmp_path: Path
) -> None:
    archive = fx.write_zip(tmp_path / "in.zip", fx.export_files())
    job = start_import(archive, shard="shard_1")
    breakers.force(STORAGE_KEY, breakers.FORCED_OPEN)
    with archive.open("rb") as handle:
        response = client.post(
            "/api/admin.teams.import",
            {"file": handle},
            HTTP_AUTHORIZATION=f"Bearer {world.acme['alice'].token}",
        )
    assert response.status_code == 503 and response.json() == {"ok": False, "error": "service_unavailable"}
    assert response["Retry-After"]
    with running_worker("io", concurrency=1, extra_env=WORKER_ENV):
        enqueue(job)
        paused = _wait_for(job, ("paused", "failed", "done"))
        assert paused.status == "paused", paused.errors
        assert breakers.breaker_status(STORAGE_KEY).deferrals >= 1
    breakers.reset(STORAGE_KEY)
    assert run_import(job.id).status == "done"  # resumed where it paused

"""The transfer Web API the browser client builds on: admin.teams.import,
admin.teams.export, admin.jobs.info and the export download, end to end on a real
Celery worker; only a team's admins and owners may use them."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from chatproject.dbrouter import on_shard
from jobs.models import TransferJob
from jobs.slack_export.importer import run_import
from teams import ids
from teams.models import Account, Member, Team, TeamMembership
from tests import slack_fixtures as fx
from tests.conftest import Api, World
from tests.servers import running_worker

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

JOB_KEYS = {"id", "kind", "status", "phase", "done", "total", "errors", "team_id", "domain", "download_url"}


def _upload(client: Client, token: str, path: Path, **fields: str) -> dict[str, Any]:
    with path.open("rb") as handle:
        data = {"file": handle, **fields}
        return client.post("/api/admin.teams.import", data, HTTP_AUTHORIZATION=f"Bearer {token}").json()


def _wait_done(api: Api, token: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = api("admin.jobs.info", token, job=job_id)["job"]
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not done")


def test_import_then_export_and_download(world: World, api: Api, client: Client, tmp_path: Path) -> None:
    alice = world.acme["alice"].token
    archive = fx.write_zip(tmp_path / "Old Co Slack export.zip", fx.export_files())
    answer = _upload(client, alice, archive, name="Old Co")
    assert answer["ok"], answer
    job = answer["job"]
    assert set(job) == JOB_KEYS and job["kind"] == "import" and job["status"] == "queued"
    assert job["domain"] == "old-co" and job["team_id"].startswith("T") and job["download_url"] is None
    with running_worker("io", concurrency=1):
        done = _wait_done(api, alice, job["id"])
        assert (done["status"], done["phase"], done["errors"]) == ("done", "done", [])
        uploaded = TransferJob.objects.get(id=int(job["id"])).archive
        assert (
            uploaded.endswith("Old Co Slack export.zip") and not Path(uploaded).exists()
        )  # removed when done
        new_team = Team.objects.get(id=ids.decode(job["team_id"], ids.TEAM))
        assert (new_team.status, new_team.name) == ("active", "Old Co")
        # alice@acme.test is not in the archive: she is added to the new team as an owner.
        account = Account.objects.get(email="alice@acme.test")
        membership = TeamMembership.objects.get(team=new_team, account=account)
        with on_shard(new_team.shard):
            owner = Member.objects.get(id=membership.member_id)
            assert owner.is_owner and owner.is_admin
            assert Member.objects.filter(team_id=new_team.id).count() == fx.EXPECTED["members"] + 1

        export = api("admin.teams.export", alice)
        assert export["ok"] and export["job"]["kind"] == "export"
        finished = _wait_done(api, alice, export["job"]["id"])
    assert finished["status"] == "done" and finished["team_id"] == world.acme.team.slack_id
    url = finished["download_url"]
    assert url.startswith("/transfers/")
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {alice}")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as exported:
        names = {c["name"] for c in json.loads(exported.read("channels.json"))}
        emails = {u["profile"].get("email") for u in json.loads(exported.read("users.json"))}
    assert names == {"general", "random"} and "bob@acme.test" in emails
    # Only admins of the exported team may download it.
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {world.acme['bob'].token}").status_code == 403
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {world.globex['dave'].token}").status_code == 404
    assert api("admin.jobs.info", world.globex["dave"].token, job=export["job"]["id"]) == {
        "ok": False,
        "error": "job_not_found",
    }


def test_only_admins_and_owners(world: World, api: Api, client: Client, tmp_path: Path) -> None:
    archive = fx.write_zip(tmp_path / "x.zip", fx.export_files())
    assert _upload(client, world.acme["bob"].token, archive)["error"] == "not_an_admin"
    assert api("admin.teams.export", world.acme["bob"].token)["error"] == "not_an_admin"
    assert api("admin.teams.export", world.acme.bot.token)["error"] == "not_allowed_token_type"
    assert api("admin.jobs.info", world.acme["bob"].token, job="1")["error"] == "not_an_admin"


def test_bad_requests(world: World, api: Api, client: Client, tmp_path: Path, settings: Any) -> None:
    alice = world.acme["alice"].token
    no_file = client.post("/api/admin.teams.import", {"domain": "x"}, HTTP_AUTHORIZATION=f"Bearer {alice}")
    assert no_file.json() == {"ok": False, "error": "no_file_data"}
    archive = fx.write_zip(tmp_path / "x.zip", fx.export_files())
    # acme is alice's but not empty; to dave it is just a taken domain.
    assert _upload(client, alice, archive, domain="acme")["error"] == "team_not_empty"
    assert _upload(client, world.globex["dave"].token, archive, domain="acme")["error"] == "domain_taken"
    assert _upload(client, alice, archive, domain="Not A Domain")["error"] == "invalid_domain"
    assert api("admin.jobs.info", alice, job="nope")["error"] == "job_not_found"
    assert api("admin.jobs.info", alice, job="12345")["error"] == "job_not_found"
    assert api("admin.jobs.info", alice)["error"] == "job_not_found"
    settings.IMPORT_MAX_UPLOAD_BYTES = archive.stat().st_size - 1
    assert _upload(client, alice, archive, domain="toobig")["error"] == "file_too_large"
    assert not any(Path(settings.TRANSFER_DIR).glob("import-*/x.zip"))  # nothing kept


def test_import_into_the_callers_empty_team(world: World, api: Api, client: Client, tmp_path: Path) -> None:
    """Dave's globex has nobody else and no messages: he may import into it. It closes,
    to him as well, until the import is done."""
    dave = world.globex["dave"].token
    archive = fx.write_zip(tmp_path / "x.zip", fx.export_files())
    answer = _upload(client, dave, archive, domain="globex")
    assert answer["ok"], answer
    assert answer["job"]["team_id"] == world.globex.team.slack_id
    assert api("auth.test", dave)["error"] == "team_not_found"
    job = run_import(int(answer["job"]["id"]))  # what the queued io job does
    assert job.status == "done", job.errors
    assert api("auth.test", dave)["ok"]
    assert api("admin.jobs.info", dave, job=answer["job"]["id"])["job"]["status"] == "done"


def test_session_caller_needs_csrf(world: World, tmp_path: Path) -> None:
    client = Client(enforce_csrf_checks=True)
    client.get("/signin/")
    client.post(
        "/signin/",
        {
            "username": "alice@acme.test",
            "password": "pw",
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )
    assert client.post("/api/admin.teams.export").json()["error"] == "invalid_csrf"
    answer = client.post("/api/admin.teams.export", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value).json()
    assert answer["ok"] and answer["job"]["status"] == "queued"

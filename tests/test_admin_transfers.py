"""Imports and exports started from Django admin: the upload page beside Transfer jobs
and the export action on the team list, through the same job functions as the Web API."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from django.test import Client

from chatproject.dbrouter import on_shard
from jobs.models import TransferJob
from jobs.slack_export.exporter import run_export
from jobs.slack_export.importer import run_import
from messaging.models import Message
from teams.auth import caller_from_token
from teams.models import Account, Team
from tests import slack_fixtures as fx
from tests.conftest import World

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

IMPORT_PAGE = "/admin/jobs/transferjob/import/"


@pytest.fixture
def staff(client: Client, world: World) -> Client:
    client.force_login(Account.objects.create_superuser("root@staff.test", "pw"))
    return client


def test_import_from_the_upload_page_then_export_from_the_team_list(staff: Client, tmp_path: Path) -> None:
    assert b'name="archive"' in staff.get(IMPORT_PAGE).content
    archive = fx.write_zip(tmp_path / "old.zip", fx.export_files())
    with archive.open("rb") as upload:
        answer = staff.post(IMPORT_PAGE, {"archive": upload, "domain": "from-admin", "shard": "shard_1"})
    job = TransferJob.objects.get(kind="import", domain="from-admin")
    assert answer.status_code == 302 and answer["Location"].endswith(f"/transferjob/{job.id}/change/")
    assert Team.objects.get(id=job.team_id).status == "importing"  # invisible until it runs
    assert run_import(job.id).status == "done"  # what the queued io job does
    team = Team.objects.get(id=job.team_id)
    assert (team.status, team.shard) == ("active", "shard_1")
    assert str(job.id).encode() in staff.get(f"/admin/jobs/transferjob/{job.id}/change/").content
    dashboard = staff.get("/admin/ops/jobqueue/").content.decode()
    assert "from-admin" in dashboard and "No import or export is running" not in dashboard

    staff.post("/admin/teams/team/", {"action": "export_teams", "_selected_action": [team.pk]})
    export = TransferJob.objects.get(kind="export", team_id=team.id)
    assert run_export(export.id).status == "done"
    with zipfile.ZipFile(export.archive) as exported:
        assert {"users.json", "channels.json"} <= set(exported.namelist())


def test_upload_into_an_existing_empty_team(staff: Client, world: World, tmp_path: Path) -> None:
    archive = fx.write_zip(tmp_path / "old.zip", fx.export_files())
    with archive.open("rb") as upload:
        page = staff.post(IMPORT_PAGE, {"archive": upload, "domain": "acme"})
    assert page.status_code == 200 and b"team_not_empty" in page.content  # acme has people
    with archive.open("rb") as upload:
        answer = staff.post(IMPORT_PAGE, {"archive": upload, "domain": "globex"})  # dave alone
    job = TransferJob.objects.get(kind="import", domain="globex")
    assert answer.status_code == 302 and job.team_id == world.globex.team.id
    assert Team.objects.get(id=job.team_id).status == "importing"
    assert run_import(job.id).status == "done"
    assert Team.objects.get(id=job.team_id).status == "active"
    with on_shard(world.globex.team.shard):
        assert Message.objects.filter(team_id=job.team_id).count() == fx.EXPECTED["messages"]
    assert caller_from_token(world.globex["dave"].token).team_id == job.team_id  # still his


def test_a_refused_upload_says_why_and_keeps_nothing(staff: Client, tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with bad.open("rb") as upload:
        page = staff.post(IMPORT_PAGE, {"archive": upload, "domain": "Not A Domain"})
    assert page.status_code == 200 and b"invalid_domain" in page.content
    assert not TransferJob.objects.filter(kind="import").exists()


def test_only_superusers_import(client: Client, world: World) -> None:
    helper = Account.objects.create_user("helper@staff.test", "pw")
    helper.is_staff = True
    helper.save()
    client.force_login(helper)
    assert client.get(IMPORT_PAGE).status_code in (302, 403)


def test_an_unfinished_import_is_abandoned_not_deleted(staff: Client, world: World, tmp_path: Path) -> None:
    """Deleting an unfinished import's job would leave its team closed for good: admin
    refuses it, and "abandon" undoes the import and reopens the team instead."""
    archive = fx.write_zip(tmp_path / "old.zip", fx.export_files())
    with archive.open("rb") as upload:
        staff.post(IMPORT_PAGE, {"archive": upload, "domain": "globex"})  # dave's empty team
    job = TransferJob.objects.get(kind="import", domain="globex")
    assert Team.objects.get(id=job.team_id).status == "importing"
    assert staff.get(f"/admin/jobs/transferjob/{job.id}/delete/").status_code == 403
    page = staff.post(
        "/admin/jobs/transferjob/",
        {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"},
        follow=True,
    )
    assert page.status_code in (200, 403) and TransferJob.objects.filter(id=job.id).exists()
    staff.post("/admin/jobs/transferjob/", {"action": "abandon_imports", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.status == "failed" and job.errors[-1] == "abandoned by root@staff.test"
    assert Team.objects.get(id=job.team_id).status == "active"
    assert caller_from_token(world.globex["dave"].token).team_id == job.team_id  # open again
    assert staff.get(f"/admin/jobs/transferjob/{job.id}/delete/").status_code == 200  # now it may go

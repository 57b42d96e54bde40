"""manage.py import_slack and export_team: progress on stderr, --json result, and a
readable error with a non-zero exit for a bad archive."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from teams.models import Team
from tests import servers
from tests import slack_fixtures as fx

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def test_import_json_then_export(tmp_path: Path) -> None:
    archive = fx.write_zip(tmp_path / "old.zip", fx.export_files())
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "import_slack",
        str(archive),
        "--team",
        "oldco",
        "--shard",
        "shard_1",
        "--json",
        stdout=out,
        stderr=err,
    )
    result = json.loads(out.getvalue())
    assert set(result) == {"team_id", "domain", "counts", "skipped"}
    assert result["domain"] == "oldco" and result["team_id"].startswith("T")
    assert result["counts"] == fx.EXPECTED and len(result["skipped"]) == 4
    assert "messages" in err.getvalue() and "100.0%" in err.getvalue()  # the progress bar
    assert Team.objects.get(domain="oldco").shard == "shard_1"
    out = io.StringIO()
    call_command(
        "export_team", "--team", "oldco", str(tmp_path / "back.zip"), stdout=out, stderr=io.StringIO()
    )
    assert "29 messages" in out.getvalue() and (tmp_path / "back.zip").stat().st_size > 0


def test_unknown_team_and_a_team_with_content(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no team with domain 'nope'"):
        call_command("export_team", "--team", "nope", str(tmp_path / "x.zip"))
    archive = fx.write_folder(tmp_path / "export", fx.export_files())
    call_command("import_slack", str(archive), "--team", "dup", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="team 'dup' is not empty \\(it has messages\\)"):
        call_command("import_slack", str(archive), "--team", "dup")


def test_bad_archive_exits_non_zero_with_a_readable_error(tmp_path: Path) -> None:
    files = fx.export_files()
    files["general/2017-07-14.json"] = b"[{oops"
    archive = fx.write_zip(tmp_path / "bad.zip", files)
    command = [sys.executable, "manage.py", "import_slack", str(archive), "--team", "badco"]
    done = subprocess.run(
        command, cwd=servers.ROOT, env=servers.test_environment(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "import failed: general/2017-07-14.json: malformed JSON" in done.stderr
    assert "Traceback" not in done.stderr
    assert not Team.objects.filter(domain="badco").exists()

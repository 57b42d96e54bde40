"""manage.py shards, the placement setting, and adding a shard (CHAT_SHARD_URLS + migrate_all)."""

import json
import subprocess
import sys
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command

from teams.actions import create_team, set_team_status
from teams.errors import ApiError
from tests import servers
from tests.conftest import World

pytestmark = pytest.mark.django_db(databases="__all__")


def _shards_json(*args: str) -> dict:
    out = StringIO()
    call_command("shards", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def test_lists_each_shard_with_its_teams_and_size(world: World) -> None:
    create_team("initech", "Initech", "bill@initech.test", shard="shard_1")
    set_team_status(world.globex.team.id, "disabled")
    report = _shards_json()
    shards = {s["alias"]: s for s in report["shards"]}
    assert set(shards) == {"shard_0", "shard_1"}
    assert shards["shard_0"]["teams"] == 1 and shards["shard_0"]["teams_by_status"] == {"active": 1}
    assert shards["shard_1"]["teams"] == 2
    assert shards["shard_1"]["teams_by_status"] == {"active": 1, "disabled": 1}
    assert all(s["reachable"] and s["size_bytes"] > 1_000_000 for s in shards.values())
    assert report["placement"] == {"policy": "least_loaded", "next_team_goes_to": "shard_0"}
    text = StringIO()
    call_command("shards", stdout=text)
    assert "shard_1" in text.getvalue() and "1 disabled" in text.getvalue()


def test_closed_shards_take_no_new_teams_unless_asked(world: World, settings) -> None:
    settings.SHARDS_CLOSED = ["shard_0"]
    assert create_team("initech", "Initech", "bill@initech.test").team.shard == "shard_1"
    assert create_team("hooli", "Hooli", "gavin@hooli.test").team.shard == "shard_1"
    assert create_team("pied", "Pied", "r@pied.test", shard="shard_0").team.shard == "shard_0"
    assert {s["alias"]: s["accepts_new_teams"] for s in _shards_json()["shards"]} == {
        "shard_0": False,
        "shard_1": True,
    }
    settings.SHARDS_CLOSED = ["shard_0", "shard_1"]
    with pytest.raises(ApiError) as error:
        create_team("nowhere", "Nowhere", "x@nowhere.test")
    assert error.value.code == "no_shards"
    assert _shards_json()["placement"]["next_team_goes_to"] is None


def test_round_robin_placement(world: World, settings) -> None:
    settings.SHARD_PLACEMENT = "round_robin"
    placed = [create_team(f"rr{n}", "RR", f"o@rr{n}.test").team.shard for n in range(3)]
    assert placed == ["shard_0", "shard_1", "shard_0"]  # 2, 3, 4 teams before each


@pytest.mark.django_db(databases="__all__", transaction=True)  # the commands see the world
def test_adding_a_shard_is_a_url_and_migrate_all(world: World) -> None:
    base = servers._database_url("shard_0").rsplit("/", 1)[0]
    name = "test_chat_added_shard"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        env = servers.test_environment()
        env["CHAT_SHARD_URLS"] += f",{base}/{name}"
        manage = [sys.executable, str(servers.ROOT / "manage.py")]
        subprocess.run([*manage, "migrate_all"], env=env, cwd=servers.ROOT, check=True, capture_output=True)
        listed = subprocess.run(
            [*manage, "shards", "--json"], env=env, cwd=servers.ROOT, check=True, capture_output=True
        )
        report = json.loads(listed.stdout)
        added = report["shards"][2]
        assert added["alias"] == "shard_2" and added["teams"] == 0 and added["reachable"]
        assert report["placement"]["next_team_goes_to"] == "shard_2"  # the empty one
        created = subprocess.run(
            [
                *manage,
                "create_team",
                "--domain",
                "newco",
                "--name",
                "NewCo",
                "--owner-email",
                "o@newco.test",
                "--json",
            ],
            env=env,
            cwd=servers.ROOT,
            check=True,
            capture_output=True,
        )
        assert json.loads(created.stdout)["shard"] == "shard_2"
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

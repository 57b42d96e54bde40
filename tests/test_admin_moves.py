"""Moving a team from Django admin: the action plans the move at once (refusing bad input) and
a real Celery worker on the io queue runs it."""

import time

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from teams.directory import team_entry
from teams.models import Account, Team, TeamMove
from tests.conftest import World
from tests.servers import running_worker
from tests.test_moves import team_rows

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture
def staff(client: Client, world: World) -> Client:
    client.force_login(Account.objects.create_superuser("root@staff.test", "pw"))
    return client


def _move_action(staff: Client, team: Team, **extra: str):
    return staff.post(
        "/admin/teams/team/", {"action": "move_teams", "_selected_action": [team.pk], "index": 0, **extra}
    )


def test_move_action_asks_for_a_shard_then_a_worker_moves_the_team(world: World, staff: Client) -> None:
    acme = Team.objects.get(id=world.acme.team.id)
    before = team_rows("shard_0", acme.id)

    page = _move_action(staff, acme)
    assert page.status_code == 200
    assert 'name="target"' in page.content.decode() and "acme" in page.content.decode()
    assert not TeamMove.objects.exists()

    refused = _move_action(staff, acme, apply="Move", target="shard_0")
    assert "already_on_shard" in " ".join(str(m) for m in get_messages(refused.wsgi_request))
    assert not TeamMove.objects.exists()

    started = _move_action(staff, acme, apply="Move", target="shard_1")
    assert started.status_code == 302
    move = TeamMove.objects.get(team=acme)
    assert (move.source, move.target, move.step) == ("shard_0", "shard_1", TeamMove.Step.PLANNED)
    assert team_entry(acme.id).shard == "shard_0"

    with running_worker("io", concurrency=1):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and TeamMove.objects.get(id=move.id).finished is None:
            time.sleep(0.2)
    move.refresh_from_db()
    assert move.step == TeamMove.Step.CLEANED and move.error == ""
    assert team_entry(acme.id).shard == "shard_1"
    assert team_rows("shard_1", acme.id) == before

    listed = staff.get("/admin/teams/teammove/").content.decode()
    assert "acme" in listed and "cleaned" in listed

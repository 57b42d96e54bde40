"""Shard placement, the router, and ids minted per database."""

import pytest
from django.db import connections

from chatproject.dbrouter import NoShardSelected, on_shard
from messaging.models import Channel, Message
from teams import ids
from teams.models import Member, Team

pytestmark = pytest.mark.django_db(databases="__all__")

NODE_BITS = 10
SEQ_BITS = 12


def _node(row_id: int) -> int:
    return (row_id >> SEQ_BITS) & ((1 << NODE_BITS) - 1)


def test_each_database_mints_ids_with_its_own_node(world) -> None:
    assert _node(world.acme.team.id) == 1023  # the control database
    for alias, number in (("shard_0", 0), ("shard_1", 1)):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT chat_next_id(), chat_next_id()")
            first, second = cursor.fetchone()
        assert _node(first) == number and second > first


def test_team_rows_live_only_on_their_shard(world) -> None:
    acme, globex = world.acme.team, world.globex.team
    assert (acme.shard, globex.shard) == ("shard_0", "shard_1")
    with on_shard("shard_0"):
        assert Member.objects.filter(team_id=acme.id).count() == 4  # alice, bob, carol, bot
        assert not Member.objects.filter(team_id=globex.id).exists()
        assert Channel.objects.filter(team_id=acme.id, name="secret").exists()
    with on_shard("shard_1"):
        assert Member.objects.filter(team_id=globex.id).count() == 2
        assert not Member.objects.filter(team_id=acme.id).exists()
    assert not connections["default"].introspection.table_names().count("messaging_message")
    assert "teams_team" not in connections["shard_0"].introspection.table_names()


def test_team_scoped_query_without_a_shard_is_refused(world) -> None:
    with pytest.raises(NoShardSelected):
        list(Message.objects.all())


def test_new_teams_go_to_the_least_loaded_shard(world) -> None:
    from teams.actions import create_team

    created = create_team("initech", "Initech", "bill@initech.test")
    # acme and globex each hold one team: ties go to the first shard.
    assert created.team.shard == "shard_0"
    assert Team.objects.get(domain="initech").shard == "shard_0"
    assert create_team("hooli", "Hooli", "gavin@hooli.test").team.shard == "shard_1"


def test_explicit_shard_must_exist(world) -> None:
    from teams.actions import create_team
    from teams.errors import ApiError

    with pytest.raises(ApiError) as error:
        create_team("nowhere", "Nowhere", "x@nowhere.test", shard="shard_9")
    assert error.value.code == "invalid_shard"
    assert not Team.objects.filter(domain="nowhere").exists()


def test_slack_ids_have_slack_shapes(world) -> None:
    assert world.acme.team.slack_id.startswith("T")
    assert world.acme["alice"].user_id.startswith("U")
    assert world.acme.channels["general"].startswith("C")
    assert world.acme.channels["secret"].startswith("G")
    assert ids.decode(world.acme["bob"].user_id, ids.USER_PREFIXES) > 0

"""Migration 0006 (the search index with weeks) runs again after a CREATE INDEX
CONCURRENTLY that failed, which leaves an INVALID index of the same name behind.

It migrates the test shard back and forth, so it runs outside a transaction and puts the
shard back at the latest migration whatever happens.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connections

from tests.conftest import World
from tests.search_helpers import index, post, search

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


_VALID = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('message_search_weeks')"


def _valid(shard: str) -> bool | None:
    """Whether message_search_weeks is valid (None: there is none)."""
    with connections[shard].cursor() as cursor:
        cursor.execute(_VALID)
        row = cursor.fetchone()
    return None if row is None else row[0]


def test_0006_runs_again_over_the_invalid_index_a_failed_build_left(world: World, api) -> None:
    acme, alice = world.acme, world.acme["alice"].token
    shard = acme.team.shard
    post(api, alice, acme.channels["general"], "quince jam")
    post(api, alice, acme.channels["general"], "quince tart")
    call_command("migrate", "messaging", "0005", database=shard, verbosity=0)
    try:
        with connections[shard].cursor() as cursor, pytest.raises(IntegrityError):
            # Unique over two messages: fails after the index is created, as a build
            # interrupted by a deadlock or a cancelled deploy does. The index stays.
            cursor.execute("CREATE UNIQUE INDEX CONCURRENTLY message_search_weeks ON messaging_message ((1))")
        assert _valid(shard) is False
        call_command("migrate", "messaging", database=shard, verbosity=0)
        assert _valid(shard) is True
    finally:
        if _valid(shard) is not True:  # the migration failed: clear its way and finish it
            with connections[shard].cursor() as cursor:
                cursor.execute("DROP INDEX CONCURRENTLY IF EXISTS message_search_weeks")
            call_command("migrate", "messaging", database=shard, verbosity=0)
    index(acme)
    assert search(api, alice, "quince")["total"] == 2

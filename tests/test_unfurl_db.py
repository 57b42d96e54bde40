"""A shard that cannot store previews (its rows locked by a long transaction) holds up
only its own teams' previews: the preview worker has a few database threads per
database (jobs.db_threads), and a store that waits too long is rescheduled, not lost.
So is a job whose control database does not answer when it looks up the team's shard.

A module of its own: its worker (one database thread per database) must be the only
one consuming the queue.
"""

import time
from contextlib import ExitStack

import pytest
from django.core.cache import cache
from django.db import connections, transaction
from django.db.backends.utils import CursorWrapper

from chatproject.celery import app as celery_app
from messaging.models import Message
from teams.directory import team_entry_cache_key
from teams.models import Team
from tests.conftest import World
from tests.servers import running_worker
from tests.test_unfurl import POOL, QUEUES, WORKER_ENV, _previews, _wait
from tests.upstream import running_upstream

pytestmark = [
    pytest.mark.django_db(databases="__all__", transaction=True),
    pytest.mark.usefixtures("forget_suspicion"),
]


def test_a_locked_shard_does_not_stop_previews_on_the_other(world: World, api) -> None:
    acme, globex = world.acme, world.globex
    acme_token, acme_general = acme["alice"].token, acme.channels["general"]
    globex_token, globex_general = globex["dave"].token, globex.channels["general"]
    env = {**WORKER_ENV, "CHAT_UNFURL_DB_THREADS": "1"}
    with running_worker(QUEUES, 4, env, POOL), running_upstream() as slow, running_upstream() as fine:
        slow.mode = "slow"  # 1.5 s: time to lock the message before its preview is stored
        stuck_text = f"locked {slow.base}/a"
        assert api("chat.postMessage", acme_token, channel=acme_general, text=stuck_text)["ok"]
        shard = acme.team.shard
        with transaction.atomic(using=shard):
            locked = list(Message.objects.using(shard).select_for_update().filter(text=stuck_text))
            assert locked
            _wait(lambda: slow.hits, 10, 0.05)
            time.sleep(2.0)  # the acme preview is fetched and now waits on the row lock
            # The other shard's previews are stored meanwhile.
            fine_text = f"fine {fine.base}/b"
            assert api("chat.postMessage", globex_token, channel=globex_general, text=fine_text)["ok"]
            _wait(lambda: _previews(api, globex_token, globex_general).get(fine_text), 8, 0.1)
            assert not _previews(api, acme_token, acme_general)[stuck_text]
            time.sleep(3.0)  # past the store's lock timeout: its job was rescheduled
        # The lock gone, the rescheduled job stores the acme preview.
        _wait(lambda: _previews(api, acme_token, acme_general).get(stuck_text), 20, 0.1)


def test_a_stalled_control_database_reschedules_the_preview(world: World, api) -> None:
    token, general = world.acme["alice"].token, world.acme.channels["general"]
    env = {**WORKER_ENV, "CHAT_UNFURL_DB_WAIT_SECS": "0.5"}
    with running_upstream() as upstream:
        text = f"directory {upstream.base}/a"
        assert api("chat.postMessage", token, channel=general, text=text)["ok"]  # needs the directory
        # The job must ask the control database for the team's shard, and find it locked.
        cache.delete(team_entry_cache_key(world.acme.team.id))
        with ExitStack() as worker:
            with transaction.atomic(using="default"), connections["default"].cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Team._meta.db_table} IN ACCESS EXCLUSIVE MODE")
                worker.enter_context(running_worker(QUEUES, 4, env, POOL))  # only now: the post is done
                _wait(lambda: _lookups_waiting(cursor), 10, 0.05)
                # Past its wait for the database thread, the job gave up on it and came back
                # later: a retry waits in the worker for its countdown (or runs, and waits on
                # the lock again, then comes back once more).
                _wait(_unfurl_retries_waiting, 10, 0.1)
                assert not upstream.hits  # no preview is fetched for a team not found yet
            # The lock released, the rescheduled job finds the shard and stores the preview.
            _wait(lambda: _previews(api, token, general).get(text), 8, 0.1)


def _unfurl_retries_waiting() -> bool:
    scheduled = celery_app.control.inspect(timeout=0.5).scheduled() or {}
    return any(
        entry["request"]["name"] == "jobs.unfurl" and entry["request"]["kwargs"].get("attempt", 0) >= 1
        for entries in scheduled.values()
        for entry in entries
    )


def _lookups_waiting(cursor: CursorWrapper) -> bool:
    # The worker's directory lookup is blocked behind the test's lock.
    cursor.execute(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
        [Team._meta.db_table],
    )
    return cursor.fetchone()[0] > 0

"""A shard that cannot store previews (its rows locked by a long transaction) holds up
only its own teams' previews: the preview worker has a few database threads per
database (jobs.db_threads), and a store that waits too long is rescheduled, not lost.

A module of its own: its worker (one database thread per database) must be the only
one consuming the queue.
"""

import time

import pytest
from django.db import transaction

from messaging.models import Message
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

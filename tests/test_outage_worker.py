"""A Celery worker killed mid-task: the task runs again in another process and its effect
(a link preview attached, one message_changed event) happens once.

The task is held mid-fetch by the upstream until the kill, so the kill really lands
while the job runs. Jobs are acknowledged late and rejected when their worker is lost.
"""

import signal
import time

import psutil
import pytest

from chatproject.dbrouter import on_shard
from jobs.unfurl import unfurl
from messaging.models import Event, Message
from ops.job_stats import RUNNING_KEY, job_stats
from teams import ids
from tests.conftest import World
from tests.outages import wait_until
from tests.servers import running_worker
from tests.upstream import running_upstream

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

WORKER_ENV = {
    "CHAT_UNFURL_ALLOWED_NETWORKS": "127.0.0.1/32",
    "CHAT_UNFURL_TIMEOUT_SECS": "20",
    # A worker that vanishes entirely leaves its job unacknowledged in Redis; the next
    # worker to start hands it out again once this has passed.
    "CHAT_JOB_VISIBILITY_SECS": "3",
}


def _post_link(api, world: World, url: str) -> tuple[int, int, str]:
    posted = api(
        "chat.postMessage", world.acme["alice"].token, channel=world.acme.channels["general"], text=url
    )
    assert posted["ok"], posted
    channel_id = ids.decode(posted["channel"], ids.CHANNEL_PREFIXES)
    return channel_id, ids.parse_ts(posted["ts"]), posted["ts"]


def _effects(team_id: int, channel_id: int, ts: int) -> tuple[list[str], int]:
    """The message's preview URLs, and how many message_changed events it has had."""
    with on_shard("shard_0"):
        message = Message.objects.get(team_id=team_id, channel_id=channel_id, ts=ts)
        changes = Event.objects.filter(
            team_id=team_id,
            type="message",
            payload__subtype="message_changed",
            payload__message__ts=ids.format_ts(ts),
        ).count()
    return [a.get("from_url") for a in message.attachments or []], changes


def _running_child(worker) -> psutil.Process:
    return wait_until(lambda: next(iter(psutil.Process(worker.pid).children()), None), 20, "the pool process")


def _assert_done_once(world: World, channel_id: int, ts: int, url: str) -> None:
    team_id = world.acme.team.id
    wait_until(lambda: _effects(team_id, channel_id, ts)[0], 30, "the preview")
    time.sleep(1)  # anything that would run it a second time has had its chance
    assert _effects(team_id, channel_id, ts) == ([url], 1)
    # A redelivery after the attach but before the acknowledgement runs it again: harmless.
    assert unfurl("shard_0", team_id, channel_id, ts, url) == "message changed"
    assert _effects(team_id, channel_id, ts) == ([url], 1)


def test_pool_process_killed_mid_task_runs_again_once(world: World, api) -> None:
    with (
        running_upstream() as upstream,
        running_worker("unfurl", concurrency=1, extra_env=WORKER_ENV) as first,
    ):
        upstream.mode = "hold"
        url = f"{upstream.base}/killed-child"
        channel_id, ts, _ = _post_link(api, world, url)
        wait_until(lambda: upstream.hits, 20, "the job to start fetching")
        assert job_stats().running.get("jobs.unfurl") == 1
        child = _running_child(first)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        upstream.mode = "ok"
        upstream.release.set()
        with running_worker("unfurl", concurrency=1, extra_env=WORKER_ENV):
            _assert_done_once(world, channel_id, ts, url)
        assert len([path for _, path in upstream.hits if path == "/killed-child"]) >= 2


def test_whole_worker_killed_mid_task_runs_again_on_another(world: World, api) -> None:
    with running_upstream() as upstream:
        upstream.mode = "hold"
        url = f"{upstream.base}/killed-worker"
        with running_worker("unfurl", concurrency=1, extra_env=WORKER_ENV) as doomed:
            channel_id, ts, _ = _post_link(api, world, url)
            wait_until(lambda: upstream.hits, 20, "the job to start fetching")
            family = [psutil.Process(doomed.pid), *psutil.Process(doomed.pid).children(recursive=True)]
            for process in family:
                process.send_signal(signal.SIGKILL)  # no warm shutdown, no requeue: just gone
            doomed.wait(10)
        upstream.mode = "ok"
        upstream.release.set()
        time.sleep(3.5)  # past the visibility timeout
        with running_worker("unfurl", concurrency=1, extra_env=WORKER_ENV):
            _assert_done_once(world, channel_id, ts, url)
        assert len([path for _, path in upstream.hits if path == "/killed-worker"]) == 2


@pytest.fixture(autouse=True)
def _no_stale_running_entries():
    from django_redis import get_redis_connection

    get_redis_connection("default").delete(RUNNING_KEY)
    yield

"""Job outcomes, counted in Redis from Celery's task signals so every worker adds to
one tally: the admin dashboard and /metrics both read it.

Running tasks are a sorted set of task ids scored by start time; a worker killed
mid-task never removes its entry, so readers ignore entries older than RUNNING_STALE_SECS,
and each start drops them (and sets the set to expire then), readers or not.
Nothing here may fail a task: a Redis outage only loses counts.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from celery.signals import task_failure, task_postrun, task_prerun, task_retry, task_success
from django.conf import settings
from django_redis import get_redis_connection
from redis import RedisError

logger = logging.getLogger(__name__)

# Kept for good: the totals since Redis started, one field per task name and outcome.
OUTCOMES_KEY = "jobs:outcomes"  # hash "<task>|<outcome>" -> count
RUNNING_KEY = "jobs:running"  # zset "<task id>|<task>" -> started at
FAILURES_KEY = "jobs:failures"  # list of recent failures, newest first (trimmed: kept for good)
RECENT_FAILURES = 50
# A task still unacknowledged this long is handed to another worker (the broker's visibility
# timeout; an import or export may run for hours): an entry older than that is a dead worker's.
RUNNING_STALE_SECS = settings.JOB_VISIBILITY_SECS
OUTCOMES = ("succeeded", "failed", "retried")
# Celery's own queues; kombu's Redis transport keeps each as a list of that name (plus
# one per priority step when priorities are used).
PRIORITY_SEPARATOR = "\x06\x16"
UNACKED_KEY = "unacked"  # kombu: delivered and not yet acknowledged (running or waiting for an ETA)


def _count(task_name: str, outcome: str) -> None:
    try:
        get_redis_connection("default").hincrby(OUTCOMES_KEY, f"{task_name}|{outcome}", 1)
    except RedisError as exc:
        logger.info("job outcome of %s not counted: %s", task_name, exc)


@task_prerun.connect
def _started(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    now = time.time()
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        pipe.zadd(RUNNING_KEY, {f"{task_id}|{task.name}": now})
        # Entries of killed workers are dropped here, not only when the dashboard or
        # /metrics reads: with no reader they would pile up for good. Past the stale age
        # every entry is one, so the set may expire then.
        pipe.zremrangebyscore(RUNNING_KEY, "-inf", now - RUNNING_STALE_SECS)
        pipe.expire(RUNNING_KEY, RUNNING_STALE_SECS)
        pipe.execute()
    except RedisError:
        pass


@task_postrun.connect
def _finished(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    try:
        get_redis_connection("default").zrem(RUNNING_KEY, f"{task_id}|{task.name}")
    except RedisError:
        pass


@task_success.connect
def _succeeded(sender: Any = None, **kwargs: Any) -> None:
    _count(sender.name, "succeeded")


@task_retry.connect
def _retried(sender: Any = None, **kwargs: Any) -> None:
    _count(sender.name, "retried")


@task_failure.connect
def _failed(sender: Any = None, task_id: str | None = None, exception: Any = None, **kwargs: Any) -> None:
    _count(sender.name, "failed")
    entry = {"task": sender.name, "id": task_id, "error": repr(exception)[:500], "at": time.time()}
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        pipe.lpush(FAILURES_KEY, json.dumps(entry))
        pipe.ltrim(FAILURES_KEY, 0, RECENT_FAILURES - 1)
        pipe.execute()
    except RedisError:
        pass


@dataclass(frozen=True)
class QueueStats:
    name: str
    waiting: int


@dataclass(frozen=True)
class JobStats:
    queues: list[QueueStats]
    unacked: int  # running, or held by a worker until a retry's countdown ends
    running: dict[str, int]  # task name -> running now
    outcomes: dict[str, dict[str, int]]  # task name -> outcome -> count
    recent_failures: list[dict[str, Any]]


def queue_names() -> list[str]:
    from chatproject.celery import app

    return [queue.name for queue in app.conf.task_queues]


def job_stats() -> JobStats:
    """Everything the dashboard and /metrics show about jobs (raises RedisError)."""
    connection = get_redis_connection("default")
    names = queue_names()
    pipe = connection.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        for step in (3, 6, 9):
            pipe.llen(f"{name}{PRIORITY_SEPARATOR}{step}")
    pipe.hlen(UNACKED_KEY)
    pipe.zremrangebyscore(RUNNING_KEY, "-inf", time.time() - RUNNING_STALE_SECS)
    pipe.zrange(RUNNING_KEY, 0, -1)
    pipe.hgetall(OUTCOMES_KEY)
    pipe.lrange(FAILURES_KEY, 0, RECENT_FAILURES - 1)
    results = pipe.execute()
    queues = [QueueStats(name, sum(results[i * 4 : i * 4 + 4])) for i, name in enumerate(names)]
    unacked, _, running_ids, outcomes_raw, failures = results[len(names) * 4 :]
    running: dict[str, int] = {}
    for member in running_ids:
        task_name = member.decode().split("|", 1)[1]
        running[task_name] = running.get(task_name, 0) + 1
    outcomes: dict[str, dict[str, int]] = {}
    for field, value in outcomes_raw.items():
        task_name, outcome = field.decode().split("|", 1)
        outcomes.setdefault(task_name, {o: 0 for o in OUTCOMES})[outcome] = int(value)
    return JobStats(queues, int(unacked), running, outcomes, [json.loads(f) for f in failures])

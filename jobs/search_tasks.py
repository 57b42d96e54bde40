"""Search indexing on the `search` queue: after a write commits, the messages it touched
get their search vectors recomputed on their team's shard, behind that shard's search
breaker. The work itself is `messaging.search.index.index_messages`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django_redis import get_redis_connection

from jobs.breakers import BreakerOpen, Outcome, SharedCircuitBreaker, count_deferral
from messaging.search.index import index_messages
from teams.directory import team_entry
from teams.errors import ApiError
from teams.models import Team

logger = logging.getLogger(__name__)

# Past this age a message waits for `manage.py reindex` instead: a shard down for a day
# has an operator on it, and the queue should not fill with jobs for it meanwhile.
MAX_AGE_SECS = 24 * 3600


def classify(exc: BaseException) -> Outcome:
    """Only the shard itself failing counts against its search breaker."""
    return Outcome.FAILURE if isinstance(exc, (OperationalError, InterfaceError)) else Outcome.IGNORED


def search_breaker(shard: str) -> SharedCircuitBreaker:
    """One per shard: its database is what fails for every team on it at once."""
    return SharedCircuitBreaker(f"search:{shard}", classify=classify)


def index_behind_breaker(shard: str, team_id: int, message_ids: Sequence[int]) -> int:
    """The one call through which jobs write a shard's search index."""
    with search_breaker(shard).calling():
        return index_messages(shard, team_id, message_ids)


def _backoff(attempt: int) -> float:
    # The same schedule as every other job (jobs.tasks.backoff), without importing the
    # link-preview machinery into every process that posts.
    ceiling = min(settings.JOB_MAX_BACKOFF_SECS, settings.JOB_BASE_BACKOFF_SECS * 2**attempt)
    return random.uniform(0.5, 1.0) * ceiling


@shared_task(
    bind=True,
    name="jobs.index_messages",  # routed to the "search" queue (chatproject.celery)
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    ignore_result=True,
)
def index_messages_task(
    self: Task, team_id: int, message_ids: list[int], first_queued_at: float | None = None, attempt: int = 0
) -> int:
    """(Re)index these messages of a team, or with none given, the team's pending ones.
    Idempotent: it reads the rows as they are now."""
    first_queued_at = first_queued_at or time.time()
    if not message_ids:
        message_ids = _take_pending(team_id)
        if not message_ids:
            return 0
        self.request.args = [team_id, message_ids]  # a retry must carry what was taken
    try:
        # Looked up now, not when queued: the team may have moved shards since.
        team = team_entry(team_id)
    except ApiError:
        logger.info("not indexing %d messages of team %d: no such team", len(message_ids), team_id)
        return 0
    if team.status == Team.Status.MOVING:
        # Writing search vectors on the source during a move would change rows the move
        # has copied and verified (teams.moves): wait for the flip, then index the new home.
        return _reschedule(self, _backoff(attempt), first_queued_at, attempt, "team is moving")
    shard = team.shard
    try:
        return index_behind_breaker(shard, team_id, message_ids)
    except BreakerOpen as exc:
        count_deferral(exc.key)
        delay = max(exc.retry_at - time.time(), 0.0) + _backoff(attempt)
        return _reschedule(self, delay, first_queued_at, attempt, f"breaker {exc.key} open")
    except (OperationalError, InterfaceError) as exc:
        return _reschedule(self, _backoff(attempt), first_queued_at, attempt, str(exc).strip())


def _pending_key(team_id: int) -> str:
    return f"search:pending:{team_id}"


def _drain_flag(team_id: int) -> str:
    return f"search:drain-scheduled:{team_id}"


def _take_pending(team_id: int) -> list[int]:
    """Claim up to a batch of the team's pending ids; schedule another drain if more wait."""
    connection = get_redis_connection("default")
    connection.delete(_drain_flag(team_id))  # posts from now on schedule the next drain
    taken = [int(i) for i in connection.spop(_pending_key(team_id), DRAIN_BATCH) or []]
    if len(taken) == DRAIN_BATCH and connection.set(_drain_flag(team_id), 1, nx=True, ex=DRAIN_FLAG_TTL_SECS):
        index_messages_task.apply_async((team_id, []), retry=False)
    return taken


def _reschedule(task: Task, delay: float, first_queued_at: float, attempt: int, why: str) -> int:
    team_id, message_ids = task.request.args[:2]
    if time.time() + delay - first_queued_at > MAX_AGE_SECS:
        logger.warning(
            "gave up indexing %d messages of team %d after %d tries (%s); `manage.py reindex` repairs it",
            len(message_ids),
            team_id,
            attempt + 1,
            why,
        )
        return 0
    kwargs = {"first_queued_at": first_queued_at, "attempt": attempt + 1}
    raise task.retry(args=[team_id, message_ids], kwargs=kwargs, countdown=delay)


# Reaching a broker that is down takes Celery up to its connect timeout (4 s by default),
# and the post whose commit queues the job waits that long: after one failure this process
# stops trying for a while, so an outage costs one slow post per process per interval.
BROKER_DOWN_RETRY_SECS = 30.0
_broker_down_until = 0.0


# Writes within this window share one indexing job (a job per post cost more CPU than
# the post itself); a message is searchable about this long after it was posted.
DRAIN_DELAY_SECS = 0.5
DRAIN_BATCH = 500
DRAIN_FLAG_TTL_SECS = 30  # a drain job lost with its worker is rescheduled by a later write


def enqueue_index(team_id: int, message_ids: Sequence[int]) -> None:
    """Mark these messages for indexing; the first mark in a window schedules a drain job.
    Never raises: called after a write commits, a Redis outage must not fail the write
    (the messages stay unsearchable until `manage.py reindex` runs for the team)."""
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        logger.info(
            "search indexing of %d messages of team %d skipped: broker down", len(message_ids), team_id
        )
        return
    try:
        connection = get_redis_connection("default")
        pipe = connection.pipeline(transaction=False)
        pipe.sadd(_pending_key(team_id), *message_ids)
        pipe.expire(_pending_key(team_id), int(MAX_AGE_SECS))
        pipe.set(_drain_flag(team_id), 1, nx=True, ex=DRAIN_FLAG_TTL_SECS)
        first_in_window = pipe.execute()[2]
        if first_in_window:
            try:
                # No publish retries: a post is waiting on this call.
                index_messages_task.apply_async((team_id, []), countdown=DRAIN_DELAY_SECS, retry=False)
            except Exception:
                connection.delete(_drain_flag(team_id))  # let the next write schedule it
                raise
    except Exception as exc:
        _broker_down_until = time.monotonic() + BROKER_DOWN_RETRY_SECS
        logger.warning(
            "search indexing of %d messages of team %d not queued: %s", len(message_ids), team_id, exc
        )

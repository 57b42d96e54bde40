"""Search indexing on the `search` queue: after a write commits, the messages it touched
get their search vectors recomputed on their team's shard, behind that shard's search
breaker. The work itself is `messaging.search.index.index_messages`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from jobs.backoff import backoff
from jobs.breakers import BreakerOpen, Outcome, SharedCircuitBreaker, count_deferral
from jobs.pending import PendingWork
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
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return Outcome.IGNORED
    # psycopg files these under OperationalError, but they are one row at fault, not the
    # shard: "program limit exceeded" (SQLSTATE class 54: a vector, an array or a row too
    # big; counted, one member's oversized post could open the breaker for every team),
    # and "lock not available" (55P03: a row some transaction holds past our lock_timeout).
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or ""
    return Outcome.IGNORED if sqlstate.startswith("54") or sqlstate == "55P03" else Outcome.FAILURE


def search_breaker(shard: str) -> SharedCircuitBreaker:
    """One per shard: its database is what fails for every team on it at once."""
    return SharedCircuitBreaker(f"search:{shard}", classify=classify)


def index_behind_breaker(shard: str, team_id: int, message_ids: Sequence[int]) -> int:
    """The one call through which jobs write a shard's search index."""
    with search_breaker(shard).calling():
        return index_messages(shard, team_id, message_ids)


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
    if message_ids:
        return _index(self, team_id, message_ids, first_queued_at, attempt)
    with PENDING.claimed(str(team_id)) as taken:
        if not taken:
            return 0
        message_ids = [int(i) for i in taken]
        self.request.args = [team_id, message_ids]  # a retry must carry what was taken
        return _index(self, team_id, message_ids, first_queued_at, attempt)


def _index(task: Task, team_id: int, message_ids: list[int], first_queued_at: float, attempt: int) -> int:
    try:
        # Looked up now, not when queued: the team may have moved shards since.
        team = team_entry(team_id)
        if team.status == Team.Status.MOVING:
            # Writing search vectors on the source during a move would change rows the move
            # has copied and verified (teams.moves): wait for the flip, then index the new home.
            return _reschedule(task, backoff(attempt), first_queued_at, attempt, "team is moving")
        return index_behind_breaker(team.shard, team_id, message_ids)
    except ApiError as exc:
        if exc.code != "team_not_found":
            raise
        logger.info("not indexing %d messages of team %d: no such team", len(message_ids), team_id)
        return 0
    except BreakerOpen as exc:
        count_deferral(exc.key)
        delay = max(exc.retry_at - time.time(), 0.0) + backoff(attempt)
        return _reschedule(task, delay, first_queued_at, attempt, f"breaker {exc.key} open")
    except (OperationalError, InterfaceError) as exc:  # the shard, or the control database
        return _reschedule(task, backoff(attempt), first_queued_at, attempt, str(exc).strip())


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


# Writes within this window share one indexing job (a job per post cost more CPU than
# the post itself); a message is searchable about this long after it was posted.
DRAIN_DELAY_SECS = 0.5
DRAIN_BATCH = 500


def _schedule_drain(group: str, countdown: float) -> None:
    # No publish retries: a post may be waiting on this call.
    index_messages_task.apply_async((int(group), []), countdown=countdown, retry=False)


PENDING = PendingWork(
    "search", _schedule_drain, delay_secs=DRAIN_DELAY_SECS, batch=DRAIN_BATCH, max_age_secs=MAX_AGE_SECS
)


def enqueue_index(team_id: int, message_ids: Sequence[int]) -> None:
    """Mark these messages for indexing; the first mark in a window schedules a drain job.
    Never raises: a Redis outage must not fail the write (the messages stay unsearchable
    until `manage.py reindex` runs for the team)."""
    what = f"search indexing of {len(message_ids)} messages of team {team_id}"
    PENDING.add(str(team_id), message_ids, what)

"""Celery entry points. Each task is a thin shell around a plain function; this module
adds what only a queue can do: rescheduling when an upstream's breaker says no."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from jobs import search_tasks
from jobs.backoff import backoff
from jobs.breakers import BreakerOpen, count_deferral
from jobs.bulkhead import BulkheadFull
from jobs.db_threads import on_db_thread
from jobs.fetch import RateLimited, UpstreamFailure
from jobs.pending import PendingWork
from jobs.suspect import SuspectPoolFull
from jobs.unfurl import unfurl
from messaging.events import prune_event_log
from teams.directory import team_entry
from teams.errors import ApiError

logger = logging.getLogger(__name__)


@shared_task(name="jobs.prune_event_logs", acks_late=True)
def prune_event_logs() -> dict[str, int]:
    """Drop events past the retention window on every shard (idempotent)."""
    pruned = {
        alias: prune_event_log(alias, settings.EVENT_LOG_RETENTION_SECS) for alias in settings.SHARD_ALIASES
    }
    logger.info("pruned event logs: %s", pruned)
    return pruned


@shared_task(
    bind=True,
    name="jobs.unfurl",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    ignore_result=True,
)
def unfurl_link(
    self: Task,
    shard: str,
    team_id: int,
    channel_id: int,
    ts: int,
    url: str,
    first_tried_at: float | None = None,
    attempt: int = 0,
) -> str:
    """Preview one link of one message. Safe to run twice: attaching is idempotent.
    `shard` (where the message was when this was queued) is only kept so that queued
    calls still match; the team's shard is looked up when the job runs."""
    first_tried_at = first_tried_at or time.time()
    try:
        # The team's shard now, not when the post queued this: it may have moved since.
        shard = on_db_thread("default", team_entry, team_id).shard
        return unfurl(shard, team_id, channel_id, ts, url)
    except ApiError as exc:
        if exc.code == "team_not_found":
            return "no such team"
        if exc.code != "team_is_moving":
            raise
        return _reschedule(self, backoff(attempt), first_tried_at, attempt, "team is moving")
    except BreakerOpen as exc:
        count_deferral(exc.key)
        delay = max(exc.retry_at - time.time(), 0.0) + backoff(attempt)
        return _reschedule(self, delay, first_tried_at, attempt, f"breaker {exc.key} open")
    except SuspectPoolFull:
        return _reschedule(self, backoff(attempt), first_tried_at, attempt, "no suspect thread free")
    except BulkheadFull as exc:
        return _reschedule(self, backoff(attempt), first_tried_at, attempt, f"{exc.key} busy")
    except RateLimited as exc:
        # Its Retry-After, and longer each time: a host that keeps saying "1 s" is not asked
        # every few seconds for the whole hour a preview may take.
        return _reschedule(self, exc.retry_after + backoff(attempt), first_tried_at, attempt, "rate limited")
    except UpstreamFailure as exc:
        return _reschedule(self, backoff(attempt), first_tried_at, attempt, str(exc))
    except (OperationalError, InterfaceError) as exc:  # the control DB or the shard is slow or down: later
        return _reschedule(self, backoff(attempt), first_tried_at, attempt, str(exc).strip())


def _reschedule(task: Task, delay: float, first_tried_at: float, attempt: int, why: str) -> Any:
    if time.time() + delay - first_tried_at > settings.UNFURL_MAX_AGE_SECS:
        logger.info("giving up on preview of %s after %d tries: %s", task.request.args[4], attempt + 1, why)
        return "gave up"
    kwargs = {**task.request.kwargs, "first_tried_at": first_tried_at, "attempt": attempt + 1}
    raise task.retry(args=task.request.args, kwargs=kwargs, countdown=delay)


# Posts within this window share one drain job, which queues one unfurl per link: a post
# with links then costs one Redis round trip, as a plain post's search indexing does,
# instead of a broker publish per link. A preview appears about this much later.
UNFURL_DRAIN_DELAY_SECS = 0.2
UNFURL_DRAIN_BATCH = 500
UNFURL_DRAIN_RETRIES = 5  # a broker down longer than these backoffs loses the previews
_LINKS = "links"  # one group for every team: the drain only fans out, whoever posted


def _schedule_unfurl_drain(group: str, countdown: float) -> None:
    # No publish retries: a post may be waiting on this call.
    drain_unfurls.apply_async((), countdown=countdown, retry=False)


PENDING_UNFURLS = PendingWork(
    "unfurl",
    _schedule_unfurl_drain,
    delay_secs=UNFURL_DRAIN_DELAY_SECS,
    batch=UNFURL_DRAIN_BATCH,
    max_age_secs=settings.UNFURL_MAX_AGE_SECS,
)


def enqueue_unfurls(shard: str, team_id: int, channel_id: int, ts: int, urls: Sequence[str]) -> None:
    """Ask for a preview of each link of a just-committed message (one unfurl job per link,
    queued by the next drain). Never raises: a Redis outage costs the previews, not the post."""
    entries = [json.dumps([shard, team_id, channel_id, ts, url]) for url in urls]
    PENDING_UNFURLS.add(_LINKS, entries, f"previews of {len(urls)} links of message {channel_id}/{ts}")


@shared_task(
    bind=True,
    name="jobs.drain_unfurls",  # routed to the "unfurl" queue (chatproject.celery)
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    ignore_result=True,
)
def drain_unfurls(self: Task, entries: list[list[Any]] | None = None, attempt: int = 0) -> int:
    """Queue one `unfurl_link` job per pending link, through one broker connection; returns
    how many. A link whose job cannot be queued is retried with this job."""
    if entries is None:
        with PENDING_UNFURLS.claimed(_LINKS) as taken:
            return _queue_unfurls(self, [json.loads(raw) for raw in taken], attempt)
    return _queue_unfurls(self, entries, attempt)


def _queue_unfurls(task: Task, entries: list[list[Any]], attempt: int) -> int:
    queued = 0
    try:
        with task.app.producer_or_acquire() as producer:
            for entry in entries:
                unfurl_link.apply_async(tuple(entry), producer=producer)
                queued += 1
    except Exception as exc:
        rest = entries[queued:]
        if attempt >= UNFURL_DRAIN_RETRIES:
            logger.warning("%d previews not queued, giving up: %s", len(rest), exc)
            return queued
        raise task.retry(args=[rest], kwargs={"attempt": attempt + 1}, countdown=backoff(attempt)) from exc
    return queued


@shared_task(name="jobs.reclaim_pending", ignore_result=True)
def reclaim_pending() -> list[str]:
    """Drain again what drains that died had taken (jobs.pending); beat runs this."""
    return [group for work in (PENDING_UNFURLS, search_tasks.PENDING) for group in work.reclaim()]

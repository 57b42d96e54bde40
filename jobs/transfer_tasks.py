"""Celery entry points of imports and exports (the `io` queue). The work is in
jobs.slack_export; this module adds what only a queue can do: one run of a job at a
time, pausing and rescheduling while the shard's breaker is open or its database is
down, and picking up jobs whose worker died."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from jobs.backoff import backoff
from jobs.breakers import BreakerOpen, count_deferral
from jobs.models import TransferJob
from jobs.slack_export import retention
from jobs.slack_export.exporter import run_export
from jobs.slack_export.importer import ImportFailed, abandon_import, run_import
from jobs.slack_export.progress import S, set_status
from jobs.slack_export.storage import StorageFailure

logger = logging.getLogger(__name__)


def _lock_key(job_id: int) -> str:
    return f"transfer:running:{job_id}"


def abandon_transfer(job_id: int, why: str) -> TransferJob | None:
    """Abandon an unfinished import (admin): undo it and fail it, under the job's lock so
    no worker runs it meanwhile. None when a worker is running it right now."""
    redis = get_redis_connection("default")
    token = f"abandon:{uuid.uuid4()}"
    if not redis.set(_lock_key(job_id), token, nx=True, ex=settings.TRANSFER_LOCK_SECS):
        return None

    def keep_lock(_job: TransferJob) -> None:
        redis.set(_lock_key(job_id), token, ex=settings.TRANSFER_LOCK_SECS)

    try:
        return abandon_import(job_id, why, keep_lock)
    finally:
        if redis.get(_lock_key(job_id)) in (token, token.encode()):
            redis.delete(_lock_key(job_id))


def _run_locked(task: Task, job_id: int, attempt: int, work: Callable[[int, Callable], object]) -> str:
    """Run a job unless another worker is running it; a dead worker's lock expires."""
    if not TransferJob.objects.filter(id=job_id).exists():
        return "no such job"  # deleted since it was queued
    redis = get_redis_connection("default")
    token = f"{task.request.hostname}:{task.request.id}"
    if not redis.set(_lock_key(job_id), token, nx=True, ex=settings.TRANSFER_LOCK_SECS):
        return "already running"

    def keep_lock(_job: TransferJob) -> None:
        try:
            redis.set(_lock_key(job_id), token, ex=settings.TRANSFER_LOCK_SECS)
        except RedisError as exc:  # the job goes on; at worst a second run waits on the lock
            logger.warning("transfer job %s could not refresh its lock: %s", job_id, exc)

    try:
        work(job_id, keep_lock)
        return "done"
    except ImportFailed as exc:
        return f"failed: {exc}"
    except BreakerOpen as exc:
        count_deferral(exc.key)
        delay = max(exc.retry_at - time.time(), 0.0) + backoff(attempt)
        return _pause(task, job_id, attempt, delay, f"breaker {exc.key} open")
    except (OperationalError, InterfaceError, RedisError, StorageFailure) as exc:
        return _pause(task, job_id, attempt, backoff(attempt), str(exc).strip())
    finally:
        try:
            if redis.get(_lock_key(job_id)) in (token, token.encode()):
                redis.delete(_lock_key(job_id))
        except RedisError as exc:  # the lock expires on its own; the retry raised above stands
            logger.warning("transfer job %s could not let go of its lock: %s", job_id, exc)


def _pause(task: Task, job_id: int, attempt: int, delay: float, why: str) -> str:
    logger.warning("transfer job %s paused for %.0f s: %s", job_id, delay, why)
    job = TransferJob.objects.get(id=job_id)
    set_status(job, S.PAUSED)
    raise task.retry(args=[job_id], kwargs={"attempt": attempt + 1}, countdown=delay)


_TASK_OPTIONS = {"bind": True, "acks_late": True, "reject_on_worker_lost": True, "max_retries": None}


@shared_task(name="jobs.import_slack", ignore_result=True, **_TASK_OPTIONS)
def import_slack(self: Task, job_id: int, attempt: int = 0) -> str:
    """Run or resume an import job (idempotent: a finished job is left alone)."""
    return _run_locked(self, job_id, attempt, lambda j, progress: run_import(j, progress))


@shared_task(name="jobs.export_team", ignore_result=True, **_TASK_OPTIONS)
def export_team(self: Task, job_id: int, attempt: int = 0) -> str:
    """Run or resume an export job."""
    return _run_locked(self, job_id, attempt, lambda j, progress: run_export(j, progress))


def enqueue(job: TransferJob) -> None:
    task = import_slack if job.kind == TransferJob.Kind.IMPORT else export_team
    task.apply_async((job.id,))


@shared_task(name="jobs.resume_transfers", ignore_result=True)
def resume_transfers(stalled_secs: float | None = None) -> int:
    """Queue again every unfinished job nobody has touched for a while (its worker died
    and the broker has not redelivered it yet); the lock keeps a live run single."""
    stalled_secs = stalled_secs if stalled_secs is not None else settings.TRANSFER_STALLED_SECS
    cutoff = timezone.now() - timedelta(seconds=stalled_secs)
    stalled = TransferJob.objects.filter(status__in=[S.QUEUED, S.RUNNING, S.PAUSED], updated__lt=cutoff)
    count = 0
    for job in stalled:
        enqueue(job)
        count += 1
    return count


@shared_task(name="jobs.prune_exports", ignore_result=True)
def prune_exports(retention_secs: float | None = None) -> int:
    """Delete finished exports past their retention (jobs.slack_export.retention)."""
    return retention.prune_exports(retention_secs)

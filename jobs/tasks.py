"""Celery entry points. Each task is a thin shell around a plain function."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from messaging.events import prune_event_log

logger = logging.getLogger(__name__)


@shared_task(name="jobs.prune_event_logs", acks_late=True)
def prune_event_logs() -> dict[str, int]:
    """Drop events past the retention window on every shard (idempotent)."""
    pruned = {
        alias: prune_event_log(alias, settings.EVENT_LOG_RETENTION_SECS) for alias in settings.SHARD_ALIASES
    }
    logger.info("pruned event logs: %s", pruned)
    return pruned

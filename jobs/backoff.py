"""The retry delay every job uses, in a module of its own so that posting (which queues
search indexing) does not import the link-preview machinery to get it."""

from __future__ import annotations

import random

from django.conf import settings


def backoff(attempt: int) -> float:
    """Exponential, capped, with jitter so a wave of jobs does not return as a wave."""
    ceiling = min(settings.JOB_MAX_BACKOFF_SECS, settings.JOB_BASE_BACKOFF_SECS * 2**attempt)
    return random.uniform(0.5, 1.0) * ceiling

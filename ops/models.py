"""Admin pages without tables: each unmanaged model only gives a dashboard its place in
Django admin's index, its URL and its permissions (view to look, change to steer)."""

from __future__ import annotations

from django.db import models


class Dashboard(models.Model):
    class Meta:
        abstract = True
        managed = False

    def __str__(self) -> str:
        return str(self._meta.verbose_name_plural)


class CircuitBreaker(Dashboard):
    class Meta:
        managed = False
        verbose_name = "circuit breaker"
        verbose_name_plural = "circuit breakers"


class JobQueue(Dashboard):
    class Meta:
        managed = False
        verbose_name = "job queue"
        verbose_name_plural = "jobs and queues"


class EventLog(Dashboard):
    class Meta:
        managed = False
        verbose_name = "event log"
        verbose_name_plural = "event logs"

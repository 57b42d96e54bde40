"""Periodic jobs run as plain functions (the Celery worker path is exercised elsewhere)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chatproject.dbrouter import on_shard
from jobs.tasks import prune_event_logs
from messaging.models import Event
from tests.conftest import World

pytestmark = pytest.mark.django_db(databases="__all__")


def test_pruning_drops_only_events_past_retention(world: World, api, settings) -> None:
    settings.EVENT_LOG_RETENTION_SECS = 3600
    for n in range(3):
        api(
            "chat.postMessage", world.acme["alice"].token, channel=world.acme.channels["general"], text=str(n)
        )
    with on_shard("shard_0"):
        events = list(Event.objects.filter(team_id=world.acme.team.id).order_by("event_id"))
        old = events[:-2]
        Event.objects.filter(id__in=[e.id for e in old]).update(created=timezone.now() - timedelta(hours=2))
    pruned = prune_event_logs()
    assert pruned["shard_0"] == len(old) and pruned["shard_1"] == 0
    with on_shard("shard_0"):
        left = list(Event.objects.filter(team_id=world.acme.team.id).values_list("event_id", flat=True))
    assert sorted(left) == [e.event_id for e in events[-2:]]
    assert prune_event_logs()["shard_0"] == 0

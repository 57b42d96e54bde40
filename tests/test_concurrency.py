"""Several processes posting into one channel: ts unique and increasing, one event each."""

import pytest
from django.conf import settings

from chatproject.dbrouter import on_shard
from messaging.models import JOIN_LEAVE_SUBTYPES, Event, Message
from teams import ids
from tests.conftest import World
from tests.procs import post_many, run_in_processes

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
PROCESSES = 4
POSTS_EACH = 40


def test_concurrent_posts_from_several_processes(world: World) -> None:
    database_names = {alias: config["NAME"] for alias, config in settings.DATABASES.items()}
    general = world.acme.channels["general"]
    people = ["alice", "bob", "carol", "alice"]
    with on_shard("shard_0"):
        first_event = Event.objects.filter(team_id=world.acme.team.id).order_by("-event_id")[0].event_id
    results = run_in_processes(
        post_many,
        [
            (database_names, world.acme[people[p]].token, general, f"p{p}", POSTS_EACH)
            for p in range(PROCESSES)
        ],
    )
    for stamps in results:
        assert stamps == sorted(stamps) and len(set(stamps)) == POSTS_EACH
    all_stamps = [ts for stamps in results for ts in stamps]
    assert len(set(all_stamps)) == PROCESSES * POSTS_EACH

    with on_shard("shard_0"):
        channel_id = ids.decode(general, "C")
        # Not the world's joins.
        posts = Message.objects.filter(channel_id=channel_id).exclude(subtype__in=JOIN_LEAVE_SUBTYPES)
        assert posts.count() == PROCESSES * POSTS_EACH
        events = list(
            Event.objects.filter(team_id=world.acme.team.id, event_id__gt=first_event).order_by("event_id")
        )
    # One event per post, ids with no gap, and the log's order is the channel's ts order.
    assert [e.event_id for e in events] == list(range(first_event + 1, first_event + 1 + len(all_stamps)))
    assert all(e.type == "message" for e in events)
    event_stamps = [ids.parse_ts(e.payload["ts"]) for e in events]
    assert event_stamps == sorted(all_stamps)

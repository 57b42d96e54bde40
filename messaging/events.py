"""The team event log: append inside an action's transaction, publish after commit.

Only actions call `append_event` (as Zulip keeps `send_event` to its actions). The
append bumps the team's EventSequence under its row lock and inserts the event in one
statement, so ids are strictly increasing per team in commit order.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.db import connections, transaction

from chatproject.dbrouter import current_shard
from messaging import publish_backlog
from ops.metrics import EVENTS_PUBLISHED
from teams.directory import forget_team
from teams.errors import team_is_moving

logger = logging.getLogger(__name__)

GROUP_PREFIX = "chat"  # matches CHANNEL_LAYERS' prefix, so pub/sub consumers receive these


# Payload keys the gateway reads to derive Slack's companion events (channel_joined,
# message_replied) and strips before sending: one logged event per write, several frames.
CHANNEL_KEY = "_channel"
PARENT_KEY = "_parent"


# Appended once, when an import fills a team: a client's state from before it is not
# updated by replaying events (history is not replayed into the log), so the log's readers
# tell a cursor from before it to boot again (messaging.realtime.delivery.read_events).
TEAM_IMPORTED = "team_imported"


def team_group(team_id: int) -> str:
    return f"team.{team_id}"


@dataclass(frozen=True)
class AppendedEvent:
    team_id: int
    event_id: int
    type: str
    payload: dict[str, Any]
    channel_id: int | None
    audience: list[int] | None

    def as_layer_message(self) -> dict[str, Any]:
        return {
            "type": "team.event",
            "event_id": self.event_id,
            "event": self.payload,
            "channel_id": self.channel_id,
            "audience": self.audience,
        }


# Events that change what every member's boot shows (the cached, team-wide part).
TEAM_WIDE_TYPES = frozenset(
    {
        "team_join",
        "user_change",
        "bot_added",
        "bot_changed",
        "emoji_changed",
        "team_rename",
        "channel_created",
        "channel_rename",
        "channel_archive",
        "channel_unarchive",
        "channel_deleted",
        # An import into an existing (empty) team: everyone's boot changes at once.
        TEAM_IMPORTED,
    }
)


# Bumps the team's sequence under its row lock: ids strictly increase per team in commit
# order. A CTE, so a statement that writes rows can append its event in the same trip.
NEXT_EVENT_ID_CTE = """
seq AS (
    INSERT INTO messaging_eventsequence AS s (team_id, last_event_id, boot_version)
    SELECT %(team_id)s, 1, 1 {source}
    ON CONFLICT (team_id) DO UPDATE
        SET last_event_id = s.last_event_id + 1, boot_version = s.boot_version + %(bumps_boot)s
        WHERE NOT s.frozen
    RETURNING last_event_id
)"""
EVENT_INSERT = """
INSERT INTO messaging_event (team_id, event_id, type, channel_id, audience, payload, created)
SELECT %(team_id)s, seq.last_event_id, %(type)s, %(channel_id)s, %(audience)s, {payload}, now()
FROM seq {source}"""

_APPEND_SQL = (
    "WITH "
    + NEXT_EVENT_ID_CTE.format(source="")
    + EVENT_INSERT.format(payload="%(payload)s", source="")
    + " RETURNING event_id"
)


def event_parameters(
    team_id: int,
    event_type: str,
    channel_id: int | None,
    audience: list[int] | None,
    *,
    bumps_boot: bool = False,
) -> dict[str, Any]:
    """The parameters NEXT_EVENT_ID_CTE and EVENT_INSERT name (all but the payload).
    `bumps_boot`: the change is in the cached team-wide boot though its event is not one
    of TEAM_WIDE_TYPES (a public channel's topic, announced by a message)."""
    return {
        "team_id": team_id,
        "bumps_boot": int(bumps_boot or event_type in TEAM_WIDE_TYPES),
        "type": event_type,
        "channel_id": channel_id,
        "audience": audience,
    }


def append_event(
    team_id: int,
    event_type: str,
    payload: dict[str, Any],
    *,
    channel_id: int | None = None,
    audience: list[int] | None = None,
    bumps_boot: bool = False,
) -> AppendedEvent:
    """Append one event to the team's log; it is published once the transaction commits.
    The same statement bumps the team's boot_version for TEAM_WIDE_TYPES or `bumps_boot`."""
    alias = current_shard()
    connection = connections[alias]
    if not connection.in_atomic_block:
        raise RuntimeError("append_event must run inside the action's transaction")
    payload = {"type": event_type, **payload}
    parameters = event_parameters(team_id, event_type, channel_id, audience, bumps_boot=bumps_boot)
    with connection.cursor() as cursor:
        cursor.execute(_APPEND_SQL, {**parameters, "payload": json.dumps(payload)})
        row = cursor.fetchone()
    if row is None:
        # The team's log is frozen here: it is moving (or has moved) to another shard. The
        # caller may hold a stale directory entry; drop it so its retry finds the new shard.
        forget_team(team_id)
        raise team_is_moving()
    (event_id,) = row
    return appended(alias, AppendedEvent(team_id, event_id, event_type, payload, channel_id, audience))


def appended(alias: str, event: AppendedEvent) -> AppendedEvent:
    """Publish an event a statement on `alias` just appended, once its transaction commits."""
    transaction.on_commit(lambda: publish(event), using=alias)
    return event


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


@lru_cache(maxsize=1)
def _serializer() -> Any:
    from channels.layers import get_channel_layer

    return get_channel_layer()


def group_publish_args(group: str, message: dict[str, Any]) -> tuple[str, bytes]:
    """The Redis channel and payload of a group_send in the pub/sub layer's own format."""
    return f"{GROUP_PREFIX}__group__{group}", _serializer().serialize(message)


def publish_to_group(group: str, message: dict[str, Any]) -> None:
    """group_send from synchronous code: one PUBLISH."""
    _redis().publish(*group_publish_args(group, message))


# Called with (team id, the published bytes) on the publishing thread before Redis is: the
# gateway's hubs of this process take their team's events from here without the round
# trip through Redis (messaging.realtime.hubs). Each must be quick and must not raise.
local_listeners: list[Callable[[int, bytes], None]] = []


def publish(event: AppendedEvent) -> None:
    """Publish to the team's channel-layer group; a Redis outage loses nothing (the log has
    it, and the backlog publishes it once Redis is back)."""
    group, message = team_group(event.team_id), event.as_layer_message()
    channel, data = group_publish_args(group, message)
    for listener in local_listeners:
        listener(event.team_id, data)
    try:
        _redis().publish(channel, data)
    except redis.RedisError as exc:
        EVENTS_PUBLISHED.labels("deferred").inc()
        logger.warning("event %s of team %s not published yet: %s", event.event_id, event.team_id, exc)
        publish_backlog.defer(group, message, publish_to_group)
        return
    EVENTS_PUBLISHED.labels("published").inc()


def prune_event_log(alias: str, retention_secs: int, batch_size: int = 10_000) -> int:
    """Delete events older than the retention window on one shard; returns how many.

    Works in batches so a large backlog never holds long locks. Clients whose cursor
    falls before what is left are told to resync (issue: realtime).
    """
    from datetime import timedelta

    from django.utils import timezone

    from messaging.models import Event

    cutoff = timezone.now() - timedelta(seconds=retention_secs)
    total = 0
    pruned_upto: dict[int, int] = {}  # team -> its last event deleted
    while True:
        batch = list(
            Event.objects.using(alias)
            .filter(created__lt=cutoff)
            .values_list("id", "team_id", "event_id")[:batch_size]
        )
        if not batch:
            break
        for _, team_id, event_id in batch:
            pruned_upto[team_id] = max(event_id, pruned_upto.get(team_id, 0))
        total += Event.objects.using(alias).filter(id__in=[row[0] for row in batch]).delete()[0]
    # The gateway's hubs keep recent events in memory (messaging.realtime.hub): they drop
    # these too, so a cursor before what the log retains gets resync_required everywhere.
    for team_id, upto in pruned_upto.items():
        with contextlib.suppress(redis.RedisError):  # a hub that misses it serves its copies
            publish_to_group(team_group(team_id), {"type": "team.pruned", "upto": upto})
    return total

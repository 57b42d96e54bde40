"""Work marked after a write commits and picked up in batches: a write adds its items to a
Redis set in one round trip, and only the first write in a window publishes the job that
drains the set. A broker publish per write cost more than the write itself (search
indexing: more CPU than the post; link previews: a post with 3 links took 4x a plain one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from django_redis import get_redis_connection

logger = logging.getLogger(__name__)

# Reaching a broker that is down takes Celery up to its connect timeout (4 s by default),
# and the post whose commit marks the work waits that long: after one failure this process
# stops trying for a while, so an outage costs one slow post per process per interval.
BROKER_DOWN_RETRY_SECS = 30.0
DRAIN_FLAG_TTL_SECS = 30  # a drain job lost with its worker is rescheduled by a later write


class PendingWork:
    """One kind of batched work, in groups (a team, or everything): `add` after commit,
    `take` in the drain job. `schedule(group, countdown)` publishes that group's drain job."""

    def __init__(
        self,
        name: str,
        schedule: Callable[[str, float], None],
        *,
        delay_secs: float,
        batch: int,
        max_age_secs: int,
    ) -> None:
        self.name = name
        self.schedule = schedule
        self.delay_secs = delay_secs  # writes within this window share one drain job
        self.batch = batch  # items one drain job takes; it schedules the next if more wait
        self.max_age_secs = max_age_secs  # unclaimed items go with the set past this
        self.broker_down_until = 0.0  # per process: see BROKER_DOWN_RETRY_SECS

    def _items_key(self, group: str) -> str:
        return f"{self.name}:pending:{group}"

    def _flag_key(self, group: str) -> str:
        return f"{self.name}:drain-scheduled:{group}"

    def add(self, group: str, items: Sequence[str | int], what: str) -> None:
        """Mark `items` for the group's next drain. Never raises: called after a write
        commits, a Redis or broker outage must not fail the write (`what` names the work
        in the warning that says it was lost)."""
        if not items:
            return
        if time.monotonic() < self.broker_down_until:
            logger.info("%s skipped: broker down", what)
            return
        try:
            connection = get_redis_connection("default")
            pipe = connection.pipeline(transaction=False)
            pipe.sadd(self._items_key(group), *items)
            pipe.expire(self._items_key(group), self.max_age_secs)
            pipe.set(self._flag_key(group), 1, nx=True, ex=DRAIN_FLAG_TTL_SECS)
            first_in_window = pipe.execute()[2]
            if first_in_window:
                try:
                    self.schedule(group, self.delay_secs)
                except Exception:
                    connection.delete(self._flag_key(group))  # let the next write schedule it
                    raise
        except Exception as exc:
            self.broker_down_until = time.monotonic() + BROKER_DOWN_RETRY_SECS
            logger.warning("%s not queued: %s", what, exc)

    def take(self, group: str) -> list[bytes]:
        """Claim up to a batch of the group's items (each once, whichever job asks);
        schedule another drain now if more wait."""
        connection = get_redis_connection("default")
        connection.delete(self._flag_key(group))  # writes from now on schedule the next drain
        taken: list[bytes] = connection.spop(self._items_key(group), self.batch) or []
        if len(taken) == self.batch and connection.set(
            self._flag_key(group), 1, nx=True, ex=DRAIN_FLAG_TTL_SECS
        ):
            self.schedule(group, 0.0)
        return taken

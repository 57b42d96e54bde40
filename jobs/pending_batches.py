"""The writers' and drains' side of pending work (jobs.pending says how it all fits): a
write's `add`, a drain's `claimed`, and the drain it starts when more wait. PendingWork
adds the beat's reclaim and the operators' tools to it."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence

from celery.exceptions import Reject
from django.conf import settings
from django_redis import get_redis_connection
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from jobs.pending_scripts import RELEASE, TAKE

logger = logging.getLogger(__name__)

# Reaching a broker that is down takes Celery up to its connect timeout (4 s by default),
# and the post whose commit marks the work waits that long: after one failure this process
# stops trying for a while, so an outage costs one slow post per process per interval.
BROKER_DOWN_RETRY_SECS = 30.0
DRAIN_FLAG_TTL_SECS = 30  # a drain job lost with its worker is rescheduled by a later write
SET_ASIDE_TTL_SECS = 7 * 24 * 3600  # items that kept killing their drain, for a look

# A drain ending with these could not hand its work on (the broker or Redis is away):
# it keeps its claims, and the lease brings the work back.
_HANDOFF_FAILURES: tuple[type[BaseException], ...] = (Reject, OSError, KombuOperationalError, RedisError)


class DrainRefused(Exception):
    """The broker refused a group's drain job (the cause); reclaim starts it later."""


class PendingBatches:
    """One kind of batched work, in groups (a team, or everything), as its writes and
    drains use it: `add` after commit, `claimed` in the drain job. `schedule(group,
    countdown)` publishes that group's drain job."""

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
        if batch > 5000:  # the release script passes a batch as arguments: Lua caps those
            raise ValueError("a drain batch is at most 5000 items")
        self.batch = batch  # items one drain job takes; it schedules the next if more wait
        # Halving a batch down to one takes this many lapses; two more set an item aside.
        self.max_lapses = math.ceil(math.log2(batch)) + 2 if batch > 1 else 2
        self.max_age_secs = max_age_secs  # unclaimed items go with the set past this
        self.broker_down_until = 0.0  # per process: see BROKER_DOWN_RETRY_SECS
        self.redis_down_until = 0.0  # likewise, for Redis itself

    def _items_key(self, group: str) -> str:
        return f"{self.name}:pending:{group}"

    def _flag_key(self, group: str) -> str:
        return f"{self.name}:drain-scheduled:{group}"

    def _resent_key(self, group: str) -> str:
        return f"{self.name}:drain-resent:{group}"  # what reclaim sent: see jobs.pending

    def _claims_key(self, group: str) -> str:
        return f"{self.name}:claimed:{group}"

    # The two lists of groups are kept for good: one per kind of work, an entry per group
    # (a team) at most, each unlisted by the take that empties it or by reclaim once its
    # items or claims expired. Every per-group key expires.
    def _groups_key(self) -> str:
        return f"{self.name}:claimed-groups"

    def _waiting_key(self) -> str:
        return f"{self.name}:waiting-groups"

    def _lapses_key(self, group: str) -> str:
        return f"{self.name}:lapses:{group}"

    def set_aside_key(self, group: str) -> str:
        return f"{self.name}:set-aside:{group}"

    def add(self, group: str, items: Sequence[str | int], what: str) -> None:
        """Mark `items` for the group's next drain. Never raises: called after a write
        commits, a Redis or broker outage must not fail the write (`what` names the work
        in the warning that says it was lost). With the broker away (a publish failed in
        the last BROKER_DOWN_RETRY_SECS) the items are still kept, and no drain is asked
        for: `reclaim` starts one once the broker is back."""
        if not items:
            return
        now = time.monotonic()
        if now < self.redis_down_until:
            logger.info("%s skipped: Redis down", what)
            return
        try:
            connection = get_redis_connection("default")
            # MULTI: a drain's take, which unlists the group it empties, runs before or after.
            pipe = connection.pipeline(transaction=True)
            pipe.sadd(self._items_key(group), *items)
            pipe.expire(self._items_key(group), self.max_age_secs)
            pipe.sadd(self._waiting_key(), group)
            if now < self.broker_down_until:
                pipe.execute()
                return
            pipe.set(self._flag_key(group), 1, nx=True, ex=DRAIN_FLAG_TTL_SECS)
            first_in_window = pipe.execute()[3]
        except Exception as exc:
            self.redis_down_until = now + BROKER_DOWN_RETRY_SECS
            logger.warning("%s not queued: %s", what, exc)
            return
        if first_in_window:
            try:
                self.schedule(group, self.delay_secs)
            except Exception as exc:
                self.broker_down_until = now + BROKER_DOWN_RETRY_SECS
                logger.warning("%s kept, its drain not started (the beat's reclaim will): %s", what, exc)
                with contextlib.suppress(Exception):
                    connection.delete(self._flag_key(group))  # the next write may schedule it

    @contextlib.contextmanager
    def claimed(self, group: str) -> Iterator[list[bytes]]:
        """Up to a batch of the group's items (each to one drain at a time), let go when the
        block ends: done, handed on in a retry message, or failed by an error (which would
        fail them again). A drain that dies inside, or cannot reach the broker or Redis to
        hand them on, keeps its claims until their lease runs out. Schedules another drain
        now if more wait."""
        lease_end, taken = self._take(group)
        try:
            yield taken
        except _HANDOFF_FAILURES:
            self._not_a_death(group, taken)
            raise
        except BaseException:  # Retry included: the retry message carries them
            self._release(group, lease_end, taken)
            raise
        self._release(group, lease_end, taken)

    def _take(self, group: str) -> tuple[float, list[bytes]]:
        connection = get_redis_connection("default")
        # Writes from now on schedule the next drain; and the queue moves: reclaim's waits
        # start over.
        connection.delete(self._flag_key(group), self._resent_key(group))
        now = time.time()
        keys = [
            self._items_key(group),
            self._claims_key(group),
            self._groups_key(),
            self._lapses_key(group),
            self.set_aside_key(group),
            self._waiting_key(),
        ]
        lease_end = now + settings.PENDING_LEASE_SECS
        ttl = self._claims_ttl()
        args = [now, repr(lease_end), self.batch, group, ttl, self.max_lapses, SET_ASIDE_TTL_SECS]
        taken, set_aside, more = connection.register_script(TAKE)(keys, args)
        if set_aside:
            logger.error(
                "%s of %s set aside, their drains died %d times in a row: %s "
                "(once fixed: manage.py pending --requeue %s %s)",
                self.name,
                group,
                self.max_lapses + 1,
                ", ".join(item.decode(errors="replace") for item in set_aside),
                self.name,
                group,
            )
        if more:
            self._drain_now(group)
        return lease_end, taken

    def _drain_now(self, group: str) -> bool:
        """Start a drain of the group unless one is already due; whether one was started.
        A broker that refuses is logged: the group's next write (or reclaim) schedules it."""
        try:
            return self._start_drain(group)
        except DrainRefused as refused:
            logger.warning("next %s drain of %s not scheduled: %s", self.name, group, refused.__cause__)
            return False

    def _start_drain(self, group: str) -> bool:
        """As `_drain_now`, but DrainRefused when the broker refuses (the group stays
        listed as waiting, for `reclaim`)."""
        connection = get_redis_connection("default")
        if not connection.set(self._flag_key(group), 1, nx=True, ex=DRAIN_FLAG_TTL_SECS):
            return False
        self._send_drain(group)
        return True

    def _send_drain(self, group: str) -> None:
        """Publish the group's drain, its flag taken; DrainRefused (the flag let go, for
        a write or reclaim to take) when the broker refuses."""
        try:
            self.schedule(group, 0.0)
        except Exception as exc:
            get_redis_connection("default").delete(self._flag_key(group))
            raise DrainRefused(group) from exc

    def _claims_ttl(self) -> int:
        return int(max(self.max_age_secs, 2 * settings.PENDING_LEASE_SECS))  # outlives a lease

    def _not_a_death(self, group: str, items: list[bytes]) -> None:
        """The lease of these items will lapse, but not because they killed this drain:
        take back in advance the lapse their next take counts."""
        if not items:
            return
        try:
            pipe = get_redis_connection("default").pipeline(transaction=False)
            for item in items:
                pipe.hincrby(self._lapses_key(group), item, -1)
            pipe.expire(self._lapses_key(group), self._claims_ttl())
            pipe.execute()
        except RedisError:
            pass  # one halving more for them, at worst

    def _release(self, group: str, lease_end: float, items: list[bytes]) -> None:
        if not items:
            return
        try:
            connection = get_redis_connection("default")
            keys = [self._claims_key(group), self._groups_key(), self._lapses_key(group)]
            connection.register_script(RELEASE)(keys, [group, repr(lease_end), *items])
        except RedisError as exc:  # the work is done or handed on; only the claims linger
            logger.warning("%s claims of %s kept (their lease brings them back): %s", self.name, group, exc)

"""Work marked after a write commits and picked up in batches: a write adds its items to a
Redis set in one round trip, and only the first write in a window publishes the job that
drains the set. A broker publish per write cost more than the write itself (search
indexing: more CPU than the post; link previews: a post with 3 links took 4x a plain one).

A drain claims what it takes under a lease (a sorted set scored by the lease's end) and
lets go once the work is done or handed on (a retry message carries it). A worker killed
in between leaves its claims to run out: the next drain of the group takes them again,
and `reclaim` (a beat job) starts that drain for groups no write wakes. Every group with
items waiting is listed, in the same step that adds them, until a drain takes its last
(atomically, so neither step overtakes the other): `reclaim` also starts a drain for each
listed group with none due (the broker refused it, or was skipped while away, or the job
was lost), and a reclaim cut short loses nothing, as the list is only read. Items may then
be worked twice, which every drain here tolerates; none is lost silently.

An item may be what killed its drain (a message that takes the worker's memory, a crash
in a C library): taken again with the rest, it would kill every drain of its group
forever. So items whose lease lapsed come back in half as big a batch each time they
lapse again, without new items beside them: an item that kills its worker ends up alone,
and once it has lapsed more often than halving a batch down to one takes, it is set
aside (logged, and kept SET_ASIDE_TTL_SECS in a Redis set, where `manage.py pending`
lists, requeues or discards them) instead of taken again. A drain that ends because it
could not hand its work on did not die: its items' lapse is not counted (Redis
permitting).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from celery.exceptions import Reject
from django.conf import settings
from django_redis import get_redis_connection
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from jobs.pending_scripts import RELEASE, REQUEUE, TAKE, UNLIST_EMPTY

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


class _DrainRefused(Exception):
    """The broker refused a group's drain job (the cause); reclaim starts it later."""


@dataclass
class GroupState:
    """What one group of a kind of work holds now (see PendingWork.groups)."""

    group: str
    pending: int = 0  # items no drain has taken
    claimed: int = 0  # items a drain holds under its lease
    set_aside: list[str] = field(default_factory=list)  # items that kept killing their drains


class PendingWork:
    """One kind of batched work, in groups (a team, or everything): `add` after commit,
    `claimed` in the drain job. `schedule(group, countdown)` publishes that group's drain job."""

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

    def _claims_key(self, group: str) -> str:
        return f"{self.name}:claimed:{group}"

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
        connection.delete(self._flag_key(group))  # writes from now on schedule the next drain
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
        except _DrainRefused as refused:
            logger.warning("next %s drain of %s not scheduled: %s", self.name, group, refused.__cause__)
            return False

    def _start_drain(self, group: str) -> bool:
        """As `_drain_now`, but _DrainRefused when the broker refuses (the group stays
        listed as waiting, for `reclaim`)."""
        connection = get_redis_connection("default")
        if not connection.set(self._flag_key(group), 1, nx=True, ex=DRAIN_FLAG_TTL_SECS):
            return False
        try:
            self.schedule(group, 0.0)
        except Exception as exc:
            connection.delete(self._flag_key(group))
            raise _DrainRefused(group) from exc
        return True

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

    def reclaim(self) -> list[str]:
        """Start a drain for every group whose items wait with no drain asked for (the
        broker refused it, or was skipped while away), and for every group whose claims
        outlived their lease (the drain that held them died); one drain per group, and
        only where none is due already. Returns those groups. Once the broker refuses, the
        rest wait for the next reclaim: each refusal may take its connect timeout."""
        connection = get_redis_connection("default")
        now = time.time()
        started: list[str] = []
        try:
            self._start_waiting(started)
            started_above = set(started)
            for raw in connection.zrangebyscore(self._groups_key(), "-inf", now):
                group = raw.decode()
                if not connection.exists(self._claims_key(group)):  # expired with the claims
                    connection.zrem(self._groups_key(), group)
                    continue
                # A drain started above, or due already, takes the lapsed claims first.
                if group in started_above or self._start_drain(group):
                    # Not listed again before the drain's own lease would end: one per lease.
                    connection.zadd(self._groups_key(), {group: now + settings.PENDING_LEASE_SECS})
                    if group not in started_above:
                        started.append(group)
        except _DrainRefused as refused:
            logger.warning(
                "%s drains not started, the broker refused (the next reclaim tries again): %s",
                self.name,
                refused.__cause__,
            )
        if started:
            logger.warning("%s drains started for work left waiting: %s", self.name, ", ".join(started))
        return started

    def _list_earlier_waiting_once(self) -> None:
        """Groups whose items were added before groups were listed as they are added (this
        code's upgrade from one that found them by SCAN): listed by one SCAN, then never
        again (the marker is set once they are listed)."""
        connection = get_redis_connection("default")
        marker = f"{self.name}:waiting-groups-complete"
        if connection.exists(marker):
            return
        prefix = self._items_key("")
        groups = [key.decode()[len(prefix) :] for key in connection.scan_iter(match=f"{prefix}*", count=1000)]
        if groups:
            connection.sadd(self._waiting_key(), *groups)
        connection.set(marker, 1)

    def _start_waiting(self, started: list[str]) -> None:
        """Start the drain of every listed group whose items wait with none due, adding
        each started to `started` (filled in place: those started before a refusal are
        still reported); _DrainRefused at the broker's first refusal. The list is only read
        here: a group leaves it when a drain takes its last item."""
        self._list_earlier_waiting_once()
        connection = get_redis_connection("default")
        waiting_key = self._waiting_key()
        unlist_empty = connection.register_script(UNLIST_EMPTY)
        for raw in connection.sscan_iter(waiting_key, count=1000):
            group = raw.decode()
            if unlist_empty([self._items_key(group), waiting_key], [group]) and self._start_drain(group):
                started.append(group)

    # --- operators (manage.py pending) ---------------------------------------------------

    def groups(self) -> list[GroupState]:
        """Every group with items pending, claimed or set aside, by group."""
        connection = get_redis_connection("default")
        found: dict[str, GroupState] = {}

        def keys_of(key_for: Callable[[str], str]) -> Iterator[tuple[GroupState, bytes]]:
            prefix = key_for("")
            for key in connection.scan_iter(match=f"{prefix}*", count=1000):
                group = key.decode()[len(prefix) :]
                yield found.setdefault(group, GroupState(group)), key

        for state, key in keys_of(self._items_key):
            state.pending = connection.scard(key)
        for state, key in keys_of(self._claims_key):
            state.claimed = connection.zcard(key)
        for state, key in keys_of(self.set_aside_key):
            state.set_aside = sorted(item.decode(errors="replace") for item in connection.smembers(key))
        return [found[group] for group in sorted(found)]

    def requeue_set_aside(self, group: str) -> int:
        """Give the group's set-aside items another chance (whatever killed their drains
        is fixed): pending again, no lapse counted, and a drain started. Returns how many."""
        keys = [self._items_key(group), self.set_aside_key(group), self._lapses_key(group)]
        keys.append(self._waiting_key())
        requeued = int(get_redis_connection("default").eval(REQUEUE, 4, *keys, self.max_age_secs, group))
        if requeued:
            logger.warning("%s of %s: %d set-aside items requeued", self.name, group, requeued)
            self._drain_now(group)
        return requeued

    def discard_set_aside(self, group: str) -> int:
        """Drop the group's set-aside items for good. Returns how many."""
        pipe = get_redis_connection("default").pipeline(transaction=True)
        pipe.scard(self.set_aside_key(group))
        pipe.delete(self.set_aside_key(group))
        discarded = int(pipe.execute()[0])
        if discarded:
            logger.warning("%s of %s: %d set-aside items discarded", self.name, group, discarded)
        return discarded

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

A drain counts as due while its flag lasts (DRAIN_FLAG_TTL_SECS), but a queue backlogged
past that still holds it, and one more drain each beat would only deepen the backlog that
delays it. So reclaim sends a group's drain again only once a wait has passed since it
last did, twice as long each time until a drain of the group starts, up to
RESEND_MAX_WAIT_SECS: a lost job still goes out again, a queued one is not repeated every
beat.

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

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django_redis import get_redis_connection

from jobs.pending_batches import DRAIN_FLAG_TTL_SECS, DrainRefused, PendingBatches
from jobs.pending_scripts import REQUEUE, RESEND_DUE, UNLIST_EMPTY

logger = logging.getLogger(__name__)

# Reclaim's waits between sending a group's drain again while none of its drains starts:
# DRAIN_FLAG_TTL_SECS times 2, 4, 8... up to this. A backlog of an hour then gets 9 more
# drains per group, not 60, and a job that was really lost goes out again this long (and
# a beat) after the last at the latest.
RESEND_MAX_WAIT_SECS = 10 * 60
# What reclaim sent is kept in a hash per group (when it last sent the drain, how many
# times since one started) that expires on its own, rather than in one sorted set of every
# group scored by when it may be sent again: reclaim looks at each waiting group in turn
# anyway (its items, its flag), so ranging over a score would save nothing, and a shared
# key would expire only once no group is backed off, keeping groups whose items expired.
# A write does not note its drain there (its one round trip stays as it was): its flag,
# while it lasts, says a drain was just asked for. A drain's start deletes the hash.


@dataclass
class GroupState:
    """What one group of a kind of work holds now (see PendingWork.groups)."""

    group: str
    pending: int = 0  # items no drain has taken
    claimed: int = 0  # items a drain holds under its lease
    set_aside: list[str] = field(default_factory=list)  # items that kept killing their drains


class PendingWork(PendingBatches):
    """One kind of batched work (see PendingBatches for its writes and drains), with the
    beat's `reclaim` and the operators' tools (manage.py pending)."""

    def reclaim(self, now: float | None = None) -> list[str]:
        """Start a drain for every group whose items wait with no drain asked for (the
        broker refused it, or was skipped while away), and for every group whose claims
        outlived their lease (the drain that held them died); one drain per group, only
        where none is due already, and backing off where the last one reclaim sent has not
        started. Returns those groups. Once the broker refuses, the rest wait for the next
        reclaim: each refusal may take its connect timeout. `now` is time.time() but in
        tests."""
        connection = get_redis_connection("default")
        now = time.time() if now is None else now
        started: list[str] = []
        try:
            self._start_waiting(started, now)
            started_above = set(started)
            for raw in connection.zrangebyscore(self._groups_key(), "-inf", now):
                group = raw.decode()
                if not connection.exists(self._claims_key(group)):  # expired with the claims
                    connection.zrem(self._groups_key(), group)
                    continue
                # A drain started above, or due already, takes the lapsed claims first.
                if group in started_above or self._resend_drain(group, now):
                    # Not listed again before the drain's own lease would end: one per lease.
                    connection.zadd(self._groups_key(), {group: now + settings.PENDING_LEASE_SECS})
                    if group not in started_above:
                        started.append(group)
        except DrainRefused as refused:
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
        marker = f"{self.name}:waiting-groups-complete"  # for good: one per kind of work
        if connection.exists(marker):
            return
        prefix = self._items_key("")
        groups = [key.decode()[len(prefix) :] for key in connection.scan_iter(match=f"{prefix}*", count=1000)]
        if groups:
            connection.sadd(self._waiting_key(), *groups)
        connection.set(marker, 1)

    def _start_waiting(self, started: list[str], now: float) -> None:
        """Start the drain of every listed group whose items wait with none due, adding
        each started to `started` (filled in place: those started before a refusal are
        still reported); DrainRefused at the broker's first refusal. The list is only read
        here: a group leaves it when a drain takes its last item."""
        self._list_earlier_waiting_once()
        connection = get_redis_connection("default")
        waiting_key = self._waiting_key()
        unlist_empty = connection.register_script(UNLIST_EMPTY)
        for raw in connection.sscan_iter(waiting_key, count=1000):
            group = raw.decode()
            waiting = unlist_empty([self._items_key(group), waiting_key], [group])
            if waiting and self._resend_drain(group, now):
                started.append(group)

    def _resend_drain(self, group: str, now: float) -> bool:
        """Reclaim's `_start_drain`: sends the group's drain if none is due and the wait
        since reclaim last sent one is over (see RESEND_MAX_WAIT_SECS), and notes it for
        the next wait. A reclaim cut short before the note only sends the next one sooner."""
        connection = get_redis_connection("default")
        keys = [self._flag_key(group), self._resent_key(group)]
        if not connection.register_script(RESEND_DUE)(keys, [now, DRAIN_FLAG_TTL_SECS, RESEND_MAX_WAIT_SECS]):
            return False
        self._send_drain(group)
        pipe = connection.pipeline(transaction=True)
        pipe.hset(keys[1], "at", now)
        pipe.hincrby(keys[1], "times", 1)
        pipe.expire(keys[1], 2 * RESEND_MAX_WAIT_SECS)  # outlives the longest wait, for the beat after it
        pipe.execute()
        return True

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

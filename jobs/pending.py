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

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django_redis import get_redis_connection

from jobs.pending_batches import DrainRefused, PendingBatches
from jobs.pending_scripts import REQUEUE, UNLIST_EMPTY

logger = logging.getLogger(__name__)


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
        still reported); DrainRefused at the broker's first refusal. The list is only read
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

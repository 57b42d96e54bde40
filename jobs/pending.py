"""Work marked after a write commits and picked up in batches: a write adds its items to a
Redis set in one round trip, and only the first write in a window publishes the job that
drains the set. A broker publish per write cost more than the write itself (search
indexing: more CPU than the post; link previews: a post with 3 links took 4x a plain one).

A drain claims what it takes under a lease (a sorted set scored by the lease's end) and
lets go once the work is done or handed on (a retry message carries it). A worker killed
in between leaves its claims to run out: the next drain of the group takes them again,
and `reclaim` (a beat job) starts that drain for groups no write wakes. Items may then be
worked twice, which every drain here tolerates; none is lost.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence

from celery.exceptions import Reject
from django.conf import settings
from django_redis import get_redis_connection
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Reaching a broker that is down takes Celery up to its connect timeout (4 s by default),
# and the post whose commit marks the work waits that long: after one failure this process
# stops trying for a while, so an outage costs one slow post per process per interval.
BROKER_DOWN_RETRY_SECS = 30.0
DRAIN_FLAG_TTL_SECS = 30  # a drain job lost with its worker is rescheduled by a later write

# KEYS: items, claims, groups with claims. ARGV: now, lease end, batch, group, max age.
# Expired claims first (their drain died), then new items; all leased to this drain. The
# group is listed under its earliest lease end, for `reclaim`.
_TAKE_LUA = """
local taken = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local want = tonumber(ARGV[3]) - #taken
if want > 0 then
  for _, item in ipairs(redis.call('SPOP', KEYS[1], want)) do table.insert(taken, item) end
end
if #taken == 0 then return taken end
for _, item in ipairs(taken) do redis.call('ZADD', KEYS[2], ARGV[2], item) end
redis.call('EXPIRE', KEYS[2], ARGV[5])
local earliest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[3], earliest[2], ARGV[4])
return taken
"""

# KEYS: claims, groups with claims. ARGV: group, this drain's lease end, then its items.
# Only items still under this drain's lease: one a later drain took again (re-marked by
# an edit, or past this lease) is that drain's to let go.
_RELEASE_LUA = """
local lease = tonumber(ARGV[2])
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == lease then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
local earliest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #earliest == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], earliest[2], ARGV[1])
end
return 0
"""

# A drain ending with these could not hand its work on (the broker or Redis is away):
# it keeps its claims, and the lease brings the work back.
_HANDOFF_FAILURES: tuple[type[BaseException], ...] = (Reject, OSError, KombuOperationalError, RedisError)


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
        self.max_age_secs = max_age_secs  # unclaimed items go with the set past this
        self.broker_down_until = 0.0  # per process: see BROKER_DOWN_RETRY_SECS

    def _items_key(self, group: str) -> str:
        return f"{self.name}:pending:{group}"

    def _flag_key(self, group: str) -> str:
        return f"{self.name}:drain-scheduled:{group}"

    def _claims_key(self, group: str) -> str:
        return f"{self.name}:claimed:{group}"

    def _groups_key(self) -> str:
        return f"{self.name}:claimed-groups"

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
            raise
        except BaseException:  # Retry included: the retry message carries them
            self._release(group, lease_end, taken)
            raise
        self._release(group, lease_end, taken)

    def _take(self, group: str) -> tuple[float, list[bytes]]:
        connection = get_redis_connection("default")
        connection.delete(self._flag_key(group))  # writes from now on schedule the next drain
        now = time.time()
        keys = [self._items_key(group), self._claims_key(group), self._groups_key()]
        lease_end = now + settings.PENDING_LEASE_SECS
        claims_ttl = max(self.max_age_secs, 2 * settings.PENDING_LEASE_SECS)  # outlives a lease
        args = [now, repr(lease_end), self.batch, group, int(claims_ttl)]
        taken: list[bytes] = connection.register_script(_TAKE_LUA)(keys, args)
        if len(taken) == self.batch and connection.set(
            self._flag_key(group), 1, nx=True, ex=DRAIN_FLAG_TTL_SECS
        ):
            try:
                self.schedule(group, 0.0)
            except Exception as exc:  # this batch goes on; the next write schedules the rest
                connection.delete(self._flag_key(group))
                logger.warning("next %s drain of %s not scheduled: %s", self.name, group, exc)
        return lease_end, taken

    def _release(self, group: str, lease_end: float, items: list[bytes]) -> None:
        if not items:
            return
        try:
            connection = get_redis_connection("default")
            keys = [self._claims_key(group), self._groups_key()]
            connection.register_script(_RELEASE_LUA)(keys, [group, repr(lease_end), *items])
        except RedisError as exc:  # the work is done or handed on; only the claims linger
            logger.warning("%s claims of %s kept (their lease brings them back): %s", self.name, group, exc)

    def reclaim(self) -> list[str]:
        """Start a drain for every group whose claims outlived their lease (the drain that
        held them died); returns those groups."""
        connection = get_redis_connection("default")
        now = time.time()
        started = []
        for raw in connection.zrangebyscore(self._groups_key(), "-inf", now):
            group = raw.decode()
            if not connection.exists(self._claims_key(group)):  # expired with the claims
                connection.zrem(self._groups_key(), group)
                continue
            # Not listed again before the drain's own lease would end: one drain per lease.
            connection.zadd(self._groups_key(), {group: now + settings.PENDING_LEASE_SECS})
            self.schedule(group, 0.0)
            started.append(group)
        if started:
            logger.warning("%s work of drains that died taken up again: %s", self.name, ", ".join(started))
        return started

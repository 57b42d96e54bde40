"""One subscription per team per process: the hub orders the team's events once and writes
each event's pre-encoded frame to every local socket that may see it.

A team's events arrive once per daphne process (not once per socket; those this process
published are also handed over directly, see take_published), pass one ordering
gate (the next event id; a gap waits briefly for a late publish, then is filled from the
log, once for the whole process), and are kept in a ring of recent events. A socket
catches up from its cursor (from the ring when it is recent, else from the log), and in
the same step, with no await in between, becomes live: from then on the hub hands it
every event in order, so nothing is lost or doubled. The hub also caches each member's
conversations, kept current by the events it orders, so a reconnect needs no query
(member_views.py).

This process's hubs, and the sweeper that stops idle ones, are in hubs.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from messaging.events import TEAM_IMPORTED, team_group
from messaging.realtime import live_only
from messaging.realtime.delivery import (
    REPLAY_BATCH,
    AccessEnded,
    ResyncRequired,
    Socket,
    ensure_memberships_unchanged,
    ensure_unchanged_by,
    frames_for,
    read_events,
    read_head,
)
from messaging.realtime.fanout import Flush
from messaging.realtime.member_views import MemberViews
from messaging.realtime.pool import blocking
from messaging.realtime.ring import Ring
from messaging.realtime.wire import Frame, spawn
from ops.metrics import EVENTS_DELIVERED

logger = logging.getLogger(__name__)

GAP_WAIT_SECS = 0.05  # a publish that lost the race to Redis usually lands within this
GAP_RETRY_SECS = 1.0  # after the log could not be read to fill a gap
SUBSCRIBED_WITHIN_SECS = 1.0  # a new hub's subscription is in effect by then (see start)
RECEIVE_BATCH = 200
# After a flush that took D (wall time), the next waits 2D: the loop keeps two thirds of
# its time for requests and sockets. Pacing by the flush's CPU time instead starved the
# posts sharing the process (bench/fanout.py, 1,000 sockets: post p50 13 -> 30 ms, delivery
# p50 50 -> 80 ms).
FLUSH_PACING = 2.0
MAX_FLUSH_INTERVAL_SECS = 0.05  # layer messages handled (and written per socket) at once at most
# Back-to-back flushes are at least this far apart, so a stream of cheap flushes (a small
# team) is not a send and a client wakeup per event. Small: it is latency every event of a
# small team pays (bench/fanout.py, 10 sockets, 100 posts/s: p50 18.1 ms with a 20 ms floor,
# 8.1 ms with this one); at 1,000 sockets the pacing above decides and the floor does not
# matter (p50 46-62 ms with either, interleaved runs).
MIN_FLUSH_INTERVAL_SECS = 0.005


class HubClosed(Exception):
    """The hub stopped before the socket joined: join the team's current hub instead (or,
    when the team is moving, reconnect)."""

    def __init__(self, *, moving: bool) -> None:
        super().__init__("moving" if moving else "stopped")
        self.moving = moving


class TeamHub:
    def __init__(self, team_id: int, shard: str, on_closed: Callable[[TeamHub], None]) -> None:
        self.team_id = team_id
        self.shard = shard
        self.on_closed = on_closed  # the registry forgets a hub that closed on its own
        self.head = 0  # every event up to here has passed the gate (set by start)
        self.ring = Ring()
        self.pending: dict[int, dict[str, Any]] = {}
        self.ready: list[dict[str, Any]] = []  # ordered, not yet handed out (see _flush)
        self.flush_handle: asyncio.TimerHandle | None = None
        self.last_flush = 0.0
        self.flush_interval = 0.0
        self.live: dict[Socket, None] = {}  # insertion-ordered set
        self.members = MemberViews(self)  # their conversations as of `head`
        self.gap_timer: asyncio.Task[None] | None = None
        self.started: asyncio.Future[None] | None = None
        self.receiver: asyncio.Task[None] | None = None
        self.idle_since: float | None = None
        self.closed = False  # no more events handed out
        self.moving = False
        self.stopped = False
        self.channel_name = ""
        self.loop: asyncio.AbstractEventLoop | None = None  # set by start: where take_published runs

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, layer: Any) -> None:
        """Subscribe, then read the log's head: whatever commits later also arrives live,
        once Redis has taken the subscription. The layer sends SUBSCRIBE without waiting
        for Redis to confirm it: an event published before Redis took it would only be
        noticed as a gap when the team's next one arrives (in a quiet DM, much later), so
        the log is read once more after a moment."""
        self.layer = layer
        self.loop = asyncio.get_running_loop()
        self.channel_name = await layer.new_channel("hub.")
        await layer.group_add(team_group(self.team_id), self.channel_name)
        self.head = await blocking(read_head)(self.shard, self.team_id)
        self.receiver = asyncio.get_running_loop().create_task(self._receive())
        spawn(self._catch_up_after(SUBSCRIBED_WITHIN_SECS))

    async def _catch_up_after(self, secs: float) -> None:
        await asyncio.sleep(secs)
        if not self.closed:
            try:
                await self.catch_up()
            except Exception:  # the next event's gap check, or a resubscription (hubs.py), tries again
                logger.exception("hub of team %s could not read the log after starting", self.team_id)

    async def stop(self) -> None:
        """Unsubscribe. Not from the receiving task: cancelling its receive is what makes
        the layer drop the hub's channel."""
        if self.stopped:
            return
        self.stopped = self.closed = True
        if self.flush_handle is not None:
            self.flush_handle.cancel()
        if self.gap_timer is not None:
            self.gap_timer.cancel()
        with contextlib.suppress(Exception):
            await self.layer.group_discard(team_group(self.team_id), self.channel_name)
        if self.receiver is not None:
            self.receiver.cancel()
        elif self.channel_name and hasattr(self.layer, "delete_channel"):  # start() failed
            with contextlib.suppress(Exception):
                await self.layer.delete_channel(self.channel_name)

    async def _receive(self) -> None:
        while True:
            # Whatever piled up while the loop was busy is ordered and written as one batch:
            # one write per socket however far behind, so falling behind does not snowball.
            try:
                messages = await self.layer.receive_many(self.channel_name, RECEIVE_BATCH)
            except Exception:  # the layer reconnects on its own; a gap is filled from the log
                logger.exception("hub of team %s could not receive", self.team_id)
                await asyncio.sleep(0.5)
                continue
            if self.closed:
                continue  # stop() is about to cancel this task
            try:
                for message in messages:
                    kind = message.get("type")
                    if kind == "team.event":
                        if message["event_id"] > self.head:
                            self.pending[message["event_id"]] = message
                    elif kind == "team.pruned":
                        self._pruned(message["upto"])
                    elif kind == "team.moving":
                        self._advance()  # what arrived before it goes out first
                        self._moving()
                        break
                    else:  # typing and the like: live_only.py
                        live_only.hand_out(self.live, message)
                if self.closed:  # moving
                    continue
                self._advance()
                self._watch_gap()
            except Exception:  # one bad message must not stop the team's stream
                logger.exception("hub of team %s failed on %d messages", self.team_id, len(messages))

    def take_published(self, data: bytes) -> None:
        """An event this process just published (hubs.py), taken ahead of its copy from
        Redis, which the gate then drops as already seen. A hub still starting (its head not
        read yet) leaves it to Redis."""
        if self.closed or self.receiver is None:
            return
        try:
            self._take([self.layer.deserialize(data)])
            self._watch_gap()
        except Exception:  # its copy from Redis, or the gap filler, brings it
            logger.exception("hub of team %s failed on a local event", self.team_id)

    def _watch_gap(self) -> None:
        """Events wait behind a missing one: fill it from the log unless it arrives soon."""
        if self.pending and self.gap_timer is None:
            self.gap_timer = asyncio.get_running_loop().create_task(self._fill_gap_later())

    # --- the ordered stream ------------------------------------------------------------

    def _advance(self) -> None:
        """Move the head over every pending event that is next, and hand them out."""
        ready = []
        while self.head + 1 in self.pending:
            message = self.pending.pop(self.head + 1)
            self.head += 1
            if message["event"].get("type") == TEAM_IMPORTED:
                # What came before an import is not the team's state any more: sockets from
                # before it boot again, and an older cursor finds no ring to replay from
                # (the log then tells it to resync too).
                self._resync_everyone()
                ready.clear()
                continue
            self.ring.append(message)
            self.members.apply(message)
            ready.append(message)
        if ready:
            self.ready += ready
            if self.flush_handle is None:
                loop = asyncio.get_running_loop()
                wait = self.last_flush + self.flush_interval - loop.time()
                if wait <= 0:
                    self._flush()
                else:
                    self.flush_handle = loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        """Hand out what is ready. Writes to every socket are paced by their own cost: the
        next round waits FLUSH_PACING times as long as this one took, so a busy hub writes
        several events per socket at once (fewer, larger writes for server and clients)
        instead of falling behind; an idle one writes at once. A socket joining meanwhile
        is replayed these events from the ring, and its cursor skips them here."""
        self.flush_handle = None
        ready, self.ready = self.ready, []
        loop = asyncio.get_running_loop()
        started = loop.time()
        if ready:
            self._deliver(ready)
        self.last_flush = loop.time()
        paced = FLUSH_PACING * (self.last_flush - started)
        self.flush_interval = max(MIN_FLUSH_INTERVAL_SECS, min(MAX_FLUSH_INTERVAL_SECS, paced))

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        delivered, shut_out = Flush(messages).write_to(self.live)
        for sock in shut_out:
            self.live.pop(sock, None)
            spawn(sock.shut_out())
        if delivered:
            EVENTS_DELIVERED.inc(delivered)

    async def _fill_gap_later(self) -> None:
        """One filler per hub at a time: gap_timer stays set until it is done."""
        try:
            await asyncio.sleep(GAP_WAIT_SECS)
            while self.pending and self.head + 1 not in self.pending and not self.closed:
                # Whatever precedes a published event has committed: the log has it.
                upto = min(self.pending) - 1
                try:
                    missing = await blocking(read_events)(self.shard, self.team_id, self.head, upto)
                except ResyncRequired:
                    missing = []
                except Exception:  # the shard is briefly away: the gap waits, then try again
                    logger.exception("hub of team %s could not fill a gap", self.team_id)
                    await asyncio.sleep(GAP_RETRY_SECS)
                    continue
                if not missing:  # pruned before this process saw it
                    self._skip_to(upto)
                    return
                self._take(missing)
        finally:
            self.gap_timer = None

    async def catch_up(self) -> None:
        """Read the log after the head (after the subscription was lost: see hubs.py)."""
        while not self.closed:
            try:
                batch = await blocking(read_events)(self.shard, self.team_id, self.head)
            except ResyncRequired:
                self._skip_to(await blocking(read_head)(self.shard, self.team_id))
                return
            self._take(batch)
            if len(batch) < REPLAY_BATCH:
                return

    def _take(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            if message["event_id"] > self.head:
                self.pending.setdefault(message["event_id"], message)
        self._advance()

    def _skip_to(self, event_id: int) -> None:
        """Events up to `event_id` are gone from the log: live sockets must boot again."""
        self._resync_everyone()
        self.head = max(self.head, event_id)
        # Those that arrived anyway are behind the head now: left pending, they would look
        # like a gap after every later event, and resync every socket each time.
        self.pending = {n: message for n, message in self.pending.items() if n > self.head}
        self._advance()

    def _resync_everyone(self) -> None:
        """Live sockets boot again, and the ring holds nothing from before now."""
        sockets = list(self.live)
        self.live.clear()
        self.ring.clear()
        self.members.clear()
        for sock in sockets:
            spawn(sock.resync())

    # --- sockets -------------------------------------------------------------------------

    async def join(self, sock: Socket) -> None:
        """Replay the socket's events after its cursor, then make it live (exactly once).

        Raises ResyncRequired when the cursor is older than the log (or not from it),
        AccessEnded when the replay revoked the socket's token or deactivated its member,
        HubClosed when the hub stopped (the sweeper, between hub_for and here) or moved."""
        self.idle_since = None
        checked = False
        while True:
            if self.closed:  # stopped while idle, or moving: the socket would hear nothing
                raise HubClosed(moving=self.moving)
            if sock.cursor > self.head:
                if checked:  # nothing after the cursor was handed out: live from here
                    break
                # Ahead of this process (its boot read a head not yet published here), or
                # not from this log at all: the log says which. The hub may pass the cursor
                # during this read (handing those events to live sockets only): look again.
                await blocking(read_events)(self.shard, self.team_id, sock.cursor, sock.cursor)
                checked = True
                continue
            if sock.cursor == self.head:
                break
            if self.ring.first_id(default=self.head + 1) <= sock.cursor + 1:
                frames, delivered, ended = self.ring.replay(sock.cursor, self.head).frames_for(sock)
                self._write_replay(sock, frames, delivered)
                if ended:
                    raise AccessEnded
                break
            batch = await blocking(read_events)(self.shard, self.team_id, sock.cursor, self.head)
            if not batch:
                raise ResyncRequired(f"nothing after {sock.cursor} below {self.head}")
            await self._check_unchecked(sock, batch)
            if self._replay(sock, batch):
                raise AccessEnded
        self.live[sock] = None  # no await since the last check: nothing slips between

    async def _check_unchecked(self, sock: Socket, batch: list[dict[str, Any]]) -> None:
        """ResyncRequired when an event the socket's view has not been checked against
        (MemberViews.viewer_for) changes its member's conversations: all of them, before
        the first is replayed. The first batch read from the log usually holds them all;
        when it does not, the rest of them are looked up in the log, once."""
        viewer = sock.viewer
        upto, viewer.unchecked_upto = viewer.unchecked_upto, 0
        if upto <= sock.cursor:
            return
        ensure_unchanged_by(viewer.member_id, batch, upto)
        if batch[-1]["event_id"] < upto:
            unchanged = blocking(ensure_memberships_unchanged)
            await unchanged(self.shard, self.team_id, viewer.member_id, batch[-1]["event_id"], upto)

    def _replay(self, sock: Socket, messages: list[dict[str, Any]]) -> bool:
        """Catch-up frames go out as one write. True when one of them ended the socket's grant."""
        frames, delivered, ended = frames_for(sock, messages)
        self._write_replay(sock, frames, delivered)
        return ended

    def _write_replay(self, sock: Socket, frames: list[Frame], delivered: int) -> None:
        if frames:
            EVENTS_DELIVERED.inc(delivered)
            sock.write(frames)

    def leave(self, sock: Socket) -> None:
        self.live.pop(sock, None)
        if not self.live:
            self.idle_since = time.monotonic()

    def _pruned(self, upto: int) -> None:
        """The log no longer has events up to `upto`: neither does the ring, so a cursor
        before them gets resync_required here too."""
        self.ring.prune(upto)

    def _moving(self) -> None:
        """The team is moving shards: every socket reconnects (and finds the new shard),
        after the events already ordered (the ones it would otherwise miss and never replay
        from this hub)."""
        if self.flush_handle is not None:
            self.flush_handle.cancel()
        self._flush()
        sockets = list(self.live)
        self.live.clear()
        self.closed = self.moving = True
        self.on_closed(self)
        for sock in sockets:
            spawn(sock.say_goodbye())
        spawn(self.stop())

"""A team hub's memory of its members' conversations, as of the events it has ordered,
so that a reconnecting socket needs no query to know what it may see; and the check that
a socket's replay may be judged by it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from messaging.realtime.delivery import (
    Viewer,
    ensure_unchanged_by,
    member_channel_ids,
    membership_subjects,
)
from messaging.realtime.pool import blocking

if TYPE_CHECKING:
    from messaging.realtime.hub import TeamHub

MEMBER_CACHE_SIZE = 20_000  # members whose conversations a hub remembers
VIEW_READ_TRIES = 3


class MemberViews:
    def __init__(self, hub: TeamHub) -> None:
        self.hub = hub
        self.views: dict[int, Viewer] = {}  # member id -> their conversations as of the head
        self.clears = 0  # times the hub's ring was emptied (a cached view must not span one)

    def apply(self, message: dict[str, Any]) -> None:
        """An event the hub ordered: the joins and leaves in it, for members remembered."""
        for member_id in membership_subjects(message):
            view = self.views.get(member_id)
            if view is not None:
                view.may_see(message)

    def clear(self) -> None:
        """The ring was emptied: what is remembered may not cover what comes next."""
        self.clears += 1
        self.views.clear()

    async def viewer_for(self, member_id: int, cursor: int) -> Viewer:
        """The member's conversations, for a socket resuming after `cursor`: the cached
        copy, else read from the database (then cached).

        Either holds every join and leave up to the head (or later), while the socket is
        yet to be replayed the events after its cursor, which are judged by it: so none of
        those may change the member's conversations (a message in a private channel from
        before they were invited would reach them; one from before they left would not).
        When one does, ResyncRequired: the client boots again, from a cursor past it. The
        ring's events are checked here; older ones, which the join reads from the log to
        replay them, are checked there (Viewer.unchecked_upto), so the log is read once.

        A socket ahead of this hub (its cursor past the head) reads the database, uncached:
        the cached copy is as of the head, and the events between head and cursor, which the
        socket skips, would never be applied to its copy.

        Joins and leaves the hub orders during the read may or may not be in what was read:
        they are applied again from the ring (adding or removing twice changes nothing). If
        the ring no longer holds them all (more than ring.RING_SIZE events passed, or it was
        cleared), the read is done again: a leave it missed would stay in the cache."""
        hub = self.hub
        if cursor > hub.head:
            channel_ids = await blocking(member_channel_ids)(hub.shard, hub.team_id, member_id, cursor)
            return Viewer(member_id, channel_ids)
        view = self.views.get(member_id)
        if view is None:
            view = await self._read(member_id)
        # The ring as it is now, after the read: the view is as of its end, the head.
        oldest = hub.ring.first_id(default=hub.head + 1)
        ensure_unchanged_by(member_id, hub.ring.membership_changes_after(cursor), hub.head)
        viewer = Viewer(member_id, set(view.channel_ids))
        if oldest > cursor + 1:
            viewer.unchecked_upto = oldest - 1
        return viewer

    async def _read(self, member_id: int) -> Viewer:
        hub = self.hub
        for _ in range(VIEW_READ_TRIES):
            as_of, clears = hub.head, self.clears
            channel_ids = await blocking(member_channel_ids)(hub.shard, hub.team_id, member_id, as_of)
            view = Viewer(member_id, channel_ids)
            for message in hub.ring.membership_changes_after(as_of):
                if member_id in membership_subjects(message):
                    view.may_see(message)
            covered = hub.head == as_of or hub.ring.first_id(default=as_of + 2) <= as_of + 1
            if covered and self.clears == clears:
                if len(self.views) >= MEMBER_CACHE_SIZE:
                    self.views.pop(next(iter(self.views)))
                self.views[member_id] = view
                break
        # Still not covered (a flood of events, every try): used for this socket only.
        return view

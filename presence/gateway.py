"""One socket's part in presence: its heartbeat, its subscriptions, its batched pushes.

A socket hears presence only for the members it subscribed to (`presence_sub`), through
this process's subscription to one channel-layer group per member (subscribers.py), so
the cost of a change grows with the number of subscribers, not with the team. Changes are
batched for PRESENCE_BATCH_SECS and pushed as one `presence_change` per state listing
every user (`batch_presence_aware`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from messaging.realtime.pool import blocking
from ops.metrics import PRESENCE_SUBSCRIPTIONS
from presence import state
from presence.subscribers import presence_subscribers
from teams import ids
from teams.directory import TeamEntry
from teams.queries import members_of_team

logger = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 500  # one socket's presence_sub list; a client wanting more should page


class PresenceLink:
    def __init__(
        self,
        channel_layer: Any,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        team: TeamEntry,
        member_id: int,
        batch_aware: bool,
    ) -> None:
        self.subscriptions = presence_subscribers(channel_layer)
        self.socket_id = secrets.token_hex(8)  # its entry among the member's sockets
        self.send = send
        self.team = team
        self.team_id = team.id
        self.member_id = member_id
        self.batch_aware = batch_aware
        self.subscribed: set[int] = set()
        self.batch: dict[str, str] = {}
        # Per current-state read in flight: the users whose change arrived while it waited.
        self.changed_during_reads: list[set[str]] = []
        self.flush_task: asyncio.Task[None] | None = None
        self.heartbeat_task: asyncio.Task[None] | None = None
        self.activity_written = 0.0
        self.closed = False

    async def start(self) -> None:
        await state.socket_seen_batched(self.team_id, self.member_id, self.socket_id, active=True)
        self.activity_written = time.monotonic()
        self.heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def stop(self) -> None:
        # From here a change is dropped: a flush started during the awaits below would
        # write to a closed socket.
        self.closed = True
        for task in (self.heartbeat_task, self.flush_task):
            if task is not None:
                task.cancel()
        PRESENCE_SUBSCRIPTIONS.dec(len(self.subscribed))
        subscribed, self.subscribed = self.subscribed, set()
        try:
            for member_id in subscribed:
                # Each on its own: one failing (Redis away) must not leave this link in the
                # other members' subscriber sets, nor keep the process subscribed.
                try:
                    await self.subscriptions.discard(self.team_id, member_id, self)
                except Exception:
                    logger.exception("presence subscription to %s not ended", member_id)
        finally:
            await state.socket_gone_batched(self.team_id, self.member_id, self.socket_id)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(state.HEARTBEAT_SECS)
            with contextlib.suppress(Exception):  # Redis may be briefly away; the next beat retries
                await state.socket_seen_batched(self.team_id, self.member_id, self.socket_id, active=False)

    async def activity(self) -> None:
        """The person did something on this socket: they are not idle."""
        now = time.monotonic()
        if now - self.activity_written >= state.ACTIVITY_WRITE_SECS:
            self.activity_written = now
            await state.socket_seen_batched(self.team_id, self.member_id, self.socket_id, active=True)

    async def _member_ids(self, refs: object) -> list[int]:
        """The ids named that are members of this socket's team (an id of another team's
        member says nothing here: its presence is that team's business)."""
        found = []
        for ref in refs if isinstance(refs, list) else []:
            try:
                found.append(ids.decode(ref, ids.USER_PREFIXES))
            except ids.BadId:
                continue
        named = list(dict.fromkeys(found))[:MAX_SUBSCRIPTIONS]
        members = await blocking(members_of_team)(self.team, named) if named else set()
        return [member_id for member_id in named if member_id in members]

    async def subscribe(self, refs: object) -> None:
        """presence_sub: replace the subscription list, then tell the current state of new ones."""
        wanted = set(await self._member_ids(refs))
        # Recorded member by member: should one fail midway, `subscribed` still names every
        # subscription this link holds, and stop() ends them.
        for member_id in self.subscribed - wanted:
            self.subscribed.discard(member_id)
            PRESENCE_SUBSCRIPTIONS.dec()
            await self.subscriptions.discard(self.team_id, member_id, self)
        added = sorted(wanted - self.subscribed)
        for member_id in added:
            await self.subscriptions.add(self.team_id, member_id, self)
            self.subscribed.add(member_id)
            PRESENCE_SUBSCRIPTIONS.inc()
        await self._tell_current(added)

    async def query(self, refs: object) -> None:
        """presence_query: the current state of these members, pushed as presence_change."""
        await self._tell_current(await self._member_ids(refs))

    async def _tell_current(self, member_ids: list[int]) -> None:
        if not member_ids:
            return
        changed_meanwhile: set[str] = set()
        self.changed_during_reads.append(changed_meanwhile)
        try:
            states = await state.current_batched(self.team_id, member_ids)
        finally:
            self.changed_during_reads.remove(changed_meanwhile)
        for member_id, presence in states.items():
            user = ids.encode(ids.USER, member_id)
            # A change that arrived while the read waited is at least as new as what it
            # read (Redis may have answered before the change): the read must not undo it.
            if user not in changed_meanwhile:
                self.batch[user] = presence
        await self.flush()

    def changed(self, user: str, presence: str) -> None:
        """A subscribed member's presence changed (from this process's subscriptions)."""
        if self.closed:
            return
        for changed_meanwhile in self.changed_during_reads:
            changed_meanwhile.add(user)
        self.batch[user] = presence
        if self.flush_task is None:
            self.flush_task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(settings.PRESENCE_BATCH_SECS)
        self.flush_task = None
        await self.flush()

    async def flush(self) -> None:
        batch, self.batch = self.batch, {}
        by_state: dict[str, list[str]] = {}
        for user, presence in batch.items():
            by_state.setdefault(presence, []).append(user)
        for presence, users in by_state.items():
            if self.batch_aware:
                await self.send({"type": "presence_change", "users": users, "presence": presence})
            else:
                for user in users:
                    await self.send({"type": "presence_change", "user": user, "presence": presence})

"""This process's team hubs (hub.py): started on first use, shared by concurrent callers,
stopped by the sweeper after HUB_IDLE_SECS without a socket (until then, after a mass
disconnect, a hub's ring still holds what the returning sockets missed). The sweeper
also renews live sockets' reconnect URLs before they expire.

While the layer's subscriber connection is away (Redis restarted, or dropped it: a
subscriber over its pub/sub output buffer limit, under load, loses all the buffer held),
what is published never reaches this process, and nothing would reveal the gap until
the team's next event (in a quiet conversation, much later). So the layer reports each
time that connection connects again (chatproject/layers.py), and once Redis has had time
to take the subscriptions it sent again, every hub reads the log after its head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from django.conf import settings

from messaging import events
from messaging.realtime.hub import SUBSCRIBED_WITHIN_SECS, TeamHub
from messaging.realtime.tickets import RECONNECT_TTL_SECS
from messaging.realtime.wire import spawn

logger = logging.getLogger(__name__)

HUB_IDLE_SECS = settings.HUB_IDLE_SECS  # keep an empty hub (and its ring) this long for returning sockets
SWEEP_SECS = 30.0

_hubs: dict[int, TeamHub] = {}
_sweeper: asyncio.Task[None] | None = None


def _forget(hub: TeamHub) -> None:
    if _hubs.get(hub.team_id) is hub:
        del _hubs[hub.team_id]


async def hub_for(layer: Any, team_id: int, shard: str) -> TeamHub:
    """The team's hub in this process, started on first use (concurrent callers share it)."""
    global _sweeper
    hub = _hubs.get(team_id)
    if hub is not None and hub.shard != shard:
        # The team moved (its team.moving did not reach this hub): its sockets say goodbye
        # and come back to the new shard. No await from here to the new hub's registration,
        # so concurrent callers share one.
        hub._moving()
        hub = None
    if hub is None:
        hub = TeamHub(team_id, shard, _forget)
        _hubs[team_id] = hub
        hub.started = asyncio.get_running_loop().create_future()
        try:
            await hub.start(layer)
        except BaseException as exc:
            _forget(hub)
            hub.started.set_exception(exc)
            hub.started.exception()  # retrieved: later waiters see a fresh hub instead
            await hub.stop()
            raise
        hub.started.set_result(None)
        if hasattr(layer, "on_reconnect"):  # the product's layer (tests may use another)
            layer.on_reconnect(_reconnected)  # the connection exists once a hub subscribed
        if _sweeper is None or _sweeper.done():
            _sweeper = asyncio.get_running_loop().create_task(_sweep())
    else:
        assert hub.started is not None
        await asyncio.shield(hub.started)
    return hub


def hubs() -> list[TeamHub]:
    return list(_hubs.values())


def _take_published(team_id: int, data: bytes) -> None:
    """events.local_listeners, on the publishing thread (an HTTP worker): an event posted
    through this process reaches its sockets without the round trip through Redis, and
    while Redis is away. bench/fanout.py, traced: such events were flushed 20.4 ms after
    their post (p50) against 22.8 ms for those that came through Redis."""
    hub = _hubs.get(team_id)
    if hub is not None and hub.loop is not None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is stopping
            hub.loop.call_soon_threadsafe(hub.take_published, data)


events.local_listeners.append(_take_published)


def _reconnected() -> None:
    spawn(_catch_up_all())


async def _catch_up_all() -> None:
    # The layer sent the subscriptions again without waiting for Redis to confirm them: a
    # read of the log before Redis takes them could miss an event published in between.
    await asyncio.sleep(SUBSCRIBED_WITHIN_SECS)
    logger.warning("subscriptions restored: %d team hubs catch up from the event log", len(_hubs))
    for hub in hubs():
        try:
            await hub.catch_up()
        except Exception:  # one team's failure is its own; its next event's gap check tries again
            logger.exception("hub of team %s could not read the log after a reconnect", hub.team_id)


async def _sweep() -> None:
    """Renew reconnect URLs before they expire; stop hubs that had no socket for HUB_IDLE_SECS."""
    while True:
        await asyncio.sleep(min(SWEEP_SECS, RECONNECT_TTL_SECS / 4, HUB_IDLE_SECS))
        try:
            await _sweep_once()
        except Exception:  # the next round tries again; a dead sweeper would renew nothing
            logger.exception("hub sweep failed")


async def _sweep_once() -> None:
    now = time.monotonic()
    for hub in hubs():
        for sock in list(hub.live):
            if now - sock.reconnect_url_sent > RECONNECT_TTL_SECS / 2:
                sock.reconnect_url_sent = now
                spawn(sock.send_reconnect_url())
        if hub.idle_since is not None and not hub.live and now - hub.idle_since > HUB_IDLE_SECS:
            _forget(hub)
            await hub.stop()

"""Saying goodbye to every socket of this process when daphne shuts down.

daphne cancels application coroutines from a Twisted "before shutdown" trigger; ours is
registered earlier (when the ASGI app is imported), so the goodbye frames are written
first, as separate tasks the cancellation does not touch.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Protocol

logger = logging.getLogger(__name__)
GOODBYE_TIMEOUT_SECS = 2.0


class Farewell(Protocol):
    async def say_goodbye(self) -> None: ...


_live: set[Farewell] = set()


def register(consumer: Farewell) -> None:
    _live.add(consumer)


def unregister(consumer: Farewell) -> None:
    _live.discard(consumer)


def live() -> list[Farewell]:
    """Every open socket of this process."""
    return list(_live)


async def _goodbye_all() -> None:
    consumers = list(_live)
    if consumers:
        await asyncio.wait(
            [asyncio.ensure_future(c.say_goodbye()) for c in consumers], timeout=GOODBYE_TIMEOUT_SECS
        )
    logger.info("said goodbye to %d sockets", len(consumers))


def install_shutdown_trigger() -> None:
    """Hook the Twisted reactor daphne runs on; a no-op anywhere else (tests, WSGI)."""
    if "twisted.internet.reactor" not in sys.modules:
        return  # not under daphne: importing the reactor here would install the wrong one
    from twisted.internet import defer, reactor

    def trigger() -> Any:
        return defer.Deferred.fromFuture(asyncio.ensure_future(_goodbye_all()))

    reactor.addSystemEventTrigger("before", "shutdown", trigger)  # type: ignore[attr-defined]

"""Events whose publish failed (Redis down), published again once Redis answers.

The event log already holds them and a socket that reconnects replays them from its
cursor; re-publishing lets sockets that stayed open catch up without a new event to
expose the gap. Delivery is by event id, so an event published twice is shown once.
Per process and bounded: past BACKLOG_MAX the oldest are left to the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

BACKLOG_MAX = 10_000
RETRY_INTERVAL_SECS = 1.0

_backlog: deque[tuple[str, dict[str, Any]]] = deque(maxlen=BACKLOG_MAX)
_lock = threading.Lock()
_retrier: threading.Thread | None = None


def defer(group: str, message: dict[str, Any], send: Callable[[str, dict[str, Any]], None]) -> None:
    """Keep a message that could not be published; a thread retries until Redis is back."""
    global _retrier
    with _lock:
        _backlog.append((group, message))
        if _retrier is None:
            _retrier = threading.Thread(target=_retry_until_empty, args=(send,), daemon=True)
            _retrier.start()


def pending() -> int:
    return len(_backlog)


def _retry_until_empty(send: Callable[[str, dict[str, Any]], None]) -> None:
    global _retrier
    while True:
        time.sleep(RETRY_INTERVAL_SECS)
        while True:
            with _lock:
                if not _backlog:
                    _retrier = None
                    return
                group, message = _backlog[0]
            try:
                send(group, message)
            except Exception as exc:
                logger.info("%d events still unpublished: %s", len(_backlog), exc)
                break  # still down: wait and retry, oldest first
            with _lock:
                if _backlog and _backlog[0][1] is message:
                    _backlog.popleft()

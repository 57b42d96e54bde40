"""Writes an import's message batches on a thread of their own (with its own database
connection) while the caller parses and converts the next batch: PostgreSQL and Python
then each keep a core busy instead of taking turns. Batches are written in order, one
at a time; after a failure nothing more is written, and the caller gets the error at its
next submit or at close, so checkpoints never run past a batch that failed."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import connections

T = TypeVar("T")
_STOP = object()


class InlineWriter(Generic[T]):
    """The same interface, writing in the caller's thread (inside a transaction, e.g.
    in tests, another connection could not see the rows the batches refer to)."""

    def __init__(self, write: Callable[[T], None]) -> None:
        self._write = write

    def submit(self, item: T) -> None:
        self._write(item)

    def close(self) -> None:
        pass


class BackgroundWriter(Generic[T]):
    def __init__(self, write: Callable[[T], None]) -> None:
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)  # one batch in flight, one waiting
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="import-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not _STOP:
                if self._error is None:
                    try:
                        self._write(item)  # type: ignore[arg-type]
                    except BaseException as exc:  # handed to the caller's thread
                        self._error = exc
        finally:
            connections.close_all()  # this thread's own connections

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, item: T) -> None:
        self._raise()
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self._raise()


def batch_writer(write: Callable[[T], None], *, threaded: bool) -> InlineWriter[T] | BackgroundWriter[T]:
    return BackgroundWriter(write) if threaded else InlineWriter(write)

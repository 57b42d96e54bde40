"""The message ts one conversation's check has read, to refuse a duplicate, held in
memory that follows one day of the conversation rather than its whole history.

Day files are read in date order, and a day's messages are newer than the days before
it: a ts newer than every earlier day's cannot repeat one of them, so only the current
day's ts are kept in memory (a renamed channel's two folders may both have that day;
their files sort together). An archive out of that order (a message filed under a later
day) is still checked exactly: its first ts not newer than the earlier days moves their
ts, read again from the archive, into a temporary SQLite table on disk, which every
later day then joins.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

# SQLite's page cache for ts moved out of memory: bounded whatever the conversation holds
# (the default is 2 MiB; a bigger one keeps lookups off the disk for longer).
_CACHE_KIB = 16 * 1024


class SeenTs:
    """Use as a context manager: the temporary table, if one was made, goes with it."""

    def __init__(self, earlier: Callable[[int], Iterable[int]]) -> None:
        """`earlier(index)`: the ts of the conversation's day files before file `index`,
        read again (called at most once, for an archive out of date order)."""
        self._earlier = earlier
        self._day = ""  # the day being read (a day file's name)
        self._day_start = 0  # the index of its first file
        self._today: set[int] = set()
        self._newest = -1  # the newest ts of the days before it
        self._older: sqlite3.Connection | None = None  # their ts, once out of order

    def __enter__(self) -> SeenTs:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._older is not None:
            self._older.close()  # a temporary database is deleted as it closes
            self._older = None

    @property
    def held(self) -> int:
        """How many ts are held in memory: the current day's."""
        return len(self._today)

    @property
    def spilled(self) -> bool:
        """Whether the earlier days' ts went to disk (the archive is out of date order)."""
        return self._older is not None

    def add_file(self, index: int, day: str, stamps: Iterable[int]) -> int | None:
        """Record the ts of day file `index` (named `day`); the first one read before,
        if any."""
        if day != self._day:
            self._end_day()
            self._day, self._day_start = day, index
        today, newest = self._today, self._newest
        for ts in stamps:
            if ts in today or (ts <= newest and self._in_older(ts)):
                return ts
            today.add(ts)
        return None

    def _end_day(self) -> None:
        if not self._today:
            return
        self._newest = max(self._newest, max(self._today))
        if self._older is not None:
            _store(self._older, self._today)
        self._today = set()

    def _in_older(self, ts: int) -> bool:
        if self._older is None:
            self._older = sqlite3.connect("")  # "": temporary, on disk past its cache
            self._older.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            self._older.execute("CREATE TABLE seen (ts INTEGER PRIMARY KEY)")
            _store(self._older, self._earlier(self._day_start))
        return self._older.execute("SELECT 1 FROM seen WHERE ts = ?", (ts,)).fetchone() is not None


def _store(older: sqlite3.Connection, stamps: Iterable[int]) -> None:
    # Never committed: the table is this connection's alone and goes with it, and a
    # commit a day cost half as much again as the inserts (measured, 1M ts).
    older.executemany("INSERT INTO seen (ts) VALUES (?)", zip(stamps))

"""Writes a zip in Slack's export layout, one entry at a time: the top-level JSON files,
then each conversation's messages split into UTC day files as they stream in, so memory
holds one message at a time. The exporter and the bench's archive generator share it."""

from __future__ import annotations

import contextlib
import json
import shutil
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

# Fast deflate: export time is dominated by compression at higher levels, for a few % size.
COMPRESS_LEVEL = 3
_COPY_CHUNK = 1 << 20


def day_of(ts: str) -> str:
    return datetime.fromtimestamp(int(ts.split(".")[0]), UTC).strftime("%Y-%m-%d")


def _day_number(ts: str) -> int:
    # Cheap to compare per message; the date string is made only when the day changes.
    return int(ts.partition(".")[0]) // 86_400


class ExportWriter:
    def __init__(self, path: Path, compresslevel: int = COMPRESS_LEVEL) -> None:
        self._zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel)
        self._days: DayFiles | None = None  # the latest, whose day file may be open

    def __enter__(self) -> ExportWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        # Left by an error, maybe with a day file open (a shard read failed between two
        # chunks): zipfile refuses to close around an open entry, and its ValueError would
        # replace the error that says whether the job may pause and go on. The file is
        # abandoned (a rerun writes it again); only the handles are let go.
        with contextlib.suppress(Exception):
            if self._days is not None:
                self._days.end()
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        self._zip.close()

    def copy_entries(self, source: Path) -> None:
        """Every file of another zip (a staged part of a resumable export), in its order."""
        with zipfile.ZipFile(source) as part:
            for info in part.infolist():
                large = info.file_size >= zipfile.ZIP64_LIMIT  # sizes known here, unlike while streaming
                with part.open(info) as data, self._zip.open(info.filename, "w", force_zip64=large) as entry:
                    shutil.copyfileobj(data, entry, _COPY_CHUNK)

    def json_file(self, name: str, value: Any) -> None:
        self._zip.writestr(name, json.dumps(value, ensure_ascii=False, indent=1))

    def conversation(
        self, folder: str, messages: Iterable[dict[str, Any]], *, budget: int | None = None
    ) -> tuple[int, str | None]:
        """Messages oldest first: (how many were written, None). With a `budget`, stops
        once that many are written, at the next day boundary (a day file is never split),
        and returns the ts of the last message written instead of None."""
        days = self.day_files(folder, budget=budget)
        stopped_at = days.write(messages)
        days.end()
        return days.count, stopped_at

    def day_files(self, folder: str, *, budget: int | None = None) -> DayFiles:
        """A conversation's day files, to be written in pieces (see `conversation`)."""
        self._days = DayFiles(self._zip, folder, budget)
        return self._days


class DayFiles:
    """One conversation's day files, written as its messages come, oldest first, in as
    many pieces as the caller likes: the exporter writes each chunk it read from the shard
    as a store step of its own, so that the reads between them are not store time."""

    def __init__(self, archive: zipfile.ZipFile, folder: str, budget: int | None) -> None:
        self._zip = archive
        self.folder = folder
        self.budget = budget
        self.count = 0  # messages written
        self._day = -1
        self._entry: IO[bytes] | None = None
        self._last: str | None = None

    def write(self, messages: Iterable[dict[str, Any]]) -> str | None:
        """Write these next messages. None once written; with a `budget`, once that many
        are written, stops at the next day boundary (a day file is never split), ends the
        day files, and returns the ts of the last message written."""
        for message in messages:
            message_day = _day_number(message["ts"])
            if message_day != self._day:
                if self.budget is not None and self.count >= self.budget:
                    self.end()
                    return self._last
                self.end()
                name = f"{self.folder}/{day_of(message['ts'])}.json"
                self._day, self._entry = message_day, self._zip.open(name, "w")
                self._entry.write(b"[\n")
            else:
                self._entry.write(b",\n")  # type: ignore[union-attr]
            self._entry.write(json.dumps(message, ensure_ascii=False).encode())  # type: ignore[union-attr]
            self.count, self._last = self.count + 1, message["ts"]
        return None

    def end(self) -> None:
        """Close the day file being written (the conversation's last, or the budget's)."""
        _end(self._entry)
        self._entry = None


def _end(entry: IO[bytes] | None) -> None:
    if entry is not None:
        entry.write(b"\n]\n")
        entry.close()

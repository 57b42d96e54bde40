"""A Slack export, zipped or unpacked, read safely: names, sizes and counts are checked
before anything is parsed, and each JSON file is read on its own, so memory follows the
largest file, not the archive.

Refused: `../` and absolute names, symlinks, more files or bytes than the limits, a
compression ratio past the limit (zip bombs), text that is not UTF-8, malformed JSON.
Every refusal is an ArchiveError naming the file and the problem.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from django.conf import settings

_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")
_READ_CHUNK = 1 << 16


class ArchiveError(Exception):
    """A bad archive: `path` is the file at fault ("" for the archive itself)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class ArchiveLimits:
    max_total_bytes: int
    max_file_bytes: int
    max_files: int
    max_ratio: float

    @classmethod
    def from_settings(cls) -> ArchiveLimits:
        return cls(
            settings.IMPORT_MAX_TOTAL_BYTES,
            settings.IMPORT_MAX_FILE_BYTES,
            settings.IMPORT_MAX_FILES,
            settings.IMPORT_MAX_RATIO,
        )


def _checked_name(raw: str) -> str:
    """The member name as a relative POSIX path; refuses anything that could escape."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(raw, "absolute path in archive")
    parts = PurePosixPath(name).parts
    if any(part == ".." for part in parts):
        raise ArchiveError(raw, "path traversal ('..') in archive")
    return "/".join(part for part in parts if part != ".")


@dataclass(frozen=True)
class DayFile:
    """One day of one conversation: `folder/YYYY-MM-DD.json`."""

    folder: str
    name: str

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}"


class SlackArchive:
    """Open with `SlackArchive.open(path)`; use as a context manager."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.files: dict[str, int] = {}  # checked name -> uncompressed size

    @staticmethod
    def open(path: str | Path, limits: ArchiveLimits | None = None) -> SlackArchive:
        limits = limits or ArchiveLimits.from_settings()
        path = Path(path)
        if path.is_dir():
            return FolderArchive(path, limits)
        if not path.is_file():
            raise ArchiveError(path.name, "no such file or folder")
        return ZipArchive(path, limits)

    def __enter__(self) -> SlackArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def _admit(self, name: str, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise ArchiveError(
                name, f"file is {size} bytes uncompressed, over the {self.limits.max_file_bytes} limit"
            )
        if len(self.files) >= self.limits.max_files:
            raise ArchiveError("", f"archive has more than {self.limits.max_files} files")
        self.files[name] = size
        if sum(self.files.values()) > self.limits.max_total_bytes:
            raise ArchiveError(
                "", f"archive uncompressed size is over the {self.limits.max_total_bytes} byte limit"
            )

    def _stream(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def has(self, name: str) -> bool:
        return name in self.files

    def read_bytes(self, name: str) -> bytes:
        """The whole file, never more than its declared size (a lying header fails here)."""
        declared = self.files[name]
        chunks, total = [], 0
        with self._stream(name) as stream:
            while chunk := stream.read(_READ_CHUNK):
                total += len(chunk)
                if total > declared or total > self.limits.max_file_bytes:
                    raise ArchiveError(name, "file is larger than its declared size")
                chunks.append(chunk)
        return b"".join(chunks)

    def read_json(self, name: str) -> Any:
        raw = self.read_bytes(name)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ArchiveError(
                name, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
            ) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchiveError(
                name, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None

    def read_list(self, name: str, *, required: bool = False) -> list[dict[str, Any]]:
        """A top-level file that must be a JSON array of objects; [] when absent and optional."""
        if not self.has(name):
            if required:
                raise ArchiveError(name, "missing from the archive (not a Slack export?)")
            return []
        value = self.read_json(name)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ArchiveError(name, "expected a JSON array of objects")
        return value

    def day_files(self) -> list[DayFile]:
        """Every `folder/YYYY-MM-DD.json`, by folder then date (day files sort by name)."""
        found = []
        for name in self.files:
            folder, _, base = name.rpartition("/")
            if folder and "/" not in folder and _DAY_FILE.match(base):
                found.append(DayFile(folder, base))
        return sorted(found, key=lambda day: (day.folder, day.name))

    def messages(self, day: DayFile) -> list[dict[str, Any]]:
        value = self.read_json(day.path)
        if not isinstance(value, list):
            raise ArchiveError(day.path, "expected a JSON array of messages")
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise ArchiveError(day.path, f"item {index} is not a JSON object")
        return value


_END = struct.Struct("<4s4H2LH")  # end of central directory record
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_END_SEARCH = _END.size + 0xFFFF  # the record, then a comment of up to 64 KiB


def declared_entries(path: Path) -> int | None:
    """How many entries the zip's end record says its central directory holds (None when
    there is no readable end record: zipfile then says what is wrong). Read before the
    central directory is parsed, which takes memory and time for every entry."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(size - _END_SEARCH, 0)
        handle.seek(start)
        tail = handle.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _END.size:
            return None
        entries = _END.unpack_from(tail, at)[4]
        if entries != 0xFFFF or at < _END64_LOCATOR.size:
            return entries
        locator = _END64_LOCATOR.unpack_from(tail, at - _END64_LOCATOR.size)
        if locator[0] != b"PK\x06\x07":
            return entries
        handle.seek(locator[2])
        record = handle.read(_END64.size)
        if len(record) < _END64.size or record[:4] != b"PK\x06\x06":
            return None
        return _END64.unpack(record)[6]


class ZipArchive(SlackArchive):
    def __init__(self, path: Path, limits: ArchiveLimits) -> None:
        super().__init__(limits)
        # Every file may come with its folder's entry; past twice the limit is refused unread.
        entries = declared_entries(path)
        if entries is not None and entries > 2 * limits.max_files:
            raise ArchiveError("", f"archive has more than {limits.max_files} files ({entries} entries)")
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise ArchiveError(path.name, f"not a zip archive or truncated ({exc})") from None
        except OSError as exc:
            raise ArchiveError(path.name, f"cannot be read ({exc.strerror})") from None
        self._members: dict[str, zipfile.ZipInfo] = {}
        try:
            self._check()
        except BaseException:
            self._zip.close()
            raise

    def _check(self) -> None:
        for info in self._zip.infolist():
            name = _checked_name(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ArchiveError(info.filename, "symbolic link in archive")
            if info.is_dir() or not name:
                continue
            if info.flag_bits & 0x1:
                raise ArchiveError(info.filename, "encrypted file in archive")
            if info.compress_size and info.file_size / info.compress_size > self.limits.max_ratio:
                raise ArchiveError(
                    info.filename, f"compression ratio over {self.limits.max_ratio:g} (a zip bomb?)"
                )
            if name in self._members:
                raise ArchiveError(info.filename, "file appears twice in the archive")
            self._admit(name, info.file_size)
            self._members[name] = info

    def _stream(self, name: str) -> BinaryIO:
        return self._zip.open(self._members[name])  # type: ignore[return-value]

    def read_bytes(self, name: str) -> bytes:
        try:
            return super().read_bytes(name)
        except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error) as exc:
            raise ArchiveError(name, f"damaged in the zip ({exc or 'truncated'})") from None
        except (OSError, NotImplementedError) as exc:
            raise ArchiveError(name, f"cannot be read from the zip ({exc})") from None

    def close(self) -> None:
        self._zip.close()


class FolderArchive(SlackArchive):
    def __init__(self, root: Path, limits: ArchiveLimits) -> None:
        super().__init__(limits)
        self._root = root.resolve()
        for dirpath, dirnames, filenames in os.walk(self._root, followlinks=False):
            for entry in sorted([*dirnames, *filenames]):
                full = Path(dirpath, entry)
                relative = full.relative_to(self._root).as_posix()
                if full.is_symlink():
                    raise ArchiveError(relative, "symbolic link in export folder")
                if entry in filenames:
                    self._admit(_checked_name(relative), full.stat().st_size)

    def _stream(self, name: str) -> BinaryIO:
        return (self._root / name).open("rb")


def iter_day_messages(
    archive: SlackArchive, days: list[DayFile]
) -> Iterator[tuple[DayFile, list[dict[str, Any]]]]:
    for day in days:
        yield day, archive.messages(day)

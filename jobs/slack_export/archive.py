"""A Slack export, zipped or unpacked, read safely: names, sizes and counts are checked
before anything is parsed, and each JSON file is read on its own, so memory follows the
largest file, not the archive.

Refused: `../` and absolute names, symlinks, more files or bytes than the limits, a
compression ratio past the limit (zip bombs), text that is not UTF-8, malformed JSON.
Every refusal is an ArchiveError naming the file and the problem. Reading goes through
the transfer store's breaker (jobs.slack_export.storage): a store that fails is not the
archive's fault, and raises StorageFailure (the job pauses) rather than an ArchiveError.
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

from jobs.slack_export.storage import StorageFailure, is_store_failure, on_store

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
        with on_store():
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
        with on_store(frequent=True), self._stream(name) as stream:
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


# A central directory record: 46 fixed bytes (zipfile.structCentralDir), then the name,
# extra field and comment whose lengths sit at offsets 28, 30 and 32.
_CD_RECORD = struct.Struct("<4s4B4HL2L5H2L")
_CD_SIGNATURE = b"PK\x01\x02"
# A Slack export's names are short (`folder/YYYY-MM-DD.json`, channel names of at most 80
# characters); 1 KiB per record for name, extra field and comment is far past any of them.
_MAX_CD_RECORD_BYTES = _CD_RECORD.size + 1024


def check_central_directory(path: Path, max_files: int) -> None:
    """Refuses a zip whose central directory holds more than twice `max_files` records (every
    file may come with its folder's entry), before zipfile reads it: zipfile loads all of
    the directory's bytes and builds a ZipInfo per record.

    The end record's entry count alone can lie, so the records are also counted by walking
    their fixed headers, stopping one past the limit, and the directory's size is bounded:
    memory and time follow the limit, not the upload. Where the directory is found follows
    zipfile's own reading of the end records, so both look at the same bytes. A zip with no
    readable end record passes here; zipfile then says what is wrong."""
    max_entries = 2 * max_files
    too_many = f"archive has more than {max_files} files"
    with path.open("rb") as handle:
        try:
            # zipfile's reading of the end record (and its zip64 record); private but
            # unchanged since zip64 support, and the only way to agree with it exactly.
            end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
        except OSError as exc:  # too short to seek back from its end: zipfile says what is wrong
            if is_store_failure(exc):
                raise
            return
        if not end:
            return
        entries = end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
        if entries > max_entries:
            raise ArchiveError("", f"{too_many} ({entries} entries)")
        size = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
        if size > max_entries * _MAX_CD_RECORD_BYTES:
            raise ArchiveError("", f"{too_many} (a {size} byte central directory)")
        start = end[zipfile._ECD_LOCATION] - size  # type: ignore[attr-defined]
        if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
            start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
        if start < 0:
            return
        handle.seek(start)
        walked = records = 0
        while walked < size:  # the same walk as zipfile's, over the headers only
            header = handle.read(_CD_RECORD.size)
            if len(header) < _CD_RECORD.size or header[:4] != _CD_SIGNATURE:
                return  # damaged: zipfile refuses it at this record
            records += 1
            if records > max_entries:
                raise ArchiveError("", f"{too_many} (over {max_entries} central directory records)")
            variable = sum(struct.unpack_from("<3H", header, 28))
            handle.seek(variable, os.SEEK_CUR)
            walked += _CD_RECORD.size + variable


class ZipArchive(SlackArchive):
    def __init__(self, path: Path, limits: ArchiveLimits) -> None:
        super().__init__(limits)
        check_central_directory(path, limits.max_files)
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise ArchiveError(path.name, f"not a zip archive or truncated ({exc})") from None
        except OSError as exc:
            if is_store_failure(exc):
                raise
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
        except StorageFailure:
            raise
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

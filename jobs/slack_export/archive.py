"""A Slack export, zipped or unpacked, read safely: names, sizes and counts are checked
before anything is parsed, and each JSON file's array is parsed item by item as it is
read (ijson), so memory follows the largest item, not the file or the archive. (Parsed
whole, a file took about 24 times its size in objects: 6 GB for a 256 MiB users.json.)

Refused: `../` and absolute names, symlinks, more files or bytes than the limits, a
compression ratio past the limit (zip bombs), text that is not UTF-8, malformed JSON.
Every refusal is an ArchiveError naming the file and the problem. Reading goes through
the transfer store's breaker (jobs.slack_export.storage): a store that fails is not the
archive's fault, and raises StorageFailure (the job pauses) rather than an ArchiveError.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import ijson
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

    @contextlib.contextmanager
    def reading(self, name: str) -> Iterator[None]:
        """Around every open, read and close of a file: a store failure comes out as
        StorageFailure (through the store's breaker); the format's own failures, as
        ArchiveError."""
        with on_store(frequent=True):
            yield

    def require(self, name: str) -> None:
        if not self.has(name):
            raise ArchiveError(name, "missing from the archive (not a Slack export?)")

    def read_list(self, name: str, *, required: bool = False) -> Iterator[dict[str, Any]]:
        """The objects of a top-level file that must be a JSON array of objects, as they are
        read; none when absent and optional."""
        if required:
            self.require(name)
        return (
            self.objects(name, lambda index: "expected a JSON array of objects")
            if self.has(name)
            else iter(())
        )

    def day_files(self) -> list[DayFile]:
        """Every `folder/YYYY-MM-DD.json`, by folder then date (day files sort by name)."""
        found = []
        for name in self.files:
            folder, _, base = name.rpartition("/")
            if folder and "/" not in folder and _DAY_FILE.match(base):
                found.append(DayFile(folder, base))
        return sorted(found, key=lambda day: (day.folder, day.name))

    def messages(self, day: DayFile) -> Iterator[dict[str, Any]]:
        return self.objects(day.path, lambda index: f"item {index} is not a JSON object")

    def objects(self, name: str, not_an_object: Callable[[int], str]) -> Iterator[dict[str, Any]]:
        """The items of the JSON array in `name`, parsed one at a time as the file is read.
        A problem found partway raises ArchiveError there, after the items before it: the
        import checks every file before it writes anything."""
        reader = _CheckedReader(self, name)
        try:
            if reader.first_byte() != b"[":
                raise ArchiveError(name, "expected a JSON array")
            for index, item in enumerate(ijson.items(reader, "item", use_float=True)):
                if not isinstance(item, dict):
                    raise ArchiveError(name, not_an_object(index))
                yield item
        except ijson.JSONError as exc:
            raise ArchiveError(name, f"malformed JSON: {exc}") from None
        finally:
            reader.close()


class _CheckedReader:
    """One archive file's bytes as the parser reads them: every read a step on the store
    (through its breaker), never past the file's declared size, checked to be UTF-8 on the
    way (a byte order mark is skipped)."""

    def __init__(self, archive: SlackArchive, name: str) -> None:
        self.name = name
        self.most = min(archive.files[name], archive.limits.max_file_bytes)
        self.total = 0  # bytes read so far
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.peeked = b""
        self.reading = archive.reading
        with self.reading(name):
            self.stream = archive._stream(name)

    def first_byte(self) -> bytes:
        """The first byte that is not white space (b"" for an empty file); read() returns it again."""
        while True:
            chunk = self._read(_READ_CHUNK)
            if self.total == len(chunk) and chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8) :]
            stripped = chunk.lstrip()
            if stripped or not chunk:
                self.peeked = stripped
                return stripped[:1]

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson asks for nothing first, to see whether the file gives bytes
            return b""
        if self.peeked:
            chunk, self.peeked = self.peeked, b""
            return chunk
        return self._read(size if size > 0 else _READ_CHUNK)

    def _read(self, size: int) -> bytes:
        with self.reading(self.name):
            chunk = self.stream.read(size)
        start, self.total = self.total, self.total + len(chunk)
        if self.total > self.most:
            raise ArchiveError(self.name, "file is larger than its declared size")
        pending = self.utf8.getstate()[0]
        try:
            self.utf8.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            seen = pending + chunk
            offset = start - len(pending) + exc.start
            raise ArchiveError(
                self.name, f"not UTF-8 text (byte 0x{seen[exc.start]:02x} at offset {offset})"
            ) from None
        return chunk

    def close(self) -> None:
        with self.reading(self.name):
            self.stream.close()


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

    @contextlib.contextmanager
    def reading(self, name: str) -> Iterator[None]:
        try:
            with super().reading(name):
                yield
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

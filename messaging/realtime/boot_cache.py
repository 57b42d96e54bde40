"""The team-wide parts of a boot, built once per boot_version and shared by every member.

Two parts, each keyed by (team, boot_version), which every event that changes them bumps:
`people` (every member, as a pre-compressed JSON prefix) that only full boots need, and
`rooms` (bots, emoji, public channels) that every boot needs. A part lives in this
process's memory and in Redis for the other processes. After an event, one process
builds it while the others wait briefly for its result, so a wave of boots after a
change costs one build, not one per boot.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from django.core.cache import cache

from messaging.models import CustomEmoji
from messaging.realtime import boot_sql
from messaging.realtime.deflate import CompressedPrefix
from teams.models import Bot
from teams.shapes import bot_json

T = TypeVar("T")

# A stale version is never read. Building a version drops the one before it from Redis;
# the expiry bounds what is left when versions were skipped (a busy big team's people
# part is ~1 MB per version). It is also the oldest a part gets anywhere: tz_offset
# follows daylight saving, which bumps no version.
BOOT_CACHE_SECS = 600
BUILD_LOCK_SECS = 30  # a builder that died frees the claim after this
BUILD_WAIT_SECS = 5.0  # a boot waits this long for another process's build, then builds itself
BUILD_POLL_SECS = 0.02
# Parts kept in this process, by size: a big team's people part is ~1 MB compressed and
# ~8 MB decoded, a small team's parts a few KB, so a count of entries bounds neither.
LOCAL_BYTES = 64 * 1024 * 1024
ENTRY_OVERHEAD = 120  # bytes of the Python objects around each string kept (tuple, int, str)

# In every key: processes of two releases share Redis during a deploy, and one must not
# read the other's parts. Change it whenever what a part holds (or how) changes.
SCHEMA = "s2"  # s2: (build time, part) pairs; public channels without num_members

# Everything in a full boot before the per-caller part: the rest follows a comma.
PEOPLE_HEAD = b'{"ok":true,"users":['
PEOPLE_TAIL = b"],"


@dataclass
class Rooms:
    bots: str  # JSON array
    emoji: str  # JSON object
    # Public channels in id order: (id, JSON object without its closing brace), so each
    # caller's is_member / last_read / unread counts are appended without decoding.
    channels: list[tuple[int, str]]


def part_bytes(part: object) -> int:
    """About what a part holds in memory: a people part counts decoded as well as
    compressed, since a client without gzip makes this process decode it."""
    if isinstance(part, CompressedPrefix):
        return len(part.deflated) + part.size + ENTRY_OVERHEAD
    if isinstance(part, Rooms):
        channels = sum(len(text) + ENTRY_OVERHEAD for _, text in part.channels)
        return len(part.bots) + len(part.emoji) + channels + ENTRY_OVERHEAD
    return sys.getsizeof(part) + ENTRY_OVERHEAD


@dataclass(frozen=True)
class _Entry:
    built_at: float  # time.time(), not monotonic: a part built in another process keeps its time
    size: int
    part: object


class _LocalParts:
    """The parts kept in this process, least recently used first, at most LOCAL_BYTES."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key: str) -> object | None:
        """The part kept here, unless it is older than BOOT_CACHE_SECS: a version can live
        long in a quiet team, but what it holds also depends on the time (the people's
        tz_offset moves with daylight saving), so it is built again now and then, as
        Redis expires it."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                return None
            if time.time() - entry.built_at > BOOT_CACHE_SECS:
                self._drop(key)
                return None
            self.entries.move_to_end(key)
            return entry.part

    def put(self, key: str, built_at: float, part: object) -> None:
        with self.lock:
            if key in self.entries:
                self._drop(key)
            entry = _Entry(built_at, part_bytes(part), part)
            self.entries[key] = entry
            self.bytes += entry.size
            # The newest stays even when larger than the bound: a team that big still
            # builds once per version, not once per boot.
            while self.bytes > LOCAL_BYTES and len(self.entries) > 1:
                self._drop(next(iter(self.entries)))

    def _drop(self, key: str) -> None:
        self.bytes -= self.entries.pop(key).size


_compressor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="boot-compress")
_local = _LocalParts()
_local_lock = threading.Lock()  # guards _build_locks
_build_locks: dict[str, threading.Lock] = {}


def people(team_id: int, team_slack_id: str, version: int) -> CompressedPrefix:
    """`{"ok":true,"users":[...],` for the whole team, compressed once."""

    def build() -> CompressedPrefix:
        users = boot_sql.users_json(team_id, team_slack_id)
        # zlib lets go of the GIL: compress on a worker while this thread reads the rooms.
        compressed = _compressor.submit(CompressedPrefix.of, PEOPLE_HEAD + users + PEOPLE_TAIL)
        rooms(team_id, team_slack_id, version)
        return compressed.result()

    return _versioned(team_id, version, "people", build)


def rooms(team_id: int, team_slack_id: str, version: int) -> Rooms:
    def build() -> Rooms:
        bots = [bot_json(b, team_slack_id) for b in Bot.objects.filter(team_id=team_id).order_by("id")]
        emoji = {
            e.name: e.url or f"alias:{e.alias_for}"
            for e in CustomEmoji.objects.filter(team_id=team_id).order_by("name")
        }
        channels = [(cid, text[:-1]) for cid, text in boot_sql.public_channels_json(team_id)]
        return Rooms(json.dumps(bots), json.dumps(emoji), channels)

    return _versioned(team_id, version, "rooms", build)


def _key(team_id: int, version: int, part: str) -> str:
    return f"boot:{SCHEMA}:{team_id}:{version}:{part}"


def _newest_key(team_id: int, part: str) -> str:
    """The newest version of a part stored in Redis (versions below it were dropped)."""
    return f"boot:{SCHEMA}:{team_id}:newest:{part}"


class _Found(NamedTuple):
    built_at: float
    part: object
    keep: bool = True  # False: built for one straggling boot, kept nowhere


def _versioned(team_id: int, version: int, part: str, build: Callable[[], T]) -> T:
    """A part of the team's boot at `version`; storing it drops the version before."""
    return _shared(
        _key(team_id, version, part),
        build,
        _key(team_id, version - 1, part),
        newest=(_newest_key(team_id, part), version),
    )


def _shared(
    key: str,
    build: Callable[[], T],
    previous: str | None = None,
    newest: tuple[str, int] | None = None,
) -> T:
    """This process's copy, else Redis's, else built once (module doc). Storing it in
    Redis drops `previous`; `newest` is (the key of the newest version stored, this one)."""
    found = _local.get(key)
    if found is not None:
        return found  # type: ignore[return-value]
    with _local_lock:
        lock = _build_locks.setdefault(key, threading.Lock())
    try:
        with lock:  # threads of this process wait for one build
            found = _local.get(key)
            if found is None:
                built_at, found, keep = _from_redis_or_build(key, build, previous, newest)
                if keep:
                    _local.put(key, built_at, found)
    finally:
        with _local_lock:
            # Only our own: once the first holder has removed it, a later boot may have
            # put a new lock there, which the threads still queued on ours must leave.
            if _build_locks.get(key) is lock:
                del _build_locks[key]
    return found  # type: ignore[return-value]


def _from_redis_or_build(
    key: str, build: Callable[[], T], previous: str | None, newest: tuple[str, int] | None = None
) -> _Found:
    """(when it was built, the part), from Redis or built here; Redis keeps the pair."""
    found = cache.get(key)
    if found is not None:
        return _Found(*found)
    if newest is not None and (cache.get(newest[0]) or 0) > newest[1]:
        # A boot whose snapshot predates a newer build: its version was dropped on purpose.
        # Built for this boot alone; stored back, it would sit in Redis for nothing.
        return _Found(time.time(), build(), keep=False)
    claim = f"{key}:building"
    # None when Redis is unreachable (the cache ignores its errors): build without waiting.
    claimed = cache.add(claim, 1, BUILD_LOCK_SECS)
    if claimed is False:  # another process is building it: wait for its result
        deadline = time.monotonic() + BUILD_WAIT_SECS
        while time.monotonic() < deadline:
            time.sleep(BUILD_POLL_SECS)
            found = cache.get(key)
            if found is not None:
                return _Found(*found)
            if cache.get(claim) is None:
                # The builder failed and freed its claim: one waiter takes over at once,
                # the others go on waiting for its result.
                claimed = cache.add(claim, 1, BUILD_LOCK_SECS)
                if claimed is not False:
                    break
        if claimed:
            found = cache.get(key)  # it may have been stored between our two reads
            if found is not None:
                cache.delete(claim)
                return _Found(*found)
    try:
        built = (time.time(), build())
        cache.set(key, built, BOOT_CACHE_SECS)
        if newest is not None and (cache.get(newest[0]) or 0) < newest[1]:
            cache.set(newest[0], newest[1], BOOT_CACHE_SECS)
        if previous:
            cache.delete(previous)
    finally:
        if claimed:  # a failed build frees the claim too: the next boot builds at once
            cache.delete(claim)
    return _Found(*built)

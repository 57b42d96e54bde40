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
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

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
LOCAL_ENTRIES = 8  # parts kept in this process (a big team's people part is ~8 MB decoded)

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


_compressor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="boot-compress")
# key -> (when it was built, by time.time() since processes share it, the part)
_local: OrderedDict[str, tuple[float, object]] = OrderedDict()
_local_lock = threading.Lock()
_build_locks: dict[str, threading.Lock] = {}


def people(team_id: int, team_slack_id: str, version: int) -> CompressedPrefix:
    """`{"ok":true,"users":[...],` for the whole team, compressed once."""

    def build() -> CompressedPrefix:
        users = boot_sql.users_json(team_id, team_slack_id)
        # zlib lets go of the GIL: compress on a worker while this thread reads the rooms.
        compressed = _compressor.submit(CompressedPrefix.of, PEOPLE_HEAD + users + PEOPLE_TAIL)
        rooms(team_id, team_slack_id, version)
        return compressed.result()

    return _shared(_key(team_id, version, "people"), build, _key(team_id, version - 1, "people"))


def rooms(team_id: int, team_slack_id: str, version: int) -> Rooms:
    def build() -> Rooms:
        bots = [bot_json(b, team_slack_id) for b in Bot.objects.filter(team_id=team_id).order_by("id")]
        emoji = {
            e.name: e.url or f"alias:{e.alias_for}"
            for e in CustomEmoji.objects.filter(team_id=team_id).order_by("name")
        }
        channels = [(cid, text[:-1]) for cid, text in boot_sql.public_channels_json(team_id)]
        return Rooms(json.dumps(bots), json.dumps(emoji), channels)

    return _shared(_key(team_id, version, "rooms"), build, _key(team_id, version - 1, "rooms"))


def _key(team_id: int, version: int, part: str) -> str:
    return f"boot:{team_id}:{version}:{part}"


def _shared(key: str, build: Callable[[], T], previous: str | None = None) -> T:
    found = _local_get(key)
    if found is not None:
        return found  # type: ignore[return-value]
    with _local_lock:
        lock = _build_locks.setdefault(key, threading.Lock())
    with lock:  # threads of this process wait for one build
        found = _local_get(key)
        if found is None:
            built_at, found = _from_redis_or_build(key, build, previous)
            with _local_lock:
                _local[key] = (built_at, found)
                while len(_local) > LOCAL_ENTRIES:
                    _local.popitem(last=False)
    with _local_lock:
        _build_locks.pop(key, None)
    return found  # type: ignore[return-value]


def _local_get(key: str) -> object | None:
    """The part kept here, unless it is older than BOOT_CACHE_SECS: a version can live long
    in a quiet team, but what it holds also depends on the time (the people's tz_offset
    moves with daylight saving), so it is built again now and then, as Redis expires it."""
    with _local_lock:
        entry = _local.get(key)
        if entry is None:
            return None
        built_at, found = entry
        if time.time() - built_at > BOOT_CACHE_SECS:
            del _local[key]
            return None
        _local.move_to_end(key)
        return found


def _from_redis_or_build(key: str, build: Callable[[], T], previous: str | None) -> tuple[float, T]:
    """(when it was built, the part), from Redis or built here; Redis keeps the pair."""
    found = cache.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    claim = f"{key}:building"
    # None when Redis is unreachable (the cache ignores its errors): build without waiting.
    claimed = cache.add(claim, 1, BUILD_LOCK_SECS)
    if claimed is False:  # another process is building it: wait for its result
        deadline = time.monotonic() + BUILD_WAIT_SECS
        while time.monotonic() < deadline:
            time.sleep(BUILD_POLL_SECS)
            found = cache.get(key)
            if found is not None:
                return found  # type: ignore[no-any-return]
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
                return found  # type: ignore[no-any-return]
    try:
        built = (time.time(), build())
        cache.set(key, built, BOOT_CACHE_SECS)
        if previous:
            cache.delete(previous)
    finally:
        if claimed:  # a failed build frees the claim too: the next boot builds at once
            cache.delete(claim)
    return built

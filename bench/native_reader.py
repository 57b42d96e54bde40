"""The receivers' native mode: bench/native_reader.c, built with the machine's C compiler
and called through ctypes, reads a process's sockets for the length of a phase.

Python's own loop costs several microseconds per socket wakeup; at 100 posts/s to 1,000
sockets the receivers then took as much CPU as both daphnes together (bench/fanout.py:
69% of a core against 82%), on the cores the servers run on. The C loop leaves the
client only the kernel's share. Each socket's transport is paused while C reads it and
resumed, with the bytes C did not parse, when the phase is collected; frames C does not
count (anything but a message) are handed to Python then, with their event ids already
checked.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import stat
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("native_reader.c")
OTHERS_BYTES = 16 << 20  # non-message frames kept for Python; more are counted as dropped
PAUSE_US = 500  # after each round of ready sockets (see native_reader.c)
BUILD_FLAGS = ("-O2", "-shared", "-fPIC")


class NativeUnavailable(Exception):
    """No C compiler, or the build failed: the receivers read in Python instead."""


@cache
def library() -> ctypes.CDLL:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise NativeUnavailable("no C compiler on this machine")
    lib = ctypes.CDLL(str(_built(compiler)))
    ll, i, p = ctypes.c_longlong, ctypes.c_int, ctypes.c_char_p
    lib.nr_start.argtypes = [i, ctypes.POINTER(i), p, ctypes.POINTER(ll), p, i, ll, ll, ctypes.c_long]
    lib.nr_prefill.argtypes = [i, p, ll]
    lib.nr_totals.argtypes = [i]
    lib.nr_totals.restype = ll
    lib.nr_socket.argtypes = [i, i]
    lib.nr_socket.restype = ll
    lib.nr_done_at.argtypes = [i]
    lib.nr_done_at.restype = ctypes.c_double
    lib.nr_leftover.argtypes = [i, ctypes.c_void_p]
    lib.nr_hist.argtypes = [ctypes.POINTER(ll)]
    lib.nr_others.argtypes = [ctypes.c_void_p]
    lib.nr_others.restype = ll
    lib.nr_others_len.restype = ll
    return lib


def _built(compiler: str) -> Path:
    """The library of SOURCE's present text, built once for every receiver process (and
    run) of this user: named by a hash of what goes into it, so an edit builds anew. Each
    build writes a file of its own, renamed into place whole: processes building at once
    all load a complete library, whichever rename came last."""
    recipe = "\0".join([compiler, *BUILD_FLAGS]).encode() + b"\0" + SOURCE.read_bytes()
    built = _build_dir() / f"native_reader-{hashlib.sha256(recipe).hexdigest()[:16]}.so"
    if built.exists():
        return built
    fd, partial = tempfile.mkstemp(dir=built.parent, prefix=f"{built.stem}.", suffix=".partial")
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, *BUILD_FLAGS, "-o", partial, str(SOURCE)], capture_output=True, text=True
        )
        if result.returncode:
            raise NativeUnavailable(f"building {SOURCE.name} failed: {result.stderr.strip()[:500]}")
        os.replace(partial, built)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return built


def _build_dir() -> Path:
    """This user's own directory under the system's temporary one. Only theirs: a library
    loaded from where others may write would run their code."""
    directory = Path(tempfile.gettempdir()) / f"chat-native-reader-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise NativeUnavailable(f"{directory} is not this user's own directory")
    return directory


HANDED_BACK = {1: "a frame other than text or ping", 2: "end of stream", 3: "receive error", 4: "no memory"}


@dataclass
class SocketOutcome:
    cursor: int
    got: int
    done_at: float | None
    leftover: bytes  # read by C, not parsed: Python's protocol takes it first
    handed_back: str  # why C stopped reading it before the phase ended ("" if it did not)


@dataclass
class PhaseOutcome:
    delivered: int
    dupes: int
    frames: int
    dropped_others: int
    hist: dict[int, int]
    sockets: list[SocketOutcome]
    # (socket's position, frame, when it came): frames C kept for Python
    others: list[tuple[int, bytes, float]] = field(default_factory=list)


class NativeReader:
    """Reads the given sockets (file descriptors, non-blocking, upgraded) in a C loop."""

    def __init__(self) -> None:
        self.lib = library()
        self.count = 0

    def start(
        self,
        fds: list[int],
        sampled: list[bool],
        cursors: list[int],
        prefill: list[bytes],
        marker: bytes,
        want: int,
    ) -> None:
        self.count = len(fds)
        status = self.lib.nr_start(
            self.count,
            (ctypes.c_int * self.count)(*fds),
            bytes(1 if s else 0 for s in sampled),
            (ctypes.c_longlong * self.count)(*cursors),
            marker,
            len(marker),
            want,
            OTHERS_BYTES,
            PAUSE_US,
        )
        if status:
            raise OSError(-status, "native reader could not start")
        for index, data in enumerate(prefill):
            if data:
                self.lib.nr_prefill(index, data, len(data))

    def run(self) -> int:
        """Blocks (GIL released) until stop(); run it in a thread."""
        return int(self.lib.nr_run())

    def stop(self) -> None:
        self.lib.nr_stop()

    def progress(self) -> dict[str, int]:
        totals = self.lib.nr_totals
        return {"delivered": totals(0), "frames": totals(2), "complete": totals(3)}

    def outcome(self) -> PhaseOutcome:
        """What the phase counted; call it after run() has returned."""
        lib = self.lib
        hist = (ctypes.c_longlong * lib.nr_hist_keys())()  # as many as C keeps
        lib.nr_hist(hist)
        sockets = []
        for index in range(self.count):
            size = lib.nr_socket(index, 3)
            leftover = ctypes.create_string_buffer(size)
            if size:
                lib.nr_leftover(index, leftover)
            done_at = lib.nr_done_at(index)
            sockets.append(
                SocketOutcome(
                    cursor=lib.nr_socket(index, 0),
                    got=lib.nr_socket(index, 1),
                    done_at=done_at or None,
                    leftover=leftover.raw,
                    handed_back=HANDED_BACK.get(lib.nr_socket(index, 2), ""),
                )
            )
        raw = ctypes.create_string_buffer(lib.nr_others_len())
        lib.nr_others(raw)
        return PhaseOutcome(
            delivered=lib.nr_totals(0),
            dupes=lib.nr_totals(1),
            frames=lib.nr_totals(2),
            dropped_others=lib.nr_totals(4),
            hist={key: n for key, n in enumerate(hist) if n},
            sockets=sockets,
            others=_records(raw.raw),
        )


def _records(raw: bytes) -> list[tuple[int, bytes, float]]:
    """native_reader.c's kept frames: (double received at, int32 index, int32 length, bytes)."""
    records, at = [], 0
    while at < len(raw):
        received_at, index, length = struct.unpack_from("=dii", raw, at)
        records.append((index, raw[at + 16 : at + 16 + length], received_at))
        at += 16 + length
    return records


def socket_fd(transport: Any) -> int:
    return int(transport.get_extra_info("socket").fileno())

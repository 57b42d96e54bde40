"""gzip bodies made of a cached, pre-compressed prefix and a freshly compressed suffix.

A deflate stream may be cut after a full flush: what follows can come from a new
compressor, since it never refers back across the cut. So the team-wide part of a boot
is compressed once, and each caller's part is compressed alone and appended; the gzip
trailer's CRC-32 continues from the prefix's, and its size adds the prefix's.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

# Fixed header: deflate, no name, no mtime (the same bytes for everyone), unknown OS.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
PREFIX_LEVEL = 3  # the last fast level: hidden behind the rooms query; 6 costs 2x the CPU for 10% less
SUFFIX_LEVEL = 1  # compressed on every call: the fastest level (boot JSON still shrinks ~10x)
RAW_DEFLATE = -15  # window bits: no zlib header, the gzip header is our own


@dataclass
class CompressedPrefix:
    deflated: bytes  # non-final deflate blocks, ending in a full flush
    crc: int
    size: int
    _raw: bytes | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, data: bytes, level: int = PREFIX_LEVEL) -> CompressedPrefix:
        compressor = zlib.compressobj(level, zlib.DEFLATED, RAW_DEFLATE)
        deflated = compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)
        return cls(deflated, zlib.crc32(data), len(data), data)

    def raw(self) -> bytes:
        """The uncompressed bytes (for clients that do not accept gzip), decoded once."""
        if self._raw is None:
            self._raw = zlib.decompressobj(RAW_DEFLATE).decompress(self.deflated)
        return self._raw

    def __getstate__(self) -> dict[str, object]:
        # Shared through Redis compressed only; each process decodes it when it needs to.
        return {"deflated": self.deflated, "crc": self.crc, "size": self.size, "_raw": None}


def gzip_body(prefix: CompressedPrefix | None, suffix: bytes) -> bytes:
    """One gzip member: `prefix` (already compressed) followed by `suffix`."""
    compressor = zlib.compressobj(SUFFIX_LEVEL, zlib.DEFLATED, RAW_DEFLATE)
    tail = compressor.compress(suffix) + compressor.flush()
    crc = zlib.crc32(suffix, prefix.crc if prefix else 0)
    size = (prefix.size if prefix else 0) + len(suffix)
    head = prefix.deflated if prefix else b""
    return b"".join((GZIP_HEADER, head, tail, struct.pack("<II", crc, size & 0xFFFFFFFF)))


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (RFC 9110 12.5.3): every entry is
    read, gzip (or its alias x-gzip) named outright rules over `*`, and q=0 refuses,
    whichever parameter it follows."""
    qualities: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        name, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    pass  # a malformed weight is ignored, as if absent
        if name and name not in qualities:  # the first mention counts
            qualities[name] = quality
    for name in ("gzip", "x-gzip", "*"):
        if name in qualities:
            return qualities[name] > 0
    return False

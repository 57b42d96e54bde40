"""A minimal websocket client for the realtime benches: cheap enough per frame that the
client is not what a fan-out of ~100,000 frames/s on a small machine measures.

An asyncio Protocol: the opening handshake, then unmasked server frames parsed straight
from the receive buffer and handed to a callback as bytes (no per-frame task, queue or
copy beyond the payload slice); pings answered, close answered. It speaks only what
daphne sends (no extensions, no fragmentation beyond reassembly), to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeError(Exception):
    """The server answered the upgrade with something other than 101."""


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (clients must mask); payloads here are short."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload))
    else:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, len(payload))
    return header + mask + masked


class LightWebsocket(asyncio.Protocol):
    """One client socket. `on_message(payload)` is called for each text/binary message."""

    def __init__(self, on_message: Callable[[bytes], None] | None = None) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.first: asyncio.Queue[bytes] | None = asyncio.Queue()  # until a callback is set
        self.fragments: list[bytes] = []
        self.sent_close = False

    @classmethod
    async def connect(cls, url: str, timeout: float) -> LightWebsocket:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        protocol = cls()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

        async def open_() -> None:
            await loop.create_connection(lambda: protocol, parts.hostname, parts.port or 80)
            assert protocol.transport is not None
            protocol.transport.write(request)
            await protocol.handshake

        try:
            await asyncio.wait_for(open_(), timeout)
        except BaseException:
            protocol.abort()
            raise
        return protocol

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("closed during the handshake"))
        if self.close_code is None:
            self.close_code = 1006
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if b" 101 " not in status_line:
                if not self.handshake.done():
                    self.handshake.set_exception(HandshakeError(status_line.decode(errors="replace")))
                self.abort()
                return
            self.upgraded = True
            self.handshake.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        at, size = 0, len(buffer)
        while size - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if size - at < 4:
                    break
                length = (buffer[at + 2] << 8) | buffer[at + 3]
                head = 4
            elif length == 127:
                if size - at < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, at + 2)
                head = 10
            if size - at < head + length:
                break
            payload = bytes(buffer[at + head : at + head + length])
            at += head + length
            self._frame(first & 0x80, first & 0x0F, payload)
        if at:
            del buffer[:at]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            if not fin:
                self.fragments.append(payload)
                return
            if self.fragments:
                payload = b"".join([*self.fragments, payload])
                self.fragments = []
            if self.on_message is not None:
                self.on_message(payload)
            elif self.first is not None:
                self.first.put_nowait(payload)
        elif opcode == OP_PING:
            self._send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self.sent_close:
                self._send(OP_CLOSE, payload[:2])
                self.sent_close = True
            if self.transport is not None:
                self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_client_frame(opcode, payload))

    # --- for the bench -----------------------------------------------------------------

    async def recv(self, timeout: float) -> bytes:
        """The next message, before a callback is set (e.g. the first frame, hello)."""
        assert self.first is not None
        getter = asyncio.ensure_future(self.first.get())
        done, _ = await asyncio.wait(
            [getter, self.closed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self.closed.done():
            raise ConnectionError(f"closed ({self.close_code}) before a message came")
        raise TimeoutError("no message in time")

    async def send(self, text: str) -> None:
        """One text frame from the client (masked, as a client's must be)."""
        self._send(OP_TEXT, text.encode())

    def deliver_to(self, on_message: Callable[[bytes], None]) -> None:
        """From now on messages go to `on_message` (queued ones first)."""
        self.on_message = on_message
        queued, self.first = self.first, None
        while queued is not None and not queued.empty():
            on_message(queued.get_nowait())

    async def close(self, timeout: float = 2.0) -> None:
        if not self.sent_close and not self.closed.done():
            self.sent_close = True
            self._send(OP_CLOSE, struct.pack("!H", 1000))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

"""Frames written straight to daphne's websocket protocol, encoded once for every socket.

Server-to-client websocket frames are not masked, so one event's frame is the same bytes
on every socket: autobahn's PreparedMessage frames it once, and each socket's write is a
plain transport write. Under daphne, the ASGI `send` a consumer gets is
`functools.partial(server.handle_reply, protocol)`, which is how the protocol is found;
anywhere else (another ASGI server, Channels' test communicator) frames go through the
ordinary `send`, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Coroutine, Iterator
from typing import Any

from autobahn.twisted import websocket as autobahn_twisted
from autobahn.websocket import protocol as autobahn_protocol
from autobahn.websocket.protocol import PreparedMessage


def _not_formatted(*args: Any, **kwargs: Any) -> str:
    return "<not formatted>"


# autobahn formats arguments of its debug log lines whether or not debug is logged: every new
# connection's options (pprint: about half a millisecond per socket, a second in a reconnect
# storm) and, per connection and per send, colored type and value names.
for _module in (autobahn_protocol, autobahn_twisted):
    for _name in ("pformat", "hltype", "hlval"):
        if hasattr(_module, _name):
            setattr(_module, _name, _not_formatted)

MAX_UNSENT_BYTES = 8 * 1024 * 1024  # per socket, held by Twisted for a client not reading

_tasks: set[asyncio.Task[Any]] = set()


def spawn(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run in the background, holding a reference until done (asyncio keeps only weak ones)."""
    task = asyncio.get_running_loop().create_task(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


class Frame:
    """One text frame: its JSON, and its wire bytes once a socket needs them."""

    __slots__ = ("_prepared", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._prepared: PreparedMessage | None = None

    @property
    def prepared(self) -> PreparedMessage:
        if self._prepared is None:
            self._prepared = PreparedMessage(self.text.encode(), False, False, True)
        return self._prepared

    @property
    def wire(self) -> bytes:
        return self.prepared.payloadHybi  # type: ignore[no-any-return]

    @property
    def parts(self) -> list[Frame]:
        """The frames this stands for, one message each (a compressing socket sends them one by one)."""
        return [self]


class FrameRun(Frame):
    """Several frames written as one: the bytes are joined once and shared by every socket
    that is sent the same run (a flush's events, to every socket that may see them all)."""

    __slots__ = ("_joined", "frames")

    def __init__(self, frames: list[Frame]) -> None:
        super().__init__("")
        self.frames = frames
        self._joined: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._joined is None:
            self._joined = b"".join(frame.wire for frame in self.frames)
        return self._joined

    @property
    def parts(self) -> list[Frame]:
        return self.frames


_STATE_OPEN = autobahn_protocol.WebSocketProtocol.STATE_OPEN  # a module constant: read per socket per flush


class Wire:
    """Writes frames to one socket, synchronously when daphne's protocol is at hand."""

    __slots__ = ("_corked", "_fallback", "_protocol", "_send", "_tcp")

    def __init__(self, send: Any, fallback: Any) -> None:
        self._protocol: Any = None
        self._tcp: Any = None
        self._send: Any = None  # the TCP socket's send
        self._corked: list[bytes] | None = None
        self._fallback = fallback  # async (text) -> None: the consumer's ordinary send
        if isinstance(send, functools.partial) and send.args:
            protocol = send.args[0]
            if hasattr(protocol, "sendPreparedMessage") and hasattr(protocol, "STATE_OPEN"):
                self._protocol = protocol
                from twisted.internet import tcp  # daphne's: no reactor is installed by this

                if type(protocol.transport) is tcp.Server:  # plain TCP (TLS wraps it)
                    self._tcp = protocol.transport
                    self._send = protocol.transport.socket.send

    @property
    def open(self) -> bool:
        """Frames written now go straight to the socket (else use the ordinary send)."""
        protocol = self._protocol
        return protocol is not None and protocol.state == protocol.STATE_OPEN

    def write(self, frames: list[Frame]) -> None:
        protocol = self._protocol
        if protocol is None:
            for frame in frames:  # tasks start in order, and each sends before it yields
                for part in frame.parts:
                    spawn(self._fallback(part.text))
            return
        if protocol.state != protocol.STATE_OPEN:
            return  # closing: its disconnect is on the way
        if protocol._perMessageCompress is not None:
            for frame in frames:
                for part in frame.parts:
                    protocol.sendPreparedMessage(part.prepared)
            return
        data = frames[0].wire if len(frames) == 1 else b"".join(f.wire for f in frames)
        if self._corked is not None:
            self._corked.append(data)
        elif self._tcp is None or protocol.send_queue:
            protocol.sendData(data)
        elif self._tcp._tempDataLen + len(self._tcp.dataBuffer) > MAX_UNSENT_BYTES:
            # A client that stopped reading: drop it rather than buffer the team's stream for
            # it without end. It reconnects from its cursor and is replayed what it missed.
            self._tcp.abortConnection()
        else:
            _send_now(self._tcp, data)

    def write_joined(self, data: bytes, frames: list[Frame]) -> None:
        """write(frames), where `data` is their wire bytes joined (a flush's run, shared by
        every socket sent it). The hub calls this for each of its sockets on every flush,
        so the common case (an open plain-TCP socket, not compressing or corked, nothing
        unsent) is checked in one place and sent at once, as write would (see _send_now);
        anything else takes write's way."""
        tcp = self._tcp
        if tcp is not None and self._corked is None:
            protocol = self._protocol
            if (
                protocol.state == _STATE_OPEN
                and protocol._perMessageCompress is None
                and not protocol.send_queue
                and not tcp._tempDataBuffer
                and not tcp.dataBuffer
                and tcp.connected
            ):
                _send_unbuffered(self._send, tcp, data)
                return
        self.write(frames)

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Hold what is written meanwhile and send it as one write at the end (a new socket's
        hello, replay and reconnect_url). Everything written to the socket must go through
        this Wire meanwhile, or order is lost."""
        if self._protocol is None or self._corked is not None:
            yield
            return
        self._corked = []
        try:
            yield
        finally:
            held, self._corked = self._corked, None
            if held:
                self.write([_Raw(b"".join(held))])

    def held(self) -> int:
        """How many writes the cork holds now (0 when not corked)."""
        return len(self._corked) if self._corked is not None else 0

    def drop_held_after(self, kept: int) -> None:
        """Forget what the cork took after its first `kept` writes (it sends the rest)."""
        if self._corked is not None:
            del self._corked[kept:]


class _Raw(Frame):
    """Bytes already framed (what a cork held)."""

    __slots__ = ("_bytes",)

    def __init__(self, data: bytes) -> None:
        super().__init__("")
        self._bytes = data

    @property
    def wire(self) -> bytes:
        return self._bytes


def _send_now(transport: Any, data: bytes) -> None:
    """Send on the socket at once when Twisted holds nothing unsent for it (what its own
    writeSomeData does), instead of buffering: that saves, per write, registering the
    socket with the event loop, a poll round and unregistering it. A partial send or an
    error leaves the rest to transport.write, which also notices a lost connection."""
    if transport._tempDataBuffer or transport.dataBuffer or not transport.connected:
        transport.write(data)
        return
    _send_unbuffered(transport.socket.send, transport, data)


def _send_unbuffered(send: Any, transport: Any, data: bytes) -> None:
    """`send` is the transport's socket's; Twisted holds nothing unsent for it."""
    try:
        sent = send(data)
    except OSError:  # would block, or the connection is going: Twisted finds out which
        sent = 0
    if sent < len(data):
        transport.write(data[sent:])

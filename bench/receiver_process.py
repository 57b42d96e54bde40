"""One RTM receiver process (receiver_main is the entry point bench/receivers.py spawns).

Its sockets are bench/light_ws.py clients (an asyncio Protocol each, on uvloop: frames parsed
from the receive buffer, no per-frame task), many per process, driven over a pipe. With
`sample_every` N, only every Nth socket JSON-parses and times each frame; the others find the
event id and the run's tag in the raw bytes and count, so the client's CPU is not what limits
a fan-out. With `native`, a phase's frames are read by bench/native_reader.c instead (the
same counts and checks, in C), from `phase` until the next command other than `progress`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import random
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import uvloop

from bench.api_client import ApiClient
from bench.light_ws import LightWebsocket
from bench.native_reader import NativeReader, PhaseOutcome, socket_fd
from bench.stats import Hist

SOCKET_OPEN_SECS = 30.0


@dataclass(frozen=True)
class SocketSpec:
    index: int
    token: str
    http: str  # base URL of the daphne this socket boots from and connects to
    connect_args: dict[str, Any] = field(default_factory=dict)  # rtm.connect arguments


def receiver_main(
    pipe: Connection, specs: list[SocketSpec], sample_every: int = 1, native: bool = False
) -> None:
    """Entry point of a receiver process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through the pipe
    try:
        # uvloop: the product's loop, cheaper per read
        uvloop.run(_Receiver(pipe, specs, sample_every, native).serve())
    except Exception:  # the parent reports it
        import traceback

        with contextlib.suppress(OSError):
            pipe.send({"crash": traceback.format_exc()})


class _Socket:
    def __init__(self, spec: SocketSpec, sampled: bool) -> None:
        self.spec = spec
        self.sampled = sampled  # every frame parsed and timed; the others only counted
        self.ws: LightWebsocket | None = None
        self.reader: asyncio.Future[None] | None = None  # done when the socket closes
        self.reconnect_url = ""  # the server's latest reconnect_url frame
        self.cursor = 0  # the highest event_id seen
        self.got = 0  # messages of the current tag
        self.done_at: float | None = None
        self.complete = asyncio.Event()
        self.intentional_close = False
        self.attempts = 0  # rtm.connect + open attempts since the last phase


class _Receiver:
    def __init__(
        self, pipe: Connection, specs: list[SocketSpec], sample_every: int = 1, native: bool = False
    ) -> None:
        self.pipe = pipe
        self.native = NativeReader() if native else None
        self.native_run: asyncio.Future[int] | None = None  # while C reads the sockets below
        self.native_sockets: list[_Socket] = []
        self.native_handed_back: Counter[str] = Counter()  # why C stopped reading a socket early
        self.sockets = [_Socket(s, s.index % sample_every == 0) for s in specs]
        self.http_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="rtm-http")
        self.tag = "\x00"
        self.tag_marker = b"\x00"
        self.want = 0
        self.hist = Hist()
        self.delivered = 0
        self.dupes = 0
        self.frames = 0
        self.presence_frames = 0  # presence_change frames
        self.presence_entries = 0  # (user, state) pairs they carried: one per user listed
        self.retries = 0
        self.reconnect_urls_used = 0
        self.closes: Counter[str] = Counter()
        self.server_errors: Counter[str] = Counter()
        self.error_samples: list[dict[str, Any]] = []  # error frames: code, the socket's cursor, when

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipe") as pipe_reader:
            while True:
                command, args = await loop.run_in_executor(pipe_reader, self.pipe.recv)
                if command == "quit":
                    break
                try:
                    if command != "progress":
                        await self._native_collect()
                    reply = await getattr(self, f"cmd_{command}")(**args)
                except Exception:
                    import traceback

                    reply = {"crash": traceback.format_exc()}
                self.pipe.send(reply)
        await self._native_collect()
        await self._close_all()
        self.http_pool.shutdown(wait=False, cancel_futures=True)

    # --- commands -------------------------------------------------------------------

    async def cmd_connect(self, concurrency: int, attempts: int = 3) -> dict[str, Any]:
        """Boot (rtm.connect) and open every socket, at most `concurrency` at a time; a
        failed attempt is counted and retried after a jittered backoff."""
        gate = asyncio.Semaphore(concurrency)
        times: list[float] = []
        errors: Counter[str] = Counter()
        failed = 0

        async def one(sock: _Socket) -> None:
            nonlocal failed
            async with gate:
                started = time.monotonic()
                if await self._open_retrying(sock, None, started + SOCKET_OPEN_SECS * 4, errors, attempts):
                    times.append(time.monotonic() - started)
                else:
                    failed += 1

        await asyncio.gather(*(one(s) for s in self.sockets))
        return {"times": times, "errors": dict(errors), "failed": failed, "retries": self.retries}

    async def cmd_phase(self, tag: str, want: int) -> dict[str, Any]:
        """Count from now on the messages whose text starts with `tag`; `want` per socket."""
        self.tag = tag + " "
        self.tag_marker = b'"text": "' + self.tag.encode()
        self.want = want
        self.hist = Hist()
        self.delivered = self.dupes = self.retries = self.reconnect_urls_used = 0
        self.presence_frames = self.presence_entries = 0
        self.closes.clear()
        self.native_handed_back.clear()
        self.server_errors.clear()
        self.error_samples.clear()
        for sock in self.sockets:
            sock.attempts = 0
            sock.got = 0
            sock.done_at = None
            sock.complete = asyncio.Event()
        if self.native is not None:
            self._native_start()
        return {}

    async def cmd_progress(self) -> dict[str, Any]:
        native = self.native.progress() if self.native is not None and self.native_run else {}
        return {
            "delivered": self.delivered + native.get("delivered", 0),
            "frames": self.frames + native.get("frames", 0),
            "complete": sum(1 for s in self.sockets if s.got >= self.want) + native.get("complete", 0),
            "presence_frames": self.presence_frames,
            "presence_entries": self.presence_entries,
        }

    async def cmd_collect(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "hist": dict(self.hist.counts),
            "dupes": self.dupes,
            "frames": self.frames,
            "sockets": len(self.sockets),
            "open": sum(1 for s in self.sockets if s.ws is not None and s.reader and not s.reader.done()),
            "complete": sum(1 for s in self.sockets if s.got >= self.want),
            "done_at": [s.done_at for s in self.sockets if s.done_at is not None],
            "cursors": [s.cursor for s in self.sockets],
            "closes": dict(self.closes),
            "server_errors": dict(self.server_errors),
            "error_samples": list(self.error_samples),
            "retries": self.retries,
            "handed_back": dict(self.native_handed_back),
        }

    async def cmd_send(self, frames: dict[int, dict[str, Any]]) -> dict[str, Any]:
        """Send a frame on some sockets (keyed by SocketSpec.index; others are skipped)."""
        sent = 0
        for sock in self.sockets:
            frame = frames.get(sock.spec.index)
            if frame is not None and sock.ws is not None:
                await sock.ws.send(json.dumps(frame))
                sent += 1
        return {"sent": sent}

    async def cmd_forget_reconnect_urls(self) -> dict[str, Any]:
        for sock in self.sockets:
            sock.reconnect_url = ""
        return {}

    async def cmd_drop(self) -> dict[str, Any]:
        """Close every socket from the client side, keeping each one's cursor."""
        await self._close_all()
        return {"cursors": [s.cursor for s in self.sockets]}

    async def cmd_reconnect(self, start_at: float, limit: float) -> dict[str, Any]:
        """At `start_at` (monotonic), every socket boots again with rtm.connect, swaps the
        ticket URL's `since` for its own cursor, opens, and waits for `want` messages.

        As a client would, a failed attempt (or a socket closed before it caught up) is
        retried from the socket's cursor after a jittered exponential backoff; every
        failed attempt is counted as an error."""
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        deadline = start_at + limit
        errors: Counter[str] = Counter()
        opened: list[float] = []

        async def one(sock: _Socket) -> None:
            tries = 0
            while time.monotonic() < deadline:
                tries += 1
                if not await self._open_retrying(sock, sock.cursor, deadline, errors, 1_000_000):
                    break
                if tries == 1:
                    opened.append(time.monotonic() - start_at)
                waiter = asyncio.ensure_future(sock.complete.wait())
                assert sock.reader is not None
                await asyncio.wait(
                    [waiter, sock.reader],
                    timeout=max(0.01, deadline - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                if sock.complete.is_set():
                    break
                if sock.reader.done():  # the server closed it before it caught up
                    errors[f"closed before caught up ({sock.ws.close_code})"] += 1
                    await asyncio.sleep(_backoff(tries))

        await asyncio.gather(*(one(s) for s in self.sockets))
        return {
            "done": [s.done_at - start_at for s in self.sockets if s.done_at is not None],
            "opened": opened,
            "attempts": [s.attempts for s in self.sockets],
            "errors": dict(errors),
            "retries": self.retries,
            "reconnect_urls": self.reconnect_urls_used,
            "dupes": self.dupes,
            "delivered": self.delivered,
            "closes": dict(self.closes),
            "server_errors": dict(self.server_errors),
            "error_samples": list(self.error_samples),
        }

    # --- sockets --------------------------------------------------------------------

    async def _open_retrying(
        self, sock: _Socket, since: int | None, deadline: float, errors: Counter[str], attempts: int
    ) -> bool:
        """_open, retried after a jittered exponential backoff; each failure counted in `errors`."""
        for attempt in range(1, attempts + 1):
            try:
                await self._open(sock, since=since, deadline=deadline)
                return True
            except Exception as exc:
                errors[_describe(exc)] += 1
                pause = _backoff(attempt)
                if attempt == attempts or time.monotonic() + pause > deadline:
                    return False
                await asyncio.sleep(pause)
        return False

    async def _open(self, sock: _Socket, since: int | None, deadline: float) -> None:
        """Boot with rtm.connect (or reuse the server's reconnect_url when reconnecting from a
        cursor), open the socket and wait for hello."""
        loop = asyncio.get_running_loop()
        sock.attempts += 1
        url = ""
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("deadline passed while booting")
            if url:
                pass  # refused before its ticket was redeemed: the same URL again
            elif since is not None and sock.reconnect_url:
                url, sock.reconnect_url = with_since(sock.reconnect_url, since), ""  # one use
                self.reconnect_urls_used += 1
            else:
                status, body, retry_after = await loop.run_in_executor(
                    self.http_pool, _rtm_connect, sock.spec
                )
                if status == 429:
                    self.retries += 1
                    await asyncio.sleep(retry_after or 1.0)
                    continue
                if status != 200 or not body.get("ok"):
                    raise BenchError(f"rtm.connect {status} {body.get('error')}")
                url = body["url"] if since is None else with_since(body["url"], since)
            budget = max(1.0, min(SOCKET_OPEN_SECS, deadline - time.monotonic()))
            ws = await LightWebsocket.connect(url, budget)
            first = json.loads(await ws.recv(budget))
            if first.get("type") == "error" and first.get("error", {}).get("code") == "ratelimited":
                self.retries += 1
                await ws.close()
                await asyncio.sleep(float(first["error"].get("retry_after") or 1) * random.uniform(0.5, 1.0))
                continue
            if first.get("type") != "hello":
                await ws.close()
                raise BenchError(f"first frame {first.get('type')}: {first.get('error')}")
            sock.ws = ws
            sock.intentional_close = False
            sock.reader = ws.closed
            ws.closed.add_done_callback(lambda _, sock=sock, ws=ws: self._closed(sock, ws))
            ws.deliver_to(partial(self._frame if sock.sampled else self._count, sock))
            return

    def _closed(self, sock: _Socket, ws: LightWebsocket) -> None:
        if not sock.intentional_close:
            self.closes[str(ws.close_code)] += 1

    def _count(self, sock: _Socket, raw: bytes) -> None:
        """An unsampled socket: count the tagged messages and check event ids, no JSON parse."""
        if not raw.startswith(b'{"type": "message"'):
            self._frame(sock, raw)  # rare kinds (errors, reconnect_url, ...) are parsed
            return
        self.frames += 1
        at = raw.rfind(b'"event_id": ')
        if at >= 0:
            end = at + 12
            while 48 <= raw[end] <= 57:
                end += 1
            event_id = int(raw[at + 12 : end])
            if event_id <= sock.cursor:
                self.dupes += 1
                return
            sock.cursor = event_id
        if self.tag_marker in raw:
            self.delivered += 1
            sock.got += 1
            if sock.got == self.want:
                sock.done_at = time.monotonic()
                sock.complete.set()

    def _frame(self, sock: _Socket, raw: str | bytes) -> None:
        now = time.monotonic()
        self.frames += 1
        frame = json.loads(raw)
        event_id = frame.get("event_id")
        if isinstance(event_id, int):
            if event_id <= sock.cursor:
                self.dupes += 1
                return
            sock.cursor = event_id
        self._checked_frame(sock, frame, now)

    def _checked_frame(self, sock: _Socket, frame: dict[str, Any], now: float) -> None:
        """A frame counted and its event id checked."""
        kind = frame.get("type")
        if kind == "presence_change":
            self.presence_frames += 1
            self.presence_entries += len(frame["users"]) if "users" in frame else 1
            return
        if kind != "message":
            if kind == "reconnect_url":
                sock.reconnect_url = str(frame.get("url") or "")
            elif kind in ("error", "goodbye"):
                code = str(frame.get("error", {}).get("code", kind))
                self.server_errors[code] += 1
                if len(self.error_samples) < 20:
                    self.error_samples.append({"code": code, "cursor": sock.cursor, "at": now})
            return
        text = frame.get("text") or ""
        if not text.startswith(self.tag):
            return
        if sock.sampled:
            self.hist.add((now - float(text.rsplit(" ", 1)[1])) * 1000)
        self.delivered += 1
        sock.got += 1
        if sock.got == self.want:
            sock.done_at = now
            sock.complete.set()

    # --- native mode ---------------------------------------------------------------

    def _native_start(self) -> None:
        """C reads every open socket from now on; their transports stop reading."""
        assert self.native is not None
        self.native_sockets = [s for s in self.sockets if s.ws is not None and not s.ws.closed.done()]
        prefill = []
        for sock in self.native_sockets:
            assert sock.ws is not None and sock.ws.transport is not None  # open: see above
            sock.ws.transport.pause_reading()
            prefill.append(bytes(sock.ws.buffer))
            sock.ws.buffer.clear()
        self.native.start(
            [socket_fd(s.ws.transport) for s in self.native_sockets if s.ws is not None],
            [s.sampled for s in self.native_sockets],
            [s.cursor for s in self.native_sockets],
            prefill,
            self.tag_marker,
            self.want,
        )
        self.native_run = asyncio.get_running_loop().run_in_executor(None, self.native.run)

    async def _native_collect(self) -> None:
        """Stop the C loop, take over what it counted, and give the sockets back to Python."""
        if self.native is None or self.native_run is None:
            return
        self.native.stop()
        await self.native_run
        self.native_run = None
        self._take_native(self.native.outcome())

    def _take_native(self, outcome: PhaseOutcome) -> None:
        self.delivered += outcome.delivered
        self.dupes += outcome.dupes
        self.frames += outcome.frames
        self.hist.merge(outcome.hist)
        if outcome.dropped_others:
            self.server_errors["native reader: other frames not kept"] += outcome.dropped_others
        for sock, result in zip(self.native_sockets, outcome.sockets, strict=True):
            if result.handed_back:  # Python read the rest of its frames only at the end
                self.native_handed_back[result.handed_back] += 1
            sock.cursor = result.cursor
            sock.got += result.got
            if result.done_at is not None and sock.done_at is None:
                sock.done_at = result.done_at
                sock.complete.set()
        for position, raw, received_at in outcome.others:
            self._checked_frame(self.native_sockets[position], json.loads(raw), received_at)
        for sock, result in zip(self.native_sockets, outcome.sockets, strict=True):
            if sock.ws is not None and sock.ws.transport is not None:
                if result.leftover:
                    sock.ws.data_received(result.leftover)
                sock.ws.transport.resume_reading()
        self.native_sockets = []

    async def _close_all(self) -> None:
        async def close(sock: _Socket) -> None:
            if sock.ws is None:
                return
            sock.intentional_close = True
            with contextlib.suppress(Exception):
                await sock.ws.close(timeout=5)
            sock.ws = None
            sock.reader = None

        await asyncio.gather(*(close(s) for s in self.sockets))


class BenchError(Exception):
    pass


def _backoff(attempt: int) -> float:
    """Seconds before retry `attempt` (1, 2, ...): 0.5 s doubling up to 8 s, +-50% jitter."""
    return min(8.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:80] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _rtm_connect(spec: SocketSpec) -> tuple[int, dict[str, Any], float | None]:
    """rtm.connect on a connection of its own, as a separate client would."""
    client = ApiClient(spec.http, spec.token)
    try:
        reply = client.call("rtm.connect", dict(spec.connect_args))
        return reply.status, reply.body, reply.retry_after
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return 0, {"error": type(exc).__name__}, None
    finally:
        client.close()


def with_since(url: str, since: int) -> str:
    """The ticket URL with `since` replaced by the client's own cursor."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["since"] = str(since)
    return urlunsplit(parts._replace(query=urlencode(query)))

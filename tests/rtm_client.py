"""A small synchronous RTM socket for tests, on the `websockets` library."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect


def web(server: Any, token: str) -> WebClient:
    return WebClient(token=token, base_url=f"{server.http}/api/")


class RtmSocket:
    def __init__(self, url: str) -> None:
        self._opened = connect(url, open_timeout=10, max_size=None)
        self.connection: ClientConnection = self._opened.__enter__()
        self.seen: list[dict[str, Any]] = []
        self.closed_code: int | None = None

    @classmethod
    def open(cls, server: Any, token: str) -> RtmSocket:
        return cls(web(server, token).rtm_connect()["url"])

    def recv(self, timeout: float = 5.0) -> dict[str, Any] | None:
        try:
            frame = json.loads(self.connection.recv(timeout=timeout))
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            self.closed_code = closed.rcvd.code if closed.rcvd else None
            return None
        self.seen.append(frame)
        return frame

    def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.recv(timeout=max(0.05, deadline - time.monotonic()))
            if frame is not None and predicate(frame):
                return frame
            if self.closed_code is not None:
                break
        raise AssertionError(f"no matching frame; saw {self.seen[-5:]}")

    def drain(self, quiet: float = 0.5) -> list[dict[str, Any]]:
        """Frames until the socket has been quiet for `quiet` seconds."""
        frames = []
        while (frame := self.recv(timeout=quiet)) is not None:
            frames.append(frame)
        return frames

    def send(self, frame: dict[str, Any]) -> None:
        self.connection.send(json.dumps(frame))

    def close(self) -> None:
        self._opened.__exit__(None, None, None)


def messages(frames: list[dict[str, Any]]) -> list[str]:
    return [f["text"] for f in frames if f.get("type") == "message" and "subtype" not in f]


def refused(url: str) -> int:
    """The HTTP status a websocket handshake to `url` is refused with (an unknown, used or
    revoked ticket closes the socket before accepting it: 403)."""
    try:
        RtmSocket(url).close()
    except InvalidStatus as refusal:
        return refusal.response.status_code
    raise AssertionError(f"{url} was accepted")

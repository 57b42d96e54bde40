"""A local HTTP upstream for preview tests whose behaviour the test switches at will."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"""<!doctype html><html><head>
<title>Fallback title</title>
<meta property="og:title" content="Preview of {path}">
<meta property="og:description" content="A page worth a glance">
<meta property="og:image" content="/image.png">
<meta property="og:site_name" content="Local upstream">
</head><body>ignored <meta property="og:title" content="not this"></body></html>"""


@dataclass
class Upstream:
    port: int
    mode: str = "ok"  # ok | error | hang | hold | slow | trickle | notfound | redirect:<url>
    hits: list[tuple[float, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)  # ends "hold"
    answer_secs: float = 0.0  # how long a page takes to come (a real host's network time)
    page: bytes = PAGE  # what it serves ({path} filled in)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits_between(self, start: float, end: float) -> int:
        return sum(1 for at, _ in self.hits if start < at < end)


@contextmanager
def running_upstream() -> Iterator[Upstream]:
    state = Upstream(0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state.hits.append((time.time(), self.path))
            mode = state.mode
            if mode == "hang":
                time.sleep(30)
                return
            if mode == "slow":
                time.sleep(1.5)
            if state.answer_secs:
                time.sleep(state.answer_secs)
            if mode == "hold":  # answer normally once the test says so
                state.release.wait(30)
            if mode.startswith("redirect:"):
                self.send_response(302)
                self.send_header("Location", mode.removeprefix("redirect:"))
                self.end_headers()
                return
            status = {"error": 500, "notfound": 404}.get(mode, 200)
            body = state.page.replace(b"{path}", self.path.encode()) if status == 200 else b"nope"
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "trickle":  # the headers at once, then the page a byte at a time
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def holding_upstreams(stack: ExitStack, count: int) -> tuple[list[Upstream], Upstream]:
    """`count` upstreams that hold every request until the test ends, and one healthy one,
    all closed by `stack`."""
    holding = [stack.enter_context(running_upstream()) for _ in range(count)]
    healthy = stack.enter_context(running_upstream())
    for upstream in holding:
        upstream.mode = "hold"
        stack.callback(upstream.release.set)
    return holding, healthy


@contextmanager
def silent_listener() -> Iterator[tuple[int, socket.socket]]:
    """A port that takes one connection and never reads from it (a TLS handshake with
    it hangs), and then drops every further attempt to connect (connecting hangs): its
    accept queue holds one, and nothing accepts. Yields the port and a socket that
    connects to it, to take that one place."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.socket() as first:
            yield port, first

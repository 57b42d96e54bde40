"""Django's HTTP side under daphne, run synchronously on a fixed pool of threads.

Django's ASGIHandler runs every request of a sync app inside a fresh
ThreadSensitiveContext, which starts a new thread per request, plus two tasks, async
signals and the async middleware adapters. Measured on the post path that machinery
cost more CPU than the API call it carried. This handler keeps Django's own request and
response code but runs the whole sync middleware chain, the request signals and the
response close in one hop onto a long-lived thread, so connections and caches stay
thread-local as Django expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpRequest, HttpResponseBase
from django.urls import set_script_prefix, set_urlconf

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_STREAM_END = object()


class PooledSyncHttpHandler(ASGIHandler):
    """ASGI HTTP entry point that serves Django's sync stack from a thread pool."""

    def __init__(self, threads: int) -> None:
        # Skip ASGIHandler.__init__: it would load the middleware in async mode.
        super(ASGIHandler, self).__init__()
        self.load_middleware(is_async=False)
        # Slow requests (a search, an export download) wait on the database, not the
        # CPU; enough threads that they cannot hold up quick ones behind them.
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"HTTP only, not {scope['type']}")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:  # the client went away before the body ended
            return
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(self.pool, self._respond, scope, body_file)
        try:
            await self._send(response, send, loop)
        finally:
            if response.streaming:  # a whole response was closed on its thread already
                await loop.run_in_executor(self.pool, response.close)
            body_file.close()

    def _respond(self, scope: Scope, body_file: Any) -> HttpResponseBase:
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response = error_response if request is None else self._run_request(request)
        if not response.streaming:
            # Fires request_finished, which returns this thread's connections. Its body is
            # already in memory, so it is closed here rather than after the send: one
            # thread hop per request instead of two (the post path's hops are CPU on the
            # event loop that every socket shares).
            response.close()
        return response

    def _run_request(self, request: HttpRequest) -> HttpResponseBase:
        set_urlconf(settings.ROOT_URLCONF)
        response = self._middleware_chain(request)
        response._resource_closers.append(request.close)
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        return response

    async def _send(self, response: HttpResponseBase, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": _headers(response)}
        )
        if not response.streaming:
            for chunk, last in self.chunk_bytes(response.content):
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            return
        parts: Iterator[bytes] = iter(response.streaming_content)
        while (part := await loop.run_in_executor(self.pool, next, parts, _STREAM_END)) is not _STREAM_END:
            for chunk, _ in self.chunk_bytes(part):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body"})


def _headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    headers += [
        (b"Set-Cookie", c.output(header="").encode("ascii").strip()) for c in response.cookies.values()
    ]
    return headers

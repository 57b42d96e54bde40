"""The benches' Web API client: one keep-alive HTTP/1.1 connection calling with one token,
and chat.postMessage through it.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

HTTP_TIMEOUT_SECS = 10.0  # a post slower than this is an error; also bounds every wait


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    retry_after: float | None


class ApiClient:
    """One keep-alive HTTP/1.1 connection to the Web API, calling with one token."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/") + "/api/"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.connection: http.client.HTTPConnection | None = None

    def call(self, method: str, body: dict[str, Any]) -> Reply:
        payload = json.dumps(body).encode()
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT_SECS)
            try:
                self.connection.request("POST", self.prefix + method, payload, self.headers)
                response = self.connection.getresponse()
                data = response.read()
            except ConnectionError:
                # The server closed an idle keep-alive connection: retry once on a new one.
                self.close()
                if attempt == 2:
                    raise
                continue
            except BaseException:
                self.close()
                raise
            retry_after = response.getheader("Retry-After")
            return Reply(response.status, json.loads(data) if data else {}, float(retry_after or 0) or None)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def post_message_text(client: ApiClient, channel: str, text: str) -> str | None:
    """One chat.postMessage; None when it succeeded, else the error."""
    try:
        reply = client.call("chat.postMessage", {"channel": channel, "text": text})
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return type(exc).__name__
    if reply.status == 200 and reply.body.get("ok"):
        return None
    return str(reply.body.get("error") or f"http_{reply.status}")

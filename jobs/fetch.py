"""An SSRF-safe HTTP fetcher for link previews.

The name is resolved here and every address checked (loopback, private, link-local,
multicast, reserved, unspecified, IPv4-mapped IPv6 and this server's own addresses are
refused, however the URL spells them: getaddrinfo turns decimal, octal and hex forms
into the address that would really be dialled); then the connection goes to the checked
address itself, so DNS cannot answer differently the second time. Each redirect is
checked again. Time and size are capped.

Errors say whether the upstream is at fault (UpstreamFailure: counts for its breaker)
or not (FetchRefused, ClientFailure, RateLimited, ResolverBusy: never count).
"""

from __future__ import annotations

import concurrent.futures
import errno
import http.client
import ipaddress
import os
import re
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, quote, urljoin, urlsplit

import psutil

from jobs.bulkhead import BulkheadFull

MAX_REDIRECTS = 3
CONNECT_TIMEOUT_SECS = 3.0
TOTAL_TIMEOUT_SECS = 10.0
MAX_BYTES = 2 * 1024 * 1024
# While waiting for an answer, how often to ask whether to stop waiting (the host's
# circuit opened meanwhile): a worker held by a hanging host is freed this soon after.
GIVE_UP_CHECK_SECS = 0.5
HTML_TYPES = ("text/html", "application/xhtml+xml")
USER_AGENT = "TeamChatPreview/1.0 (+link previews)"
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(Exception):
    """Bad input: not a URL we fetch, a forbidden address, not HTML. Never retried."""


class HostAnswered(Exception):
    """Mixed into the errors raised once the host's answer came: whatever it said, it is
    not hanging (jobs.suspect clears its suspicion when that came in time)."""


class ClientFailure(HostAnswered):
    """The upstream answered 4xx: the link is bad, the host is fine."""


class RateLimited(HostAnswered):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after}s")
        self.retry_after = retry_after


class UpstreamFailure(Exception):
    """5xx, timeout, connection error: the host is unwell."""


class ServerError(UpstreamFailure, HostAnswered):
    """The upstream answered 5xx."""


class NotAPage(FetchRefused, HostAnswered):
    """The upstream answered with something we do not preview."""


class Redirected(HostAnswered):
    """The host answered with a redirect to another host (fetch with other_hosts=False):
    that one is fetched on its own account, and its failures are its own."""

    def __init__(self, location: str, hops: int) -> None:
        super().__init__(f"redirected to {location[:200]}")
        self.location = location
        self.hops = hops  # redirects this call followed, this one included


@dataclass(frozen=True)
class FetchedPage:
    url: str
    status: int
    content_type: str
    charset: str
    body: bytes


@lru_cache(maxsize=1)
def _own_addresses() -> frozenset[IpAddress]:
    found: set[IpAddress] = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(address.address.split("%")[0]))
                except ValueError:
                    continue
    return frozenset(found)


def address_allowed(address: IpAddress, allowed_networks: Iterable[IpNetwork]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed_networks):
        return True  # the operator admitted this network explicitly (CHAT_UNFURL_ALLOWED_NETWORKS)
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and address not in _own_addresses()
    )


# Longer than any real host and port (a DNS name is at most 253 characters): past it,
# the netloc is padding meant to make keys (a port of thousands of zeros) unique.
MAX_NETLOC_CHARS = 300


def host_key(url: str) -> str:
    """The server a URL names, as one string however it is spelled: the IDNA-encoded,
    lowercased host without a trailing dot (an IPv4 address dotted), and the port the
    fetch will dial (example.com, EXAMPLE.com., example.com:080 are all example.com:80;
    134744072 and 0x8.0x8.0x8.0x8 are 8.8.8.8). Its breaker,
    bulkhead and suspicion are keyed on this, so respelling a link cannot escape them.
    FetchRefused for a URL fetch would refuse anyway."""
    parts = urlsplit(url)
    if len(parts.netloc) > MAX_NETLOC_CHARS:
        raise FetchRefused(f"host part too long in {url[:200]!r}")
    hostname, port = _dial_target(parts, url)
    try:
        host = hostname.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise FetchRefused(f"bad host or port in {url[:200]!r}") from None
    if not host:
        raise FetchRefused(f"no host in {url[:200]!r}")
    try:  # an IPv4 address in any spelling the resolver reads (134744072, 0x8.8.8.8, 010.8.8.8)
        host = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        pass  # a name, or IPv6
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dial_target(parts: SplitResult, url: str) -> tuple[str, int]:
    """The host and port a fetch of `url` dials; FetchRefused for what it never fetches."""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused(f"not an http(s) URL: {url[:200]!r}")
    try:
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchRefused(f"bad port in {url[:200]!r}") from None


# Lookups at once per process. The system resolver has no per-call time limit, so a
# lookup runs on one of these and the fetch stops waiting at its deadline; a name server
# that never answers holds such a thread (not a worker) for the resolver's own timeout.
RESOLVER_THREADS = 8
_resolver = concurrent.futures.ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="resolve")
# How long a lookup may wait for one of those threads. A free one takes it at once; past
# this, every thread is held by lookups that silent name servers keep for seconds, and
# the fetch stops without having asked its host's name servers anything (ResolverBusy).
# Well under the suspect bar (UNFURL_SUSPECT_AFTER_SECS, 1 s) and the host breaker's
# slow-call limit (3 s): waiting for a thread must not make a healthy host look slow.
RESOLVER_QUEUE_SECS = 0.5
RESOLVER_POOL = "resolver"


class ResolverBusy(BulkheadFull):
    """Every lookup thread of this process is held by other names' lookups and this one
    never started: its host did nothing wrong (no breaker counts it); try the link later."""


def _getaddrinfo(
    host: str, port: int, deadline: float | None, give_up: Callable[[], bool] | None
) -> list[Any]:
    if deadline is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if deadline <= time.monotonic():  # earlier hops of this fetch took its time
        raise UpstreamFailure(f"{host}: no time left to look it up")
    lookup = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        # `give_up` judges the host, and a lookup still waiting for a thread says nothing
        # of it (asked meanwhile, it made the host suspect, and then failed it).
        return lookup.result(timeout=min(RESOLVER_QUEUE_SECS, deadline - time.monotonic()))
    except concurrent.futures.TimeoutError:
        if lookup.cancel():  # never started: it never will, and no name server was asked
            raise ResolverBusy(RESOLVER_POOL) from None
    # Started: it holds its thread until it ends, whenever this fetch stops waiting for it.
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            return lookup.result(timeout=min(GIVE_UP_CHECK_SECS, remaining))
        except concurrent.futures.TimeoutError:
            if give_up is not None and give_up():
                break
    raise UpstreamFailure(f"{host}: no answer from its name servers in time")


def resolve_checked(
    host: str,
    port: int,
    allowed_networks: Iterable[IpNetwork],
    deadline: float | None = None,
    give_up: Callable[[], bool] | None = None,
) -> str:
    """The address to dial for host, or FetchRefused if any address it names is forbidden.
    With a deadline, UpstreamFailure when the lookup takes past it (or `give_up` says so),
    and ResolverBusy when it never got a lookup thread."""
    try:
        infos = _getaddrinfo(host, port, deadline, give_up)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"cannot resolve {host!r}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    networks = list(allowed_networks)
    refused = [a for a in addresses if not address_allowed(a, networks)]
    if refused or not addresses:
        raise FetchRefused(f"{host!r} resolves to a forbidden address {refused[0] if refused else ''}")
    return str(addresses[0])


def _open_connection(
    scheme: str,
    host: str,
    port: int,
    address: str,
    deadline: float,
    give_up: Callable[[], bool] | None = None,
) -> http.client.HTTPConnection:
    timeout = min(CONNECT_TIMEOUT_SECS, max(0.1, deadline - time.monotonic()))
    try:
        if give_up is None:
            sock = socket.create_connection((address, port), timeout=timeout)
            if scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        else:
            sock = _connect_watching(scheme, host, port, address, time.monotonic() + timeout, give_up)
            sock.settimeout(timeout)
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamFailure(f"cannot connect to {host}: {exc}") from exc
    connection = http.client.HTTPConnection(host, port)
    connection.sock = sock  # dial the checked address, not whatever DNS says next
    return connection


def _connect_watching(
    scheme: str, host: str, port: int, address: str, until: float, give_up: Callable[[], bool]
) -> socket.socket:
    """Connect (and shake hands) without blocking, asking `give_up` between slices: a host
    that drops the connection attempt, or takes it and never shakes hands, hangs as surely
    as one that never answers, and is judged as soon."""
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        error = sock.connect_ex((address, port))
        if error not in (0, errno.EINPROGRESS):
            raise OSError(error, os.strerror(error))
        if not _wait_for(sock, until, give_up, host, "connecting", write=True):
            raise TimeoutError("connect timed out")
        if error := sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            raise OSError(error, os.strerror(error))
        if scheme != "https":
            return sock
        context = ssl.create_default_context()
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                write = False
            except ssl.SSLWantWriteError:
                write = True
            if not _wait_for(tls, until, give_up, host, "in the TLS handshake", write=write):
                raise TimeoutError("TLS handshake timed out")
    except BaseException:
        sock.close()
        raise


def _buffered(response: http.client.HTTPResponse, sock: socket.socket) -> bool:
    """Whether the body can be read on without waiting: bytes the response's reader took
    in with the headers, which a select on the socket cannot see (a peek that does not
    wait, so it also takes what the socket has already)."""
    assert response.fp is not None
    sock.settimeout(0)
    try:
        return bool(response.fp.peek(1))
    except (BlockingIOError, ssl.SSLWantReadError):
        return False


def _read_capped(
    response: http.client.HTTPResponse,
    sock: socket.socket,
    deadline: float,
    max_bytes: int,
    give_up: Callable[[], bool] | None = None,
    host: str = "",
) -> bytes:
    """The body, up to max_bytes; `give_up` is asked while it does not come, and between
    its pieces as it trickles in: a host that sends its headers at once and then the page
    a byte at a time is as stuck as one that never answers."""
    chunks, size = [], 0
    asked = time.monotonic()
    while size < max_bytes and not response.isclosed():  # closed: the body was read whole
        if give_up is not None:
            if not _buffered(response, sock):
                _await_answer(sock, deadline, give_up, host)
            if time.monotonic() - asked >= GIVE_UP_CHECK_SECS:
                asked = time.monotonic()
                if give_up():
                    raise UpstreamFailure(f"{host}: gave up waiting for the page")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamFailure("fetch took longer than allowed")
        sock.settimeout(remaining)
        # read1: whatever has come, at most one read of the socket, so a trickle comes
        # back here (to be judged) between its pieces.
        chunk = response.read1(min(65536, max_bytes - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _await_answer(sock: socket.socket, deadline: float, give_up: Callable[[], bool], host: str) -> None:
    """Return once the answer starts (or the deadline passes: reading then times out);
    raise UpstreamFailure as soon as `give_up()` says waiting is pointless."""
    _wait_for(sock, deadline, give_up, host, "waiting for an answer")


def _wait_for(
    sock: socket.socket,
    until: float,
    give_up: Callable[[], bool],
    host: str,
    doing: str,
    write: bool = False,
) -> bool:
    """Whether sock became readable (or writable) before `until`, asking `give_up` every
    GIVE_UP_CHECK_SECS meanwhile; UpstreamFailure once it says to stop."""
    while (remaining := until - time.monotonic()) > 0:
        if not write and isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        waited_on = ([], [sock]) if write else ([sock], [])
        readable, writable, _ = select.select(*waited_on, [], min(GIVE_UP_CHECK_SECS, remaining))
        if readable or writable:
            return True
        if give_up():
            raise UpstreamFailure(f"{host}: gave up {doing}")
    return False


# Control characters and spaces: no browser sends them, and http.client refuses them
# only after connecting, which would count against the host.
_NOT_IN_A_REQUEST = re.compile(r"[\x00-\x20\x7f]")
# What stays as written in a request target: RFC 3986's reserved and unreserved characters
# (letters, digits and "_.-~" never change) and "%" of escapes already there.
_KEPT_IN_A_TARGET = "!#$%&'()*+,/:;=?@[]~"


def _request_target(parts: SplitResult) -> tuple[str, str]:
    """The request's path and Host header in ASCII, as a browser sends the same link:
    non-ASCII percent-encoded as UTF-8, a non-ASCII host name in IDNA. FetchRefused for a
    link no request can carry (a bad link, never the host's fault)."""
    raw = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if _NOT_IN_A_REQUEST.search(raw) or _NOT_IN_A_REQUEST.search(parts.netloc):
        raise FetchRefused("not a link: control characters or spaces in it")
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchRefused(f"not a host name: {parts.hostname!r}") from None
    return quote(raw, safe=_KEPT_IN_A_TARGET), host if parts.port is None else f"{host}:{parts.port}"


def fetch(
    url: str,
    allowed_networks: Iterable[IpNetwork] = (),
    accept: tuple[str, ...] = HTML_TYPES,
    max_bytes: int = MAX_BYTES,
    total_timeout: float = TOTAL_TIMEOUT_SECS,
    give_up: Callable[[], bool] | None = None,
    max_redirects: int = MAX_REDIRECTS,
    other_hosts: bool = True,
) -> FetchedPage:
    """GET `url` within `total_timeout`; `give_up`, asked while the host is silent, ends
    the wait early (its circuit opened: the call is a failure already counted). With
    `other_hosts` False, a redirect to another host ends the call with Redirected."""
    networks = list(allowed_networks)
    deadline = time.monotonic() + total_timeout
    first_host = host_key(url) if not other_hosts else ""
    for hop in range(max_redirects + 1):
        parts = urlsplit(url)
        path, host_header = _request_target(parts)  # before connecting: a bad link costs nothing
        hostname, port = _dial_target(parts, url)
        address = resolve_checked(hostname, port, networks, deadline, give_up)
        connection = _open_connection(parts.scheme, hostname, port, address, deadline, give_up)
        try:
            connection.request(
                "GET",
                path,
                headers={"Host": host_header, "User-Agent": USER_AGENT, "Accept": ", ".join(accept)},
            )
            sock = connection.sock  # getresponse() may drop its reference; the reads need it
            assert sock is not None
            if give_up is not None:
                _await_answer(sock, deadline, give_up, parts.hostname)
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            response = connection.getresponse()
            status = response.status
            if status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location", ""))
                if first_host and host_key(url) != first_host:
                    raise Redirected(url, hop + 1)
                continue
            if status == 429:
                raise RateLimited(_retry_after(response.getheader("Retry-After")))
            if 400 <= status < 500:
                raise ClientFailure(f"{status} from {parts.hostname}")
            if 500 <= status < 600:
                raise ServerError(f"{status} from {parts.hostname}")
            if status >= 600:  # not HTTP (LinkedIn's 999 to bots): the host's refusal, not a fault
                raise ClientFailure(f"{status} from {parts.hostname}")
            content_type, _, params = (response.getheader("Content-Type") or "").partition(";")
            if content_type.strip().lower() not in accept:
                raise NotAPage(f"not a page we preview: {content_type or 'no content type'}")
            charset = params.split("charset=")[-1].strip() if "charset=" in params else "utf-8"
            body = _read_capped(response, sock, deadline, max_bytes, give_up, parts.hostname)
            return FetchedPage(url, status, content_type.strip().lower(), charset, body)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            raise UpstreamFailure(f"{parts.hostname}: {exc}") from exc
        finally:
            connection.close()
    raise FetchRefused(f"more than {max_redirects} redirects")


def _retry_after(value: str | None) -> float:
    try:
        return max(1.0, min(float(value or 60), 3600.0))
    except ValueError:
        return 60.0

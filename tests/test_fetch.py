"""The SSRF-safe fetcher and the preview parser (no worker needed)."""

import ipaddress
import socket

import pytest

from jobs.fetch import ClientFailure, FetchRefused, RateLimited, UpstreamFailure, fetch
from jobs.preview import merge_oembed, parse_page
from tests.upstream import running_upstream

LOCAL = [ipaddress.ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.5/",
        "http://172.16.3.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "http:///nohost",
        "javascript:alert(1)",
    ],
)
def test_private_and_odd_targets_are_refused_by_default(url: str) -> None:
    with pytest.raises(FetchRefused):
        fetch(url)


def test_the_servers_own_address_is_refused() -> None:
    own = socket.gethostbyname(socket.gethostname())
    with pytest.raises(FetchRefused):
        fetch(f"http://{own}/")


def test_allowed_network_admits_the_local_upstream_and_redirects_are_checked() -> None:
    with running_upstream() as upstream:
        page = fetch(f"{upstream.base}/hello", LOCAL)
        assert page.status == 200 and b"Preview of /hello" in page.body
        for target in ("http://169.254.169.254/", "http://[::1]/", "http://10.1.2.3/", "http://0x7f.1:1/"):
            upstream.mode = f"redirect:{target}"
            with pytest.raises(FetchRefused):
                fetch(f"{upstream.base}/go", LOCAL if "0x7f" not in target else [])
        upstream.mode = f"redirect:{upstream.base}/landed"
        with pytest.raises(FetchRefused):  # 4 hops: one more than allowed
            fetch(f"{upstream.base}/loop", LOCAL)
        upstream.mode = "ok"
        assert fetch(f"{upstream.base}/a", LOCAL).url.endswith("/a")


def test_failures_are_classified() -> None:
    with running_upstream() as upstream:
        upstream.mode = "error"
        with pytest.raises(UpstreamFailure):
            fetch(f"{upstream.base}/", LOCAL)
        upstream.mode = "notfound"
        with pytest.raises(ClientFailure):
            fetch(f"{upstream.base}/", LOCAL)
        upstream.mode = "hang"
        with pytest.raises(UpstreamFailure):
            fetch(f"{upstream.base}/", LOCAL, total_timeout=0.5)
    with pytest.raises(UpstreamFailure):  # nothing listens there any more
        fetch(f"{upstream.base}/", LOCAL)


def test_links_no_request_can_carry_are_refused_and_non_ascii_ones_are_encoded() -> None:
    """A control character or a space is the link's fault, found before connecting (the
    host's breaker never hears of it); non-ASCII goes out as a browser sends it."""
    with running_upstream() as upstream:
        for bad in ("/a\x01b", "/a\x7fb", "/a b", "/a?q=\r\nX-Injected: 1"):
            with pytest.raises(FetchRefused):
                fetch(f"{upstream.base}{bad}", LOCAL)
        assert not upstream.hits
        page = fetch(f"{upstream.base}/wiki/Köln?q=ä%20b", LOCAL)
        assert page.status == 200 and upstream.hits[-1][1] == "/wiki/K%C3%B6ln?q=%C3%A4%20b"
    with pytest.raises(FetchRefused):
        fetch("http://a..b\u0080.example/", LOCAL)


def test_a_name_server_that_never_answers_is_within_the_whole_fetch_time(monkeypatch) -> None:
    """The system resolver has no time limit of its own to give: the fetch stops waiting
    for it at its deadline, as for any silent upstream. (The resolver is the one thing
    played here: a name server that never answers cannot be set up for a test.)"""
    import time

    def silent_name_server(*args, **kwargs):
        time.sleep(3)
        raise socket.gaierror("timed out")

    monkeypatch.setattr(socket, "getaddrinfo", silent_name_server)
    started = time.monotonic()
    with pytest.raises(UpstreamFailure, match="name servers"):
        fetch("http://never.example/", total_timeout=0.5)
    assert time.monotonic() - started < 1.0


def test_rate_limited_carries_retry_after(monkeypatch) -> None:
    import http.server

    from tests import upstream as upstream_module

    class TooMany(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(429)
            self.send_header("Retry-After", "7")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TooMany)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RateLimited) as limited:
            fetch(f"http://127.0.0.1:{server.server_address[1]}/", LOCAL)
        assert limited.value.retry_after == 7
    finally:
        server.shutdown()
    del upstream_module


def test_parse_opengraph_twitter_and_fallbacks() -> None:
    page = """<html><head><title> Plain  title </title>
    <meta name="twitter:title" content="Twitter title"><meta name="description" content="Meta description">
    <meta name="twitter:image" content="javascript:alert(1)">
    <link rel="alternate" type="application/json+oembed" href="/oembed?url=x"></head></html>"""
    preview = parse_page("https://example.com/post", page)
    assert preview.title == "Twitter title" and preview.description == "Meta description"
    assert preview.image_url == "" and preview.oembed_url == "https://example.com/oembed?url=x"
    bare = parse_page("https://example.com/", "<title>Only a title</title>")
    assert bare.title == "Only a title" and not bare.is_empty
    filled = merge_oembed(
        parse_page("https://v.example/", "<html></html>"),
        b'{"title": "A video", "provider_name": "Vids", "thumbnail_url": "https://v.example/t.jpg"}',
    )
    assert (filled.title, filled.site_name, filled.image_url) == (
        "A video",
        "Vids",
        "https://v.example/t.jpg",
    )
    attachment = filled.as_attachment("https://v.example/")
    assert attachment["from_url"] == "https://v.example/" and attachment["title"] == "A video"

"""One web server is one key for its breaker, bulkhead and suspicion, however a link
spells its host and port (jobs.fetch.host_key)."""

import pytest

from jobs.breakers import OPEN, BreakerOpen, breaker_status
from jobs.fetch import FetchRefused, host_key
from jobs.unfurl import preview_for
from tests.test_unfurl_suspect import one_suspect_thread  # noqa: F401 - fixture
from tests.upstream import running_upstream

pytestmark = [
    pytest.mark.django_db(databases="__all__", transaction=True),
    pytest.mark.usefixtures("forget_suspicion"),
]


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://example.com/a", "example.com:80"),
        ("http://EXAMPLE.com./a", "example.com:80"),
        ("http://example.com:080/a", "example.com:80"),
        ("http://user@Example.COM:" + "0" * 200 + "80/", "example.com:80"),
        ("https://example.com/", "example.com:443"),
        ("http://bücher.de/", "xn--bcher-kva.de:80"),
        ("http://[::1]:8080/", "[::1]:8080"),
        ("http://134744072/", "8.8.8.8:80"),
        ("http://0x08080808:80/", "8.8.8.8:80"),
        ("http://010.010.010.010/", "8.8.8.8:80"),
        ("http://0x8.8.8.8/", "8.8.8.8:80"),
    ],
)
def test_spellings_of_one_server_share_a_key(url: str, key: str) -> None:
    assert host_key(url) == key


@pytest.mark.parametrize(
    "url", ["http://example.com:" + "0" * 4300 + "80/", "http://example.com:99999/", "ftp://example.com/"]
)
def test_overlong_or_bad_hosts_are_refused(url: str) -> None:
    with pytest.raises(FetchRefused):
        host_key(url)


def test_respelling_the_port_does_not_escape_the_breaker(one_suspect_thread) -> None:  # noqa: F811
    with running_upstream() as failing:
        failing.mode = "error"
        key = f"unfurl:127.0.0.1:{failing.port}"
        for padding in ("", "0"):
            with pytest.raises(Exception, match="500"):
                preview_for(f"http://127.0.0.1:{padding}{failing.port}/x")
        assert breaker_status(key).state == OPEN  # both failures counted for one server
        hits = len(failing.hits)
        with pytest.raises(BreakerOpen):
            preview_for(f"http://127.0.0.1:00{failing.port}/x")
        assert len(failing.hits) == hits
    assert preview_for("http://example.com:" + "0" * 4300 + "80/") is None


def test_a_failed_oembed_keeps_the_page_preview(one_suspect_thread) -> None:  # noqa: F811
    """The page was fetched already: its oembed host failing must not throw it away."""
    with running_upstream() as page, running_upstream() as oembed:
        oembed.mode = "error"
        page.page = (
            b'<html><head><meta property="og:description" content="Only a description">'
            b'<link rel="alternate" type="application/json+oembed" href="'
            + oembed.base.encode()
            + b'/oembed"></head></html>'
        )
        preview = preview_for(f"{page.base}/p")
        assert preview is not None and preview.description == "Only a description"
        assert oembed.hits


def test_a_redirect_elsewhere_charges_the_host_that_fails(one_suspect_thread) -> None:  # noqa: F811
    """A shortener pointing at a failing page: the page's host is charged, the shortener
    answered. Otherwise anyone could open a shortener's circuit for everyone with links
    to pages that fail."""
    with running_upstream() as shortener, running_upstream() as page:
        page.mode = "error"
        shortener.mode = f"redirect:{page.base}/landed"
        for n in range(2):
            with pytest.raises(Exception, match="500"):
                preview_for(f"{shortener.base}/s{n}")
        with pytest.raises(BreakerOpen, match=str(page.port)):  # the page's circuit, not the shortener's
            preview_for(f"{shortener.base}/s2")
        assert breaker_status(f"unfurl:127.0.0.1:{page.port}").state == OPEN
        short = breaker_status(f"unfurl:127.0.0.1:{shortener.port}")
        assert (short.state, short.failures) == ("closed", 0)
        page.mode = "ok"
        shortener.mode = f"redirect:{shortener.base}/here"  # same host: followed in one call
        assert preview_for(f"{shortener.base}/loop") is None  # ... and still bounded: no preview
        assert len(shortener.hits) == 3 + 4  # the three above, then 1 + 3 redirects followed

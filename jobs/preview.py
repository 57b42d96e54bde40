"""Reading a page's preview: OpenGraph, Twitter card, oEmbed discovery, <title>/description."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

MAX_TEXT = 300  # a preview is a glance, not the page


@dataclass(frozen=True)
class Preview:
    url: str
    title: str = ""
    description: str = ""
    image_url: str = ""
    site_name: str = ""
    oembed_url: str = ""

    @property
    def is_empty(self) -> bool:
        return not (self.title or self.description or self.image_url)

    def as_attachment(self, original_url: str) -> dict[str, Any]:
        """Slack's unfurl attachment shape."""
        attachment: dict[str, Any] = {
            "from_url": original_url,
            "original_url": original_url,
            "fallback": f"{self.site_name or urlsplit(original_url).hostname}: {self.title or original_url}",
            "title": self.title,
            "title_link": self.url or original_url,
            "text": self.description,
            "service_name": self.site_name or (urlsplit(original_url).hostname or ""),
        }
        if self.image_url:
            attachment["image_url"] = self.image_url
        return attachment


class _HeadParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title = ""
        self.in_title = False
        self.oembed = ""
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "meta":
            name = (values.get("property") or values.get("name") or "").lower()
            if name and "content" in values:
                self.meta.setdefault(name, values["content"].strip())
        elif tag == "title":
            self.in_title = True
        elif tag == "link" and values.get("type", "").lower() == "application/json+oembed":
            self.oembed = values.get("href", "")
        elif tag == "body":
            self.done = True  # everything a preview needs is in <head>

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False

    def handle_data(self, data: str) -> None:
        if self.in_title and not self.done:
            self.title += data


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _http_only(base: str, value: str) -> str:
    if not value:
        return ""
    absolute = urljoin(base, value)
    return absolute if urlsplit(absolute).scheme in ("http", "https") else ""


def parse_page(url: str, html: str) -> Preview:
    parser = _HeadParser()
    try:
        parser.feed(html)
    except Exception:  # hostile markup must not break a job; keep what was read
        pass
    meta = parser.meta

    def first(*names: str) -> str:
        return next((meta[n] for n in names if meta.get(n)), "")

    return Preview(
        url=_http_only(url, first("og:url")) or url,
        title=_clip(first("og:title", "twitter:title") or parser.title),
        description=_clip(first("og:description", "twitter:description", "description")),
        image_url=_http_only(url, first("og:image", "og:image:url", "twitter:image", "twitter:image:src")),
        site_name=_clip(first("og:site_name", "application-name")),
        oembed_url=_http_only(url, parser.oembed),
    )


def merge_oembed(preview: Preview, body: bytes) -> Preview:
    """Fill what the page lacked from its oEmbed document."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # nested past the stack
        return preview
    if not isinstance(data, dict):
        return preview
    return Preview(
        url=preview.url,
        title=preview.title or _clip(str(data.get("title", ""))),
        description=preview.description or _clip(str(data.get("author_name", ""))),
        image_url=preview.image_url or _http_only(preview.url, str(data.get("thumbnail_url", ""))),
        site_name=preview.site_name or _clip(str(data.get("provider_name", ""))),
        oembed_url=preview.oembed_url,
    )

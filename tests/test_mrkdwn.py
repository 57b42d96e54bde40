"""The server's reading of mrkdwn (messaging/mrkdwn.py): which links a message previews."""

import pytest

from messaging.mrkdwn import extract_links


@pytest.mark.parametrize(
    ("text", "links"),
    [
        ("<https://x.test/a|the label> and <https://y.test>", ["https://x.test/a", "https://y.test"]),
        ("see https://x.test/a.", ["https://x.test/a"]),
        # What the composer sends for a typed "<https://x.test|the label>" or "<https://x.test>":
        # the escaped brackets and the label are not part of the link.
        ("&lt;https://x.test|the label&gt;", ["https://x.test"]),
        ("&lt;https://x.test/a&gt;, then", ["https://x.test/a"]),
        # An escaped & in a link is the link's own &.
        ("https://x.test/?a=1&amp;b=2", ["https://x.test/?a=1&b=2"]),
        ("<https://x.test/?a=1&amp;b=2|query>", ["https://x.test/?a=1&b=2"]),
        ("<javascript:alert(1)|x> ftp://x.test", []),
    ],
)
def test_extract_links(text: str, links: list[str]) -> None:
    assert extract_links(text) == links

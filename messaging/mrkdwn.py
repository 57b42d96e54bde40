"""What the server needs to know of Slack's mrkdwn: who a message mentions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from teams import ids

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]{1,13})(?:\|[^>]*)?>")
_BROADCAST = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
# Links as Slack writes them (<https://x|label>) and as people paste them. A pasted link
# ends before an escaped < or >: people's text comes with &, < and > escaped, so a typed
# "<https://x>" arrives as "&lt;https://x&gt;" (static/client/render/mrkdwn.js agrees).
_ANGLE_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|[^>]*)?>")
_BARE_LINK = re.compile(r"(?<![<|\w])(https?://(?:(?!&[lg]t;)[^\s<>|])*(?:(?!&[lg]t;)[^\s<>|.,;:!?)\]'\"]))")
MAX_PREVIEWS = 5  # links previewed per message


@dataclass(frozen=True)
class Mentions:
    member_ids: list[int]
    everyone: bool  # <!here>, <!channel> or <!everyone>


def parse_mentions(text: str) -> Mentions:
    member_ids: list[int] = []
    for match in _USER_MENTION.finditer(text):
        try:
            member_id = ids.decode(match.group(1), ids.USER_PREFIXES)
        except ids.BadId:
            continue
        if member_id not in member_ids:
            member_ids.append(member_id)
    return Mentions(member_ids, bool(_BROADCAST.search(text)))


def extract_links(text: str, limit: int = MAX_PREVIEWS) -> list[str]:
    """The distinct http(s) links of a message, in order, at most `limit`."""
    found: list[str] = []
    for match in sorted([*_ANGLE_LINK.finditer(text), *_BARE_LINK.finditer(text)], key=lambda m: m.start()):
        url = match.group(1).replace("&amp;", "&")  # the link itself, not its escaped text
        if url not in found:
            found.append(url)
        if len(found) == limit:
            break
    return found

"""What the server needs to know of Slack's mrkdwn: who a message mentions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from teams import ids

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]{1,13})(?:\|[^>]*)?>")
_BROADCAST = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")


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

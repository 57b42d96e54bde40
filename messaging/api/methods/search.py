"""search.messages: Slack's message search, over the conversations the caller can see."""

from __future__ import annotations

import math
from typing import Any

from messaging.api.registry import ApiCall, Args, SlackBool, api_method
from messaging.search.query import parse_query
from messaging.search.run import MAX_PAGE, MAX_PAGE_SIZE, Hit, search_messages
from messaging.search.scope import ScopeChannel
from teams import ids
from teams.errors import ApiError

K_PUBLIC, K_PRIVATE, K_IM, K_MPIM = "public", "private", "im", "mpim"


class SearchArgs(Args):
    query: str
    sort: str = "score"  # or "timestamp"; anything else is the default, as Slack does
    sort_dir: str = "desc"  # or "asc"
    count: int = 20
    page: int = 1
    highlight: SlackBool = False  # accepted; matches are never marked up


@api_method(
    "search.messages",
    SearchArgs,
    tier=2,
    errors={"query": "no_query"},
)
def messages(call: ApiCall) -> dict[str, Any]:
    """Search messages in the conversations the caller can see."""
    args = call.args
    if call.caller.is_bot:
        raise ApiError("not_allowed_token_type")  # as Slack: search is a user's, not an app's
    if not args.query.strip():
        raise ApiError("no_query")
    count = max(1, min(args.count, MAX_PAGE_SIZE))
    page = max(1, min(args.page, MAX_PAGE))
    found = search_messages(
        call.caller,
        parse_query(args.query),
        sort="timestamp" if args.sort.strip().lower() == "timestamp" else "score",
        descending=args.sort_dir.strip().lower() != "asc",
        count=count,
        page=page,
    )
    pages = min(math.ceil(found.total / count), MAX_PAGE)
    first = (page - 1) * count + 1
    team = call.caller.team.slack_id
    return {
        "query": args.query,
        "messages": {
            "total": found.total,
            "pagination": {
                "total_count": found.total,
                "page": page,
                "per_page": count,
                "page_count": pages,
                "first": first,
                "last": first + len(found.hits) - 1,
            },
            "paging": {"count": count, "total": found.total, "page": page, "pages": pages},
            "matches": [_match(hit, team, call.caller.member_id, call.base_url) for hit in found.hits],
        },
    }


def _match(hit: Hit, team: str, viewer_id: int, base_url: str) -> dict[str, Any]:
    channel = _channel(hit.channel, viewer_id)
    ts = ids.format_ts(hit.ts)
    permalink = f"{base_url}archives/{channel['id']}/p{ts.replace('.', '')}"
    if hit.thread_ts is not None and hit.thread_ts != hit.ts:
        permalink += f"?thread_ts={ids.format_ts(hit.thread_ts)}&cid={channel['id']}"
    match: dict[str, Any] = {
        "type": "message",
        "iid": str(hit.id),
        "team": team,
        "channel": channel,
        "ts": ts,
        "user": ids.encode(ids.USER, hit.user_id) if hit.user_id else "",
        "username": hit.username,
        "text": hit.text,
        "permalink": permalink,
    }
    if hit.bot_id:
        match["bot_id"] = ids.encode(ids.BOT, hit.bot_id)
    if hit.attachments:
        match["attachments"] = hit.attachments
    return match


def _channel(channel: ScopeChannel, viewer_id: int) -> dict[str, Any]:
    """The small channel object Slack puts in each match."""
    members = channel.dm_member_ids()
    name: str | None = channel.name
    if channel.kind == K_IM:
        # Slack names a DM after the other person (yourself, in your self-DM).
        others = [m for m in members if m != viewer_id] or members
        name = ids.encode(ids.USER, others[0])
    elif channel.kind == K_MPIM:
        name = "mpdm-" + "--".join(ids.encode(ids.USER, m) for m in members) + "-1"
    shape: dict[str, Any] = {
        "id": channel.slack_id,
        "name": name,
        "is_channel": channel.kind == K_PUBLIC,
        "is_group": channel.kind == K_PRIVATE,
        "is_im": channel.kind == K_IM,
        "is_mpim": channel.kind == K_MPIM,
        "is_private": channel.kind != K_PUBLIC,
        "is_shared": False,
        "is_org_shared": False,
        "is_ext_shared": False,
        "is_pending_ext_shared": False,
        "pending_shared": [],
    }
    if channel.kind == K_IM:
        shape["user"] = name
    return shape

"""Where a search may look: the conversations the searcher can see (every public channel of
the team, and the private channels, DMs and group DMs they are in), narrowed by in:, and
whose messages (from:) and when (dates, in the searcher's own timezone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import Q
from django.db.models.functions import Lower

from messaging.models import Channel
from messaging.queries import visible_channels
from messaging.search.query import ChannelRef, MemberRef, SearchQuery
from teams import ids
from teams.auth import Caller
from teams.models import Member

K = Channel.Kind
ME = MemberRef(me=True)
_EARLIEST, _LATEST = date(1970, 1, 2), date(9999, 12, 30)


@dataclass(frozen=True)
class ScopeChannel:
    id: int
    kind: str
    name: str | None
    dm_key: str | None

    @property
    def slack_id(self) -> str:
        prefix = {K.PUBLIC: ids.PUBLIC, K.IM: ids.IM}.get(self.kind, ids.PRIVATE)  # type: ignore[call-overload]
        return ids.encode(prefix, self.id)

    def dm_member_ids(self) -> list[int]:
        return [int(part) for part in (self.dm_key or "").split("-") if part]


@dataclass(frozen=True)
class Scope:
    channels: dict[int, ScopeChannel]  # visible, narrowed by in:; never empty
    narrowed: bool  # by in:, to a few of the visible channels
    authors: list[int] | None  # from:, or None for anyone
    since_ts: int | None  # message ts bounds in microseconds, [since, until)
    until_ts: int | None


def search_scope(caller: Caller, query: SearchQuery) -> Scope | None:
    """The scope of `query` for `caller`, or None when nothing visible can match.

    A modifier naming a channel the caller cannot see answers exactly as one naming no
    channel at all, so search never tells whether a private channel exists.
    """
    visible = {
        row["id"]: ScopeChannel(row["id"], row["kind"], row["name"], row["dm_key"])
        for row in visible_channels(caller, K.values).values("id", "kind", "name", "dm_key")
    }
    refs = [*query.in_dms, *query.from_members]
    # The caller's own row is wanted only for their timezone, which only dates need.
    dated = query.since is not None or query.until is not None
    members = _members(caller, refs) if refs or dated else {}
    channels = visible
    if query.in_channels or query.in_dms:
        wanted = {c.id for c in visible.values() if any(_names(ref, c) for ref in query.in_channels)}
        for ref in query.in_dms:
            if (other := members.get(ref)) is not None:
                key = "-".join(str(i) for i in sorted({caller.member_id, other[0]}))
                wanted |= {c.id for c in visible.values() if c.kind == K.IM and c.dm_key == key}
        channels = {i: visible[i] for i in wanted}
    if not channels:
        return None
    authors = None
    if query.from_members:
        authors = sorted({members[ref][0] for ref in query.from_members if ref in members})
        if not authors:
            return None
    zone = _zone(members[ME][1] if ME in members else "UTC")
    narrowed = channels is not visible
    return Scope(channels, narrowed, authors, _micros(query.since, zone), _micros(query.until, zone))


def _names(ref: ChannelRef, channel: ScopeChannel) -> bool:
    if ref.slack_id is not None:
        return ref.slack_id == channel.slack_id
    return channel.name is not None and channel.name.lower() == ref.name


def _members(caller: Caller, refs: list[MemberRef]) -> dict[MemberRef, tuple[int, str]]:
    """Each ref naming a member of the team -> (member id, tz), and the caller as ME, in one query."""
    handles = {r.handle for r in refs if r.handle}
    by_id: dict[int, MemberRef] = {}
    for ref in refs:
        if ref.slack_id is not None:
            try:
                by_id[ids.decode(ref.slack_id, ids.USER_PREFIXES)] = ref
            except ids.BadId:
                pass  # names nobody: the ref stays unresolved
    rows = (
        Member.objects.filter(team_id=caller.team_id)
        .alias(handle=Lower("name"))
        .filter(Q(id=caller.member_id) | Q(handle__in=handles) | Q(id__in=list(by_id)))
        .values_list("id", "name", "tz")
    )
    found: dict[MemberRef, tuple[int, str]] = {}
    for member_id, name, tz in rows:
        if member_id == caller.member_id:
            found[ME] = (member_id, tz)
        if name.lower() in handles:
            found[MemberRef(handle=name.lower())] = (member_id, tz)
        if member_id in by_id:
            found[by_id[member_id]] = (member_id, tz)
    return found


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _micros(day: date | None, zone: ZoneInfo) -> int | None:
    """Midnight starting `day` in the searcher's timezone, as a message ts in microseconds."""
    if day is None:
        return None
    # No message is older than 1970; clamping keeps far-off years convertible in every zone.
    day = min(max(day, _EARLIEST), _LATEST)
    return int(datetime.combine(day, time(), zone).timestamp()) * 1_000_000

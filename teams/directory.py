"""The team directory: which shard holds a team. Cached, since every request asks."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count

from teams import ids
from teams.errors import ApiError
from teams.models import Team

DIRECTORY_CACHE_SECS = 60  # a move/disable also deletes the key, so this only bounds staleness
# A moving team's entry changes again within seconds; a request that read it just before the
# flip and cached it just after must not keep the team frozen for a minute.
MOVING_CACHE_SECS = 1


@dataclass(frozen=True)
class TeamEntry:
    id: int
    domain: str
    name: str
    shard: str
    status: str

    @property
    def slack_id(self) -> str:
        return ids.encode(ids.TEAM, self.id)

    @property
    def is_open(self) -> bool:
        return self.status == Team.Status.ACTIVE


def _cache_key(team_id: int) -> str:
    return f"team:{team_id}"


def _entry(team: Team) -> TeamEntry:
    return TeamEntry(team.id, team.domain, team.name, team.shard, team.status)


def team_entry(team_id: int, cached: dict | None = None) -> TeamEntry:
    """The directory entry of a team; `cached` is a value already fetched with get_many."""
    if cached is None:
        cached = cache.get(_cache_key(team_id))
    if cached is not None:
        return TeamEntry(**cached)
    team = Team.objects.filter(id=team_id).first()
    if team is None:
        raise ApiError("team_not_found")
    entry = _entry(team)
    ttl = MOVING_CACHE_SECS if team.status == Team.Status.MOVING else DIRECTORY_CACHE_SECS
    cache.set(_cache_key(team_id), asdict(entry), ttl)
    return entry


def team_entry_cache_key(team_id: int) -> str:
    return _cache_key(team_id)


def team_by_domain(domain: str) -> TeamEntry:
    team = Team.objects.filter(domain=domain).first()
    if team is None:
        raise ApiError("team_not_found", f"no team with domain {domain!r}")
    return _entry(team)


def forget_team(team_id: int) -> None:
    """Call after changing a Team row (status, shard, name)."""
    cache.delete(_cache_key(team_id))


def accepts_new_teams(alias: str) -> bool:
    return alias not in settings.SHARDS_CLOSED


def place_new_team(requested: str | None = None) -> str:
    """The shard for a new team: the one asked for (even a closed one: an operator's
    choice), else by the placement policy among the shards open to new teams."""
    if requested:
        if requested not in settings.SHARD_ALIASES:
            raise ApiError(
                "invalid_shard", f"{requested!r} is not one of {', '.join(settings.SHARD_ALIASES)}"
            )
        return requested
    aliases = [alias for alias in settings.SHARD_ALIASES if accepts_new_teams(alias)]
    if not aliases:
        raise ApiError("no_shards", "no shard takes new teams (CHAT_SHARD_URLS, CHAT_SHARDS_CLOSED)")
    counts = dict(Team.objects.values_list("shard").annotate(n=Count("id")).values_list("shard", "n"))
    if settings.SHARD_PLACEMENT == "round_robin":
        return aliases[Team.objects.count() % len(aliases)]
    return min(aliases, key=lambda alias: (counts.get(alias, 0), alias))

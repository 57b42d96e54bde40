"""What the search tests share: posting, indexing (the job's own function) and searching
through the Web API, and moving a message in time."""

from __future__ import annotations

from datetime import datetime

from chatproject.dbrouter import on_shard
from messaging.models import Message
from messaging.search.index import reindex_team
from teams import ids
from tests.conftest import TeamWorld


def ok(answer: dict) -> dict:
    assert answer["ok"], answer
    return answer


def post(api, token: str, channel: str, text: str, **args) -> str:
    return ok(api("chat.postMessage", token, channel=channel, text=text, **args))["ts"]


def index(*teams: TeamWorld) -> None:
    for team in teams:
        reindex_team(team.team.shard, team.team.id)


def search(api, token: str, query: str, **args) -> dict:
    return ok(api("search.messages", token, query=query, **args))["messages"]


def set_day(team: TeamWorld, ts: str, when: datetime) -> None:
    """Move a message in time (ts is the only clock search reads)."""
    with on_shard(team.team.shard):
        Message.objects.filter(team_id=team.team.id, ts=ids.parse_ts(ts)).update(
            ts=int(when.timestamp()) * 1_000_000
        )

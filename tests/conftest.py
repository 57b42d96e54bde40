"""The small named world every test shares: two teams on two shards.

acme (shard_0): alice (owner), bob, carol; #general, #random, private #secret (alice, bob).
globex (shard_1): dave (owner).

Its channels open with Slack's channel_join messages of how they got there: #general with
bob's and carol's (they joined the team), #secret with alice's (she made it) and bob's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from chatproject.dbrouter import on_shard
from messaging.actions.channels import create_channel, invite
from messaging.models import JOIN_LEAVE_SUBTYPES, Channel
from teams import ids
from teams.actions import create_member, create_team
from teams.auth import caller_from_token
from teams.directory import TeamEntry
from tests.browser import chromium, web_server  # noqa: F401 - browser fixtures


@dataclass
class Person:
    user_id: str
    token: str


@dataclass
class TeamWorld:
    team: TeamEntry
    people: dict[str, Person]
    bot: Person
    channels: dict[str, str]

    def __getitem__(self, name: str) -> Person:
        return self.people[name]


@dataclass
class World:
    acme: TeamWorld
    globex: TeamWorld


class Api:
    """Calls /api/<method> through Django's test client, as a given token."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __call__(self, method: str, token: str | None = None, **args: Any) -> dict[str, Any]:
        response = self.raw(method, token, **args)
        return response.json()

    def raw(self, method: str, token: str | None = None, **args: Any) -> Any:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        return self.client.post(
            f"/api/{method}", data=json.dumps(args), content_type="application/json", **headers
        )


def build_team(domain: str, owner: str, shard: str, others: list[str]) -> TeamWorld:
    """A new team (its owner, `others`, a bot, #general and #random) on `shard`."""
    created = create_team(domain, domain.title(), f"{owner}@{domain}.test", password="pw", shard=shard)
    team = created.team
    people = {owner: Person(created.as_json()["owner"]["user_id"], created.owner_token)}  # type: ignore[index]
    for name in others:
        member, token = create_member(team, f"{name}@{domain}.test", name=name.title(), password="pw")
        people[name] = Person(member.slack_id, token)
    bot = Person(created.as_json()["bot"]["user_id"], created.bot_token)  # type: ignore[index]
    with on_shard(shard):
        channels = {c.name or "": c.slack_id for c in Channel.objects.filter(team_id=team.id)}
    return TeamWorld(team, people, bot, channels)


def build_world() -> World:
    acme = build_team("acme", "alice", "shard_0", ["bob", "carol"])
    globex = build_team("globex", "dave", "shard_1", [])
    alice = caller_from_token(acme["alice"].token)
    with on_shard(acme.team.shard):
        secret = create_channel(alice, "secret", is_private=True)
        invite(alice, secret.slack_id, [acme["bob"].user_id])
        acme.channels["secret"] = secret.slack_id
    return World(acme, globex)


def without_joins(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages but the system ones of who came and went (the world's own joins among
    them), for a test about something else."""
    return [m for m in messages if m.get("subtype") not in JOIN_LEAVE_SUBTYPES]


def member_pk(user_id: str) -> int:
    return ids.decode(user_id, ids.USER_PREFIXES)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # The real hasher is slow on purpose; tests create many accounts.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db: None) -> World:
    """Needs `pytestmark = pytest.mark.django_db(databases="__all__")` in the module."""
    return build_world()


@pytest.fixture
def api(client: Client) -> Api:
    return Api(client)


@pytest.fixture
def forget_suspicion() -> None:
    """No host suspect from an earlier test: local upstreams reuse ports, and a reused
    port's suspicion (kept an hour) would hold back a later test's healthy upstream."""
    from jobs.suspect import forget_every_suspicion

    forget_every_suspicion()


@pytest.fixture
def fresh_sign_in_counts() -> None:
    """No failed sign-in counted by an earlier test or run: Redis outlives the test
    databases, and a 15-minute window's counts would refuse a later test's first try."""
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    for key in redis.scan_iter("signin-fail:*"):
        redis.delete(key)

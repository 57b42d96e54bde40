"""Teams built in bulk with the ORM for the benches: teams.actions.create_team for the team,
then bulk_create of members, channels and memberships on the team's shard; tokens through
teams.tokens.issue_token. Bulk rows append no events, so boot_version is bumped after.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass

FIRST_NAMES = (
    "Ada Alan Barbara Brian Carla Chen Dana Diego Elena Emeka Fatima Farid Grace Gustav Hana Hugo "
    "Ines Ivan Jana Jorge Kemal Kira Lena Luis Maya Mateo Nadia Noah Olga Omar Priya Pavel Quinn "
    "Rosa Ravi Sara Sven Tara Tomas Uma Umar Vera Victor Wen Will Xena Yusuf Yara Zoe Zhang"
).split()
LAST_NAMES = (
    "Abe Baker Costa Diaz Evans Fischer Garcia Hansen Ito Jensen Kowalski Lopez Moreau Nakamura "
    "Okafor Petrov Quist Rossi Singh Tanaka Ueda Varga Weber Xu Yilmaz Zimmermann Novak Silva "
    "Haddad Kim Murphy Nguyen Olsen Park Reyes Schmidt Torres Walsh Young"
).split()
TITLES = ("", "", "Engineer", "Designer", "Product Manager", "Support", "Sales", "Data Scientist", "SRE")
TIMEZONES = ("UTC", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Asia/Kolkata")


@dataclass(frozen=True)
class BenchTeam:
    team_id: int
    slack_id: str
    domain: str
    shard: str
    owner_id: int
    owner_token: str


@dataclass(frozen=True)
class ChannelSpec:
    name: str | None
    kind: str  # messaging.models.Channel.Kind value
    member_ids: list[int]
    creator_id: int | None = None
    is_general: bool = False
    dm_key: str | None = None


def create_bench_team(label: str) -> BenchTeam:
    """A fresh team (owner, bot, #general, #random) through teams.actions.create_team."""
    from teams.actions import create_team

    domain = f"{label}-{secrets.token_hex(4)}"
    created = create_team(domain, f"Bench {label}", f"owner@{domain}.test")
    return BenchTeam(
        created.team.id,
        created.team.slack_id,
        domain,
        created.team.shard,
        created.owner_id,
        created.owner_token,
    )


def mint_ids(alias: str, count: int) -> list[int]:
    """`count` fresh row ids from the database's own chat_next_id().

    bulk_create cannot return ids that come from a db_default, so the bench asks for
    them first and inserts them explicitly.
    """
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT chat_next_id() FROM generate_series(1, %s)", [count])
        return [int(row[0]) for row in cursor.fetchall()]


def add_members(team: BenchTeam, count: int, batch: int = 2000) -> list[int]:
    """`count` members without accounts (token-only), in bulk; returns their ids in order."""
    from django.db import transaction

    from chatproject.dbrouter import on_shard
    from teams.models import Member

    now = int(time.time())
    ids = mint_ids(team.shard, count)
    rng = random.Random(count)
    with on_shard(team.shard), transaction.atomic(using=team.shard):
        for start in range(0, count, batch):
            rows = []
            for i in range(start, min(count, start + batch)):
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                handle = f"{first}.{last}{i}".lower()
                rows.append(
                    Member(
                        id=ids[i],
                        team_id=team.team_id,
                        name=handle,
                        real_name=f"{first} {last}",
                        display_name=first if i % 3 else "",
                        email=f"{handle}@{team.domain}.test",
                        title=rng.choice(TITLES),
                        tz=rng.choice(TIMEZONES),
                        # Real avatars carry a hash: incompressible, as in a real boot payload.
                        avatar_hash=f"{rng.getrandbits(128):032x}",
                        color=f"{rng.getrandbits(24):06x}",
                        updated=now - rng.randrange(86400 * 365),
                    )
                )
            Member.objects.bulk_create(rows)
    return ids


def add_channels(team: BenchTeam, specs: list[ChannelSpec], batch: int = 5000) -> list[int]:
    """Channels and their memberships in bulk; returns the channel ids in spec order."""
    from django.db import transaction

    from chatproject.dbrouter import on_shard
    from messaging.models import Channel, ChannelMember

    now = int(time.time())
    ids = mint_ids(team.shard, len(specs))
    with on_shard(team.shard), transaction.atomic(using=team.shard):
        channels = Channel.objects.bulk_create(
            [
                Channel(
                    id=channel_id,
                    team_id=team.team_id,
                    name=s.name,
                    kind=s.kind,
                    creator_id=s.creator_id,
                    created=now,
                    is_general=s.is_general,
                    dm_key=s.dm_key,
                    purpose=f"benchmark channel {s.name}" if s.name else "",
                )
                for channel_id, s in zip(ids, specs, strict=True)
            ],
            batch_size=batch,
        )
        memberships = (
            ChannelMember(team_id=team.team_id, channel_id=c.id, member_id=m)
            for c, s in zip(channels, specs, strict=True)
            for m in s.member_ids
        )
        while chunk := [row for _, row in zip(range(batch), memberships, strict=False)]:
            ChannelMember.objects.bulk_create(chunk)
    return [c.id for c in channels]


def join_channel(team: BenchTeam, channel_id: int, member_ids: list[int]) -> None:
    """Add memberships to an existing channel (e.g. everyone to #general), skipping existing ones."""
    from chatproject.dbrouter import on_shard
    from messaging.models import ChannelMember

    with on_shard(team.shard):
        ChannelMember.objects.bulk_create(
            [ChannelMember(team_id=team.team_id, channel_id=channel_id, member_id=m) for m in member_ids],
            batch_size=5000,
            ignore_conflicts=True,
        )


def channel_id_by_name(team: BenchTeam, name: str) -> int:
    from chatproject.dbrouter import on_shard
    from messaging.models import Channel

    with on_shard(team.shard):
        return int(Channel.objects.get(team_id=team.team_id, name=name).id)


def issue_tokens(team: BenchTeam, member_ids: list[int]) -> list[str]:
    """One user token per member through teams.tokens.issue_token, in one transaction."""
    from django.db import transaction

    from teams.models import ApiToken
    from teams.tokens import issue_token

    with transaction.atomic(using="default"):
        return [issue_token(team.team_id, m, ApiToken.Kind.USER) for m in member_ids]


def bump_boot_version(team: BenchTeam) -> None:
    """Invalidate the team-wide boot cache (rtm.start keys it by EventSequence.boot_version)."""
    from django.db.models import F

    from chatproject.dbrouter import on_shard
    from messaging.models import EventSequence

    with on_shard(team.shard):
        EventSequence.objects.filter(team_id=team.team_id).update(boot_version=F("boot_version") + 1)


def analyze(team: BenchTeam) -> None:
    """Vacuum and planner statistics for the tables benches bulk-load (members, channels,
    memberships, messages), on the team's shard: without statistics the first queries may
    scan every team's rows, and autovacuum would otherwise come round in the middle of the
    measurement. Only those tables: the whole database costs far more on a shard that
    earlier runs filled."""
    from django.db import connections

    from messaging.models import Channel, ChannelMember, Message
    from teams.models import Member

    tables = ", ".join(m._meta.db_table for m in (Member, Channel, ChannelMember, Message))
    with connections[team.shard].cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {tables}")


def user_slack_id(member_id: int) -> str:
    from teams import ids

    return ids.encode(ids.USER, member_id)


def slack_channel_id(channel_id: int, private: bool = False) -> str:
    from teams import ids

    return ids.encode(ids.PRIVATE if private else ids.PUBLIC, channel_id)

"""Importing into an existing team that is still empty, as `teams.actions.create_team`
left it: its owner, its bot, #general and #random, and nothing said yet. This module
reads (what the team holds, which of its channels an archive's conversations become);
the writes are in jobs.slack_export.existing_actions.

"Empty" means: no messages but the system messages of its setup (SETUP_SUBTYPES), no
reactions or pins, and no person besides its one owner (bots, channels, the setup's
messages and custom emoji are setup, not content, and stay). The archive merges in:
- the owner keeps their member, account and tokens; an archive user with the owner's email
  (not deleted, not a bot) becomes that member, so their history is the owner's and the
  profile comes from the archive; otherwise the owner stays as they were, beside the
  archive's people;
- the team's bot and any other bots stay as they are, beside the archive's bots;
- the archive's general channel becomes the team's #general, and an archive conversation
  with the name of an existing channel (or the member set of an existing DM) becomes that
  channel: its row takes the archive's kind, name, topic, purpose and dates, and everyone
  already in it stays; existing channels the archive does not name stay as they were.
"""

from __future__ import annotations

from typing import Any, TypedDict

from chatproject.dbrouter import on_shard
from messaging.models import Channel, ChannelMember, Message, Pin, Reaction
from teams.errors import ApiError
from teams.models import Bot, Member, Team

# What an import may change on the rows an empty team already has: kept to put them back.
OWNER_FIELDS = ("name", "real_name", "display_name", "title", "phone", "tz", "color", "updated")
CHANNEL_FIELDS = (
    "kind", "name", "dm_key", "topic", "topic_creator_id", "topic_last_set", "purpose", "purpose_creator_id",
    "purpose_last_set", "is_archived", "is_general", "creator_id", "created", "last_ts", "latest_ts",
)  # fmt: skip

# The system messages that setting the team up posts (messaging.actions.channels): who came
# and went, a channel's name, its archiving. Nobody wrote them; they stay with the channels
# and members they name, which the import keeps (and puts back if it fails). A topic or
# purpose message is content: its text is someone's words, and it would contradict the
# topic or purpose the archive gives the channel.
SETUP_SUBTYPES = ("channel_join", "channel_leave", "channel_name", "channel_archive", "channel_unarchive")


class TeamSnapshot(TypedDict):
    """What an empty team held when an import claimed it, kept in the job's options (as
    JSON) to put the team back if the import fails."""

    status: str
    owner: dict[str, Any] | None  # id, account_id, email, is_owner, deleted and OWNER_FIELDS
    members: list[int]
    bots: list[int]
    channels: list[dict[str, Any]]  # id and CHANNEL_FIELDS
    memberships: list[tuple[int, int]]  # (id, last_read): two-item lists once stored as JSON
    messages: list[int]  # the setup's system messages (a snapshot from before them has none)


def not_empty(team: Team, why: str) -> ApiError:
    return ApiError(
        "team_not_empty",
        f"team {team.domain!r} is not empty ({why}); import into a new team or an empty one",
    )


def owner_account(team: Team) -> int | None:
    with on_shard(team.shard):
        return (
            Member.objects.filter(team_id=team.id, is_owner=True, is_bot=False, deleted=False)
            .values_list("account_id", flat=True)
            .first()
        )


def team_snapshot(team: Team) -> TeamSnapshot:
    """What the team holds; refused (team_not_empty) unless it is empty."""
    with on_shard(team.shard):
        messages = Message.objects.filter(team_id=team.id)
        if messages.exclude(subtype__in=SETUP_SUBTYPES).exists():
            raise not_empty(team, "it has messages")
        if Reaction.objects.filter(team_id=team.id).exists() or Pin.objects.filter(team_id=team.id).exists():
            raise not_empty(team, "it has reactions or pins")
        people = list(
            Member.objects.filter(team_id=team.id, is_bot=False).values(
                "id", "account_id", "email", "is_owner", "deleted", *OWNER_FIELDS
            )
        )
        if len(people) > 1 or any(not p["is_owner"] or p["deleted"] for p in people):
            raise not_empty(team, "it has members besides its owner and bots")
        return {
            "status": Team.Status.ACTIVE,
            "owner": people[0] if people else None,
            "members": list(Member.objects.filter(team_id=team.id).values_list("id", flat=True)),
            "bots": list(Bot.objects.filter(team_id=team.id).values_list("id", flat=True)),
            "channels": list(Channel.objects.filter(team_id=team.id).values("id", *CHANNEL_FIELDS)),
            "memberships": list(ChannelMember.objects.filter(team_id=team.id).values_list("id", "last_read")),
            "messages": list(messages.values_list("id", flat=True)),
        }


def general_channel(existing: TeamSnapshot) -> int | None:
    """The team's general channel: it stays general whatever archive conversation it becomes."""
    return next((c["id"] for c in existing["channels"] if c["is_general"]), None)


def matched_channels(
    existing: TeamSnapshot, conversations: list[tuple[str, str, bool, str | None]]
) -> dict[str, int]:
    """Archive conversation id -> the existing channel it becomes. `conversations` are
    (slack id, name or "", is_general, dm_key with this team's member ids or None)."""
    by_name = {c["name"]: c["id"] for c in existing["channels"] if c["name"]}
    by_dm_key = {c["dm_key"]: c["id"] for c in existing["channels"] if c["dm_key"]}
    general = general_channel(existing)
    matched: dict[str, int] = {}
    for slack_id, name, is_general, dm_key in conversations:
        found = general if is_general and general else by_dm_key.get(dm_key) if dm_key else by_name.get(name)
        if found is not None and found not in matched.values():
            matched[slack_id] = found
    return matched

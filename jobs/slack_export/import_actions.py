"""Every write an import makes. The team exists from the start as an `importing`
directory row (invisible to members); each step below is one transaction on the team's
shard and can run twice (rows carry ids chosen up front, or conflict on their natural
keys), which is what makes a killed import resumable. History is not replayed into the
event log: one `team_imported` event marks the completed import.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX, make_password
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from chatproject.dbrouter import CONTROL_DB, on_shard
from jobs.slack_export.bulk import copy_keyed, insert_rows, jsonb
from jobs.slack_export.manifest import IM, MPIM, ExportConversation, ExportUser
from jobs.slack_export.messages import IdMap, MessageRow
from messaging.events import TEAM_IMPORTED, append_event
from messaging.models import Channel, ChannelMember, Event, Message, Pin, Reaction
from messaging.search.index import VECTOR_SQL
from teams.directory import TeamEntry, forget_team
from teams.errors import ApiError
from teams.models import Account, ApiToken, Bot, Member, Team, TeamMembership
from teams.moves import set_events_frozen
from teams.shard_copy import delete_team_rows

_KIND = {
    "public": Channel.Kind.PUBLIC,
    "private": Channel.Kind.PRIVATE,
    IM: Channel.Kind.IM,
    MPIM: Channel.Kind.MPIM,
}


def reserve_team(team_id: int, domain: str, name: str, shard: str) -> TeamEntry:
    """The directory row, `importing` until the import completes (idempotent)."""
    Team.objects.get_or_create(
        id=team_id, defaults={"domain": domain, "name": name, "shard": shard, "status": Team.Status.IMPORTING}
    )
    return TeamEntry(team_id, domain, name, shard, Team.Status.IMPORTING)


def accounts_by_email(emails: Sequence[str]) -> dict[str, int]:
    """Sign-in accounts for these emails, created without a usable password where missing.

    An account someone already signs in to (it has a password) is left out: an archive
    naming its email proves nothing about who holds it, so that person's imported member
    stays unclaimed until they accept an invitation with their password
    (teams.actions.create_member claims it then)."""
    found: dict[str, int] = {}
    for start in range(0, len(emails), 1000):
        chunk = list(emails[start : start + 1000])
        existing = set(Account.objects.filter(email__in=chunk).values_list("email", flat=True))
        missing = [Account(email=e, password=make_password(None)) for e in chunk if e not in existing]
        Account.objects.bulk_create(missing, ignore_conflicts=True)
        # Read after the insert: an account made meanwhile with a password (an invitation
        # accepted between the two reads) is someone's, whoever inserted it first.
        linkable = Account.objects.filter(email__in=chunk, password__startswith=UNUSABLE_PASSWORD_PREFIX)
        found.update(linkable.values_list("email", "id"))
    return found


@dataclass(frozen=True)
class MemberPlan:
    user: ExportUser
    member_id: int
    account_id: int | None
    is_owner: bool


def write_members(team: TeamEntry, members: Sequence[MemberPlan], id_map: IdMap) -> None:
    columns = [
        "id", "team_id", "account_id", "name", "real_name", "display_name", "email", "title", "phone", "tz",
        "avatar_hash", "color", "is_admin", "is_owner", "is_bot", "bot_id", "deleted", "updated",
    ]  # fmt: skip
    rows = []
    for plan in members:
        user = plan.user
        bot_id = id_map.bots.get(user.bot_slack_id) if user.is_bot else None
        rows.append(
            (plan.member_id, team.id, plan.account_id, user.name, user.real_name, user.display_name,
             user.email, user.title, user.phone, user.tz, "", user.color, user.is_admin or plan.is_owner,
             user.is_owner or plan.is_owner, user.is_bot, bot_id, user.deleted, user.updated)
        )  # fmt: skip
    bots = [
        (
            id_map.bots[p.user.bot_slack_id],
            team.id,
            p.user.name,
            p.member_id,
            "",
            p.user.deleted,
            p.user.updated,
        )
        for p in members
        if p.user.is_bot and p.user.bot_slack_id in id_map.bots
    ]
    with on_shard(team.shard), transaction.atomic(using=team.shard):
        with connections[team.shard].cursor() as cursor:
            insert_rows(cursor, Member._meta.db_table, columns, rows)
            insert_rows(
                cursor,
                Bot._meta.db_table,
                ["id", "team_id", "name", "member_id", "app_id", "deleted", "updated"],
                bots,
            )


def _meta(value: tuple[str, str, int], id_map: IdMap) -> tuple[str, int | None, int]:
    return value[0], id_map.users.get(value[1]), value[2]


def dm_key(member_ids: Iterable[int]) -> str:
    """A DM's key: its members' ids, sorted (as messaging.actions.dms.open_dm makes it)."""
    return "-".join(str(m) for m in sorted(set(member_ids)))


def write_conversations(
    team: TeamEntry,
    conversations: Sequence[ExportConversation],
    id_map: IdMap,
    *,
    existing: Collection[int] = (),
    general: int | None = None,
    also_in_general: Collection[int] = (),
) -> None:
    """Channels and memberships. A channel in `existing` (an empty team's own, see
    jobs.slack_export.existing) is updated to the archive's instead of inserted; `general`,
    the team's general channel, stays its public general channel whichever conversation
    it becomes (an archive may flag none, yet name one "general"); members in
    `also_in_general` join the general channel (an importing owner the archive lacks)."""
    columns = [
        "id", "team_id", "kind", "name", "dm_key", "topic", "topic_creator_id", "topic_last_set", "purpose",
        "purpose_creator_id", "purpose_last_set", "is_archived", "is_general", "creator_id", "created",
        "last_ts", "latest_ts",
    ]  # fmt: skip
    rows, updates, memberships = [], [], []
    for conv in conversations:
        channel_id = id_map.channels[conv.slack_id]
        members = [id_map.users[m] for m in conv.members]
        is_general = conv.is_general or channel_id == general
        if is_general:
            members.extend(m for m in also_in_general if m not in members)
        key = dm_key(members) if conv.kind in (IM, MPIM) else None
        kind = Channel.Kind.PUBLIC if is_general else _KIND[conv.kind]
        topic, purpose = _meta(conv.topic, id_map), _meta(conv.purpose, id_map)
        row = (
            channel_id, team.id, kind, None if key else conv.name, key, *topic, *purpose,
            conv.is_archived and not is_general, is_general, id_map.users.get(conv.creator), conv.created,
            0, None,
        )  # fmt: skip
        if channel_id in existing:
            updates.append(dict(zip(columns[2:-2], row[2:-2], strict=True)) | {"id": channel_id})
        else:
            rows.append(row)
        memberships.extend((team.id, channel_id, member, 0) for member in members)
    with on_shard(team.shard), transaction.atomic(using=team.shard):
        rewrite_channels(team.id, updates)
        with connections[team.shard].cursor() as cursor:
            insert_rows(cursor, Channel._meta.db_table, columns, rows)
            now = timezone.now()
            insert_rows(
                cursor,
                ChannelMember._meta.db_table,
                ["team_id", "channel_id", "member_id", "last_read", "joined"],
                [(*m, now) for m in memberships],
            )


def rewrite_channels(team_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """Give existing channels new values (each row: "id" and the fields), in the caller's
    transaction. Names go out of the way first: two channels may swap names."""
    channels = Channel.objects.filter(team_id=team_id)
    if rows:
        channels.filter(id__in=[row["id"] for row in rows]).update(name=None)
    for row in rows:
        channels.filter(id=row["id"]).update(**{k: v for k, v in row.items() if k != "id"})


_MESSAGE_COLUMNS = [
    "team_id", "channel_id", "ts", "user_id", "bot_id", "username", "text", "subtype", "thread_ts",
    "reply_count", "reply_users", "edited_ts", "edited_by", "is_deleted", "client_msg_id", "mentions",
    "mentions_all", "attachments", "blocks", "files", "extra",
]  # fmt: skip


@dataclass(frozen=True)
class PinRow:
    channel_id: int
    ts: int
    pinned_by: int
    created: int


def write_messages(team: TeamEntry, batch: Sequence[tuple[int, MessageRow]], pins: Sequence[PinRow]) -> None:
    """One batch of (channel id, message) with their reactions and pins, in one transaction."""
    messages = [
        (team.id, channel_id, m.ts, m.user_id, m.bot_id, m.username, m.text, m.subtype, m.thread_ts, 0, [],
         m.edited_ts, m.edited_by, m.is_deleted, m.client_msg_id, m.mentions, m.mentions_all,
         jsonb(m.attachments), jsonb(m.blocks), jsonb(m.files), jsonb(m.extra))
        for channel_id, m in batch
    ]  # fmt: skip
    reactions = [(channel_id, m.ts, name, member) for channel_id, m in batch for name, member in m.reactions]
    with on_shard(team.shard), transaction.atomic(using=team.shard):
        with connections[team.shard].cursor() as cursor:
            # Searchable on arrival: the vector is computed as the row goes in, not by a
            # second pass rewriting every row (messaging.search.index's own expression).
            insert_rows(
                cursor, Message._meta.db_table, _MESSAGE_COLUMNS, messages, {"search_vector": VECTOR_SQL}
            )
            if reactions:
                copy_keyed(
                    cursor,
                    "import_reactions",
                    "ord int, channel_id bigint, ts bigint, name text, member_id bigint",
                    [(i, *r) for i, r in enumerate(reactions)],
                )
                cursor.execute(_JOIN_REACTIONS, [team.id, team.id])
            _write_pins(cursor, team, pins)


# Reactions keep their archive order: ids are minted in insertion order.
_JOIN_REACTIONS = """
INSERT INTO messaging_reaction (team_id, message_id, name, member_id, created)
SELECT %s, m.id, r.name, r.member_id, to_timestamp(r.ts / 1e6)
  FROM import_reactions r JOIN messaging_message m ON m.channel_id = r.channel_id AND m.ts = r.ts
 WHERE m.team_id = %s
 ORDER BY r.ord
ON CONFLICT DO NOTHING
"""

_JOIN_PINS = """
INSERT INTO messaging_pin (team_id, channel_id, message_id, pinned_by, created)
SELECT %s, p.channel_id, m.id, p.pinned_by, p.created
  FROM import_pins p JOIN messaging_message m ON m.channel_id = p.channel_id AND m.ts = p.ts
 WHERE m.team_id = %s
ON CONFLICT DO NOTHING
"""


def _write_pins(cursor: object, team: TeamEntry, pins: Sequence[PinRow]) -> None:
    if pins:
        rows = [(p.channel_id, p.ts, p.pinned_by, p.created) for p in pins]
        copy_keyed(
            cursor, "import_pins", "channel_id bigint, ts bigint, pinned_by bigint, created bigint", rows
        )
        cursor.execute(_JOIN_PINS, [team.id, team.id])  # type: ignore[attr-defined]


# Thread counters from the replies, wherever in the archive they sat; first repliers first.
_THREADS = """
WITH replies AS (
    SELECT channel_id, thread_ts, user_id, ts FROM messaging_message
     WHERE team_id = %(team)s AND thread_ts IS NOT NULL AND thread_ts <> ts
), firsts AS (
    SELECT channel_id, thread_ts, user_id, min(ts) AS first FROM replies
     WHERE user_id IS NOT NULL GROUP BY 1, 2, 3
), repliers AS (
    SELECT channel_id, thread_ts, array_agg(user_id ORDER BY first) AS users FROM firsts GROUP BY 1, 2
), counts AS (
    SELECT channel_id, thread_ts, count(*) AS n, max(ts) AS latest FROM replies GROUP BY 1, 2
)
UPDATE messaging_message p
   SET thread_ts = p.ts, reply_count = c.n, latest_reply = c.latest, reply_users = coalesce(r.users, '{}')
  FROM counts c LEFT JOIN repliers r USING (channel_id, thread_ts)
 WHERE p.team_id = %(team)s AND p.channel_id = c.channel_id AND p.ts = c.thread_ts
"""

# New posts must get a later ts than any imported one; imported history counts as read.
_CHANNEL_HEADS = """
UPDATE messaging_channel c
   SET last_ts = GREATEST(c.last_ts, s.newest), latest_ts = s.latest
  FROM (SELECT channel_id, max(ts) AS newest,
               max(ts) FILTER (WHERE thread_ts IS NULL OR thread_ts = ts
                                  OR subtype = 'thread_broadcast') AS latest
          FROM messaging_message WHERE team_id = %(team)s GROUP BY channel_id) s
 WHERE c.id = s.channel_id;
UPDATE messaging_channelmember cm SET last_read = c.last_ts
  FROM messaging_channel c WHERE cm.channel_id = c.id AND cm.team_id = %(team)s AND c.team_id = %(team)s;
"""


def finish_threads(team: TeamEntry, pins: Sequence[PinRow]) -> None:
    with on_shard(team.shard), transaction.atomic(using=team.shard):
        with connections[team.shard].cursor() as cursor:
            # Fresh rows have no statistics yet; without them the planner nests loops over
            # every message (measured: 47 s instead of 1 s for 20k messages).
            cursor.execute(f"ANALYZE {Message._meta.db_table}")
            cursor.execute(_THREADS, {"team": team.id})
            cursor.execute(_CHANNEL_HEADS, {"team": team.id})
            _write_pins(cursor, team, pins)


def import_counts(team: TeamEntry) -> dict[str, int]:
    with on_shard(team.shard):
        messages = Message.objects.filter(team_id=team.id)
        return {
            "members": Member.objects.filter(team_id=team.id).count(),
            "channels": Channel.objects.filter(team_id=team.id).count(),
            "messages": messages.count(),
            "replies": messages.filter(thread_ts__isnull=False).exclude(thread_ts=F("ts")).count(),
            "reactions": Reaction.objects.filter(team_id=team.id).count(),
            "pins": Pin.objects.filter(team_id=team.id).count(),
        }


def complete_import(team: TeamEntry, counts: dict[str, int], *, name: str | None = None) -> None:
    """Open the team: memberships in the directory, one event, status active (and the
    event log thawed: an existing team's was frozen for the import)."""
    with on_shard(team.shard):
        accounts = list(
            Member.objects.filter(team_id=team.id, account_id__isnull=False).values_list("account_id", "id")
        )
        with transaction.atomic(using=team.shard):
            set_events_frozen(team.shard, team.id, False)
            if not Event.objects.filter(team_id=team.id, type=TEAM_IMPORTED).exists():
                append_event(team.id, TEAM_IMPORTED, {"counts": counts})
    with transaction.atomic(using=CONTROL_DB):
        TeamMembership.objects.bulk_create(
            [TeamMembership(account_id=a, team_id=team.id, member_id=m) for a, m in accounts],
            ignore_conflicts=True,
            batch_size=1000,
        )
        importing = Team.objects.filter(id=team.id, status=Team.Status.IMPORTING)
        opened = importing.update(status=Team.Status.ACTIVE, **({"name": name} if name else {}))
    forget_team(team.id)
    if not opened:  # someone else changed it meanwhile (disabled, say): theirs to reopen
        now = Team.objects.filter(id=team.id).values_list("status", flat=True).first() or "gone"
        raise ApiError("team_not_importing", f"the team is {now}, not importing: left as it is")


def discard_import(team_id: int, shard: str, *, rows_deleted: Callable[[], None] = lambda: None) -> None:
    """Remove everything a failed import wrote, so no partial team is left behind.
    Idempotent: the directory row, the last to go, keeps it `importing` until then."""
    _discard(team_id, shard, only_importing=True, rows_deleted=rows_deleted)


def discard_team(team_id: int, shard: str) -> None:
    """Delete a whole team (the import benchmark cleans up with this)."""
    _discard(team_id, shard, only_importing=False)


def _discard(
    team_id: int, shard: str, *, only_importing: bool, rows_deleted: Callable[[], None] = lambda: None
) -> None:
    if only_importing and not Team.objects.filter(id=team_id, status=Team.Status.IMPORTING).exists():
        return  # opened (or gone): a late failure must never delete a live team
    delete_team_rows(shard, team_id, keep=lambda table: False)
    rows_deleted()
    with transaction.atomic(using=CONTROL_DB):
        TeamMembership.objects.filter(team_id=team_id).delete()
        ApiToken.objects.filter(team_id=team_id).delete()
        teams = Team.objects.filter(id=team_id)
        (teams.filter(status=Team.Status.IMPORTING) if only_importing else teams).delete()
    forget_team(team_id)

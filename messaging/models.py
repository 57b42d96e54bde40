"""Team-scoped conversation data, all on the team's shard: channels, memberships,
messages, reactions, pins and custom emoji."""

from __future__ import annotations

from typing import ClassVar

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F, Func
from django.utils import timezone

from teams import ids
from teams.models import Member, TeamScopedModel


class Channel(TeamScopedModel):
    class Kind(models.TextChoices):
        PUBLIC = "public"
        PRIVATE = "private"
        IM = "im"
        MPIM = "mpim"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    # null, not "", for DMs: the unique constraints below only skip nulls.
    name = models.CharField(max_length=80, null=True, blank=True)  # noqa: DJ001
    # DMs and group DMs are found by their sorted member ids ("12-34-56").
    dm_key = models.CharField(max_length=400, null=True, blank=True)  # noqa: DJ001
    topic = models.CharField(max_length=250, blank=True, default="")
    topic_creator_id = models.BigIntegerField(null=True, blank=True)
    topic_last_set = models.BigIntegerField(default=0)
    purpose = models.CharField(max_length=250, blank=True, default="")
    purpose_creator_id = models.BigIntegerField(null=True, blank=True)
    purpose_last_set = models.BigIntegerField(default=0)
    is_archived = models.BooleanField(default=False)
    is_general = models.BooleanField(default=False)
    creator_id = models.BigIntegerField(null=True, blank=True)
    created = models.BigIntegerField()  # unix seconds, as Slack's `created`
    # The last ts handed out here; bumping it under the row lock keeps ts unique and
    # strictly increasing in the channel, whichever process posts.
    last_ts = models.BigIntegerField(default=0)
    latest_ts = models.BigIntegerField(null=True, blank=True)  # newest top-level message

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["team_id", "name"],
                name="channel_name_per_team",
                condition=models.Q(name__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["team_id", "dm_key"],
                name="dm_per_member_set",
                condition=models.Q(dm_key__isnull=False),
            ),
        ]
        indexes: ClassVar[list[models.Index]] = [models.Index(fields=["team_id", "kind", "id"])]

    def __str__(self) -> str:
        return self.name or self.slack_id

    @property
    def slack_id(self) -> str:
        prefix = {self.Kind.PUBLIC: ids.PUBLIC, self.Kind.IM: ids.IM}.get(self.kind, ids.PRIVATE)  # type: ignore[call-overload]
        return ids.encode(prefix, self.id)

    @property
    def is_dm_like(self) -> bool:
        return self.kind in (self.Kind.IM, self.Kind.MPIM)


class ChannelMember(TeamScopedModel):
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="memberships")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="memberships")
    last_read = models.BigIntegerField(default=0)  # a message ts, in microseconds
    joined = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["channel", "member"], name="one_membership"),
        ]
        indexes: ClassVar[list[models.Index]] = [models.Index(fields=["member", "channel"])]

    def __str__(self) -> str:
        return f"{self.member_id} in {self.channel_id}"


# What the search index holds of a message: its words and its team's week, the SQL function
# SEARCH_ENTRIES_FUNCTION of SEARCH_ENTRIES_COLUMNS (messaging.search.sql builds its SQL from
# these too). Migration 0006 creates the function and the index; its frozen text repeats
# them, and changing either takes a new function, index and migration (see 0006).
SEARCH_ENTRIES_FUNCTION = "chat_search_entries"
SEARCH_ENTRIES_COLUMNS = ("search_vector", "team_id", "ts")
SEARCH_WEEK_US = 7 * 24 * 3600 * 1_000_000  # a week of ts, as the function counts them
_SEARCH_ENTRIES = Func(
    *(F(column) for column in SEARCH_ENTRIES_COLUMNS),
    function=SEARCH_ENTRIES_FUNCTION,
    output_field=SearchVectorField(),
)


# System messages of who came and went. group_* are in imported archives from before private
# channels were channels.
JOIN_LEAVE_SUBTYPES = ("channel_join", "channel_leave", "group_join", "group_leave")


class Message(TeamScopedModel):
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="messages")
    ts = models.BigIntegerField()  # microseconds; shown as "seconds.micros"
    user_id = models.BigIntegerField(null=True, blank=True)
    bot_id = models.BigIntegerField(null=True, blank=True)
    username = models.CharField(max_length=80, blank=True, default="")  # bot_message override
    text = models.TextField(blank=True, default="")
    subtype = models.CharField(max_length=40, blank=True, default="")
    thread_ts = models.BigIntegerField(null=True, blank=True)
    reply_count = models.IntegerField(default=0)
    reply_users = ArrayField(models.BigIntegerField(), default=list, blank=True)
    latest_reply = models.BigIntegerField(null=True, blank=True)
    edited_ts = models.BigIntegerField(null=True, blank=True)
    edited_by = models.BigIntegerField(null=True, blank=True)
    is_deleted = models.BooleanField(default=False)  # a tombstone keeps its thread
    client_msg_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    mentions = ArrayField(models.BigIntegerField(), default=list, blank=True)
    mentions_all = models.BooleanField(default=False)  # <!here>, <!channel>, <!everyone>
    attachments = models.JSONField(null=True, blank=True)
    blocks = models.JSONField(null=True, blank=True)
    files = models.JSONField(null=True, blank=True)
    # The keys of a subtype (inviter, old_name...): kept verbatim by an import, or written
    # by a system message (messaging.actions.posting.insert_system_message).
    extra = models.JSONField(null=True, blank=True)
    # Written only by the search indexing job (messaging.search.index), after commit: null
    # until then, and for tombstones, which search never returns.
    search_vector = SearchVectorField(null=True, blank=True)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["channel", "ts"], name="ts_per_channel"),
            models.UniqueConstraint(
                fields=["team_id", "user_id", "client_msg_id"],
                name="client_msg_id_per_member",
                condition=models.Q(client_msg_id__isnull=False),
            ),
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["channel", "thread_ts", "ts"], name="message_thread"),
            # The words of each message and the week it was posted in, in its team
            # (chat_search_entries, migration 0006): the newest matches of a frequent term
            # are then found without reading the older ones. New entries wait in a pending
            # list that every search also scans: capped at 1 MB (not 4) so that scan stays
            # well under a millisecond, while indexing keeps most of the batching gain
            # (~20k vs ~7.5k messages/s).
            GinIndex(
                _SEARCH_ENTRIES,
                name="message_search_weeks",
                gin_pending_list_limit=1024,
            ),
            # Newest-first search across a team's channels walks this backwards and stops
            # after a page (or a bounded candidate set) of matches: common terms stay cheap.
            models.Index(fields=["team_id", "ts", "id"], name="message_team_ts"),
            # from:@someone: their messages without reading everyone's (a common word said
            # by one person is a small bitmap AND of this and the search index).
            models.Index(fields=["user_id", "ts"], name="message_author"),
        ]

    def __str__(self) -> str:
        return f"{self.channel_id}/{ids.format_ts(self.ts)}"


class Reaction(TeamScopedModel):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    name = models.CharField(max_length=100)
    member_id = models.BigIntegerField()
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["message", "name", "member_id"], name="one_reaction"),
        ]

    def __str__(self) -> str:
        return f":{self.name}: by {self.member_id}"


class Pin(TeamScopedModel):
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="pins")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="pins")
    pinned_by = models.BigIntegerField()
    created = models.BigIntegerField()

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["channel", "message"], name="one_pin"),
        ]

    def __str__(self) -> str:
        return f"pin of {self.message_id}"


class CustomEmoji(TeamScopedModel):
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500, blank=True, default="")
    alias_for = models.CharField(max_length=100, blank=True, default="")
    creator_id = models.BigIntegerField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["team_id", "name"], name="emoji_name_per_team"),
        ]

    def __str__(self) -> str:
        return f":{self.name}:"


class EventSequence(models.Model):
    """The head of a team's event log: the last event id handed out.

    Taking the row lock to bump it serializes a team's event appends in commit order,
    so a reader that has seen event N never later finds a committed event below N.
    """

    lives_on_shard: ClassVar[bool] = True
    team_id = models.BigIntegerField(primary_key=True)
    last_event_id = models.BigIntegerField(default=0)
    # Bumped with every event that changes the team-wide part of a boot payload (people,
    # public channels, emoji), so a cached payload is valid exactly while this matches.
    boot_version = models.BigIntegerField(default=0)
    # Set while the team moves to another shard (and left set on the shard it left): an
    # append checks it under the row lock, so no write can commit here once it is set.
    frozen = models.BooleanField(default=False, db_default=False)

    def __str__(self) -> str:
        return f"team {self.team_id} at event {self.last_event_id}"


class Event(TeamScopedModel):
    """One entry of a team's event log: what a realtime client replays after its cursor."""

    event_id = models.BigIntegerField()
    type = models.CharField(max_length=64)
    # Who may see it: the listed audience always; plus, with a channel, whoever can see
    # that channel; with neither, everyone in the team.
    channel_id = models.BigIntegerField(null=True, blank=True)
    audience = ArrayField(models.BigIntegerField(), null=True, blank=True)
    payload = models.JSONField()
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["team_id", "event_id"], name="event_id_per_team"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.event_id}"

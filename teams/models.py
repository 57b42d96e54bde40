"""Control-database models (accounts, the team directory, API tokens) and the team-scoped
member models that live on each team's shard."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone

from teams import ids


class NextId(models.Func):
    """`chat_next_id()`: a 64-bit, time-ordered id minted by the database (migration 0001)."""

    function = "chat_next_id"
    template = "%(function)s()"
    output_field = models.BigIntegerField()


def chat_id_field() -> models.BigIntegerField:
    return models.BigIntegerField(primary_key=True, db_default=NextId())


class TeamScopedModel(models.Model):
    """A row of one team's data: lives on that team's shard and carries team_id."""

    lives_on_shard: ClassVar[bool] = True
    id = chat_id_field()
    team_id = models.BigIntegerField()

    class Meta:
        abstract = True


# --- control database -------------------------------------------------------------


class AccountManager(BaseUserManager["Account"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> Account:
        account = self.model(email=self.normalize_email(email).lower(), **extra)
        account.set_password(password)
        account.save(using=self._db)
        return account

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> Account:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class Account(AbstractUser):
    """A person's sign-in, shared by all their teams (each team has its own Member)."""

    username = None  # type: ignore[assignment]
    email = models.EmailField(unique=True)
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []
    objects = AccountManager()  # type: ignore[misc]

    def __str__(self) -> str:
        return self.email


class Team(models.Model):
    """The team directory: which shard holds a team, and whether it is open for use."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        IMPORTING = "importing"  # not visible to members until the import completes
        MOVING = "moving"
        DISABLED = "disabled"

    id = chat_id_field()
    domain = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    shard = models.CharField(max_length=32, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.domain} ({self.slack_id})"

    @property
    def slack_id(self) -> str:
        return ids.encode(ids.TEAM, self.id)


class ApiToken(models.Model):
    """A Web API token. Only its SHA-256 is stored; the token text names its team."""

    class Kind(models.TextChoices):
        USER = "user"
        BOT = "bot"

    id = chat_id_field()
    key_hash = models.CharField(max_length=64, unique=True)
    team_id = models.BigIntegerField(db_index=True)
    member_id = models.BigIntegerField()
    bot_id = models.BigIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    scopes = models.CharField(max_length=500, default="")
    created = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes: ClassVar[list[models.Index]] = [models.Index(fields=["team_id", "member_id"])]

    def __str__(self) -> str:
        return f"{self.kind} token of {self.member_id} in team {self.team_id}"


class TeamMembership(models.Model):
    """Which teams an account belongs to, kept in the control DB so that signing in
    (listing a person's teams) asks one database instead of every shard."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="team_memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    member_id = models.BigIntegerField()

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["account", "team"], name="one_membership_per_team"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} in {self.team_id}"


class TeamMove(models.Model):
    """One move of a team to another shard, and how far it got: the move resumes from `step`
    after a crash (teams.moves), so each step is recorded once it is done."""

    class Step(models.TextChoices):
        PLANNED = "planned"
        TARGET_CLEARED = "target_cleared"  # leftovers of an earlier attempt removed from the target
        COPIED = "copied"  # bulk copy while the team keeps working
        CAUGHT_UP = "caught_up"  # rows changed during the bulk copy re-copied, still live
        FROZEN = "frozen"  # writes refused on the source, sockets told goodbye
        TAIL_COPIED = "tail_copied"
        VERIFIED = "verified"  # counts and checksums equal, table by table
        FLIPPED = "flipped"  # the directory points at the target
        CLEANED = "cleaned"  # the source's rows deleted: the move is done

    id = chat_id_field()
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="moves")
    source = models.CharField(max_length=32)
    target = models.CharField(max_length=32)
    step = models.CharField(max_length=16, choices=Step.choices, default=Step.PLANNED)
    copied_rows = models.BigIntegerField(default=0)
    frozen_at = models.DateTimeField(null=True, blank=True)
    freeze_ms = models.IntegerField(null=True, blank=True)  # how long writes were refused
    error = models.TextField(blank=True, default="")  # the last failure, for the admin
    started = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["team"],
                name="one_unfinished_move_per_team",
                condition=models.Q(finished__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"move of {self.team_id} {self.source} -> {self.target} at {self.step}"


# --- shard databases ----------------------------------------------------------------


class Member(TeamScopedModel):
    """A person (or a bot's user) inside one team."""

    account_id = models.BigIntegerField(null=True, blank=True)
    name = models.CharField(max_length=80)
    real_name = models.CharField(max_length=200, blank=True, default="")
    display_name = models.CharField(max_length=200, blank=True, default="")
    email = models.EmailField(blank=True, default="")
    title = models.CharField(max_length=200, blank=True, default="")
    phone = models.CharField(max_length=50, blank=True, default="")
    tz = models.CharField(max_length=64, default="UTC")
    avatar_hash = models.CharField(max_length=40, blank=True, default="")
    color = models.CharField(max_length=6, default="9f69e7")
    is_admin = models.BooleanField(default=False)
    is_owner = models.BooleanField(default=False)
    is_bot = models.BooleanField(default=False)
    bot_id = models.BigIntegerField(null=True, blank=True)
    deleted = models.BooleanField(default=False)
    updated = models.BigIntegerField(default=0)  # unix seconds, as Slack's `updated`

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["team_id", "account_id"],
                name="member_one_per_account",
                condition=models.Q(account_id__isnull=False),
            ),
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["team_id", "id"]),
            models.Index(fields=["team_id", "email"]),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slack_id})"

    @property
    def slack_id(self) -> str:
        return ids.encode(ids.USER, self.id)


class Bot(TeamScopedModel):
    """An app's bot: its own `B…` id plus the bot user (a Member) it speaks as."""

    name = models.CharField(max_length=80)
    member_id = models.BigIntegerField()
    app_id = models.CharField(max_length=32, blank=True, default="")
    deleted = models.BooleanField(default=False)
    updated = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} ({ids.encode(ids.BOT, self.id)})"

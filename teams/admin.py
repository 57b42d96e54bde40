"""Django admin for accounts, the team directory and tokens (control DB) and for members and
bots (team shards, through TeamScopedAdmin). Every write goes through teams.actions/tokens."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from jobs.admin_transfers import export_teams
from teams import ids
from teams.actions import create_member, create_team, reset_member_tokens, set_member_active, set_team_status
from teams.admin_moves import move_teams
from teams.admin_shards import (
    ISSUED_TOKENS_ATTR,
    ActionAdmin,
    TeamScopedAdmin,
    adopt,
    chosen_team,
    issued_tokens_response,
    require_writable,
)
from teams.errors import ApiError
from teams.models import Account, ApiToken, Bot, Member, Team, TeamMembership

admin.site.site_header = "Team chat administration"
admin.site.site_title = "Team chat admin"

# --- control database -------------------------------------------------------------


class AccountCreationForm(AdminUserCreationForm):
    class Meta:
        model = Account
        fields = ("email",)

    def clean_email(self) -> str:
        # The account manager stores emails lowercased; sign-in looks them up that way.
        email = self.cleaned_data["email"].strip().lower()
        if Account.objects.filter(email=email).exists():
            raise forms.ValidationError("An account with this email exists.")
        return email


class AccountChangeForm(UserChangeForm):
    class Meta:
        model = Account
        fields = "__all__"


@admin.register(Account)
class AccountAdmin(UserAdmin):
    """Sign-ins: Django's user admin, keyed by email (Account has no username). Accounts have
    no actions yet: names, password and staff flags are edited here directly."""

    form = AccountChangeForm
    add_form = AccountCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "usable_password", "password1", "password2")}),
    )
    list_display = ("email", "first_name", "last_name", "is_staff", "is_active")
    search_fields = ("email", "first_name", "last_name")
    ordering = ("email",)

    def get_readonly_fields(self, request: HttpRequest, obj: Account | None = None) -> Any:
        # Each Member on the shards keeps a copy of the email, and no action updates those copies yet.
        readonly = tuple(super().get_readonly_fields(request, obj))
        return (*readonly, "email") if obj is not None else readonly

    def has_delete_permission(self, request: HttpRequest, obj: Account | None = None) -> bool:
        # Members on the shards point at the account; deactivate it (is_active) instead.
        return False


class TeamCreationForm(forms.ModelForm):
    owner_email = forms.EmailField(help_text="The owner's sign-in; an existing account is reused.")
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput,
        help_text="Sets the owner account's password (leave empty to keep an existing one).",
    )
    shard = forms.ChoiceField(required=False, help_text="Leave empty to let the placement policy choose.")

    class Meta:
        model = Team
        fields = ("domain", "name")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["shard"].choices = [("", "(placement policy)"), *((a, a) for a in settings.SHARD_ALIASES)]

    def clean_domain(self) -> str:
        return str(self.cleaned_data["domain"]).strip().lower()


@admin.register(Team)
class TeamAdmin(ActionAdmin):
    """The team directory. Teams are created by create_team (members and channels on the
    shard first, then the directory row); shard and status change only through actions."""

    list_display = ("domain", "name", "slack_id", "shard", "status", "created")
    list_filter = ("shard", "status")
    search_fields = ("domain", "name")
    id_search_fields = ("id",)
    action_writes = frozenset({"add"})
    add_form = TeamCreationForm
    add_fields = ("domain", "name", "owner_email", "password", "shard")
    # Imports start from the upload page beside Transfer jobs (jobs.admin_transfers).
    actions = ("disable_teams", "enable_teams", move_teams, export_teams)

    def save_model(self, request: HttpRequest, obj: Team, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        created = create_team(
            data["domain"],
            data["name"],
            data["owner_email"],
            password=data["password"] or None,
            shard=data["shard"] or None,
        )
        adopt(obj, Team.objects.get(id=created.team.id))
        owner = ids.encode(ids.USER, created.owner_id)
        bot = ids.encode(ids.BOT, created.bot_id)
        setattr(
            obj,
            ISSUED_TOKENS_ATTR,
            [
                (f"owner {data['owner_email']} ({owner})", created.owner_token),
                (f"bot ({bot})", created.bot_token),
            ],
        )

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Team], status: str, verb: str) -> None:
        done: list[str] = []
        refused: list[tuple[str, str]] = []
        for team in list(queryset):
            # Importing and moving are owned by the import and move jobs; don't race them.
            if not set_team_status(team.id, status, only_from=(Team.Status.ACTIVE, Team.Status.DISABLED)):
                now = Team.objects.filter(id=team.id).values_list("status", flat=True).first() or "gone"
                refused.append((team.domain, f"team is {now}"))
                continue
            done.append(team.domain)
        self.report(request, verb, done, refused)

    @admin.action(
        description="Disable selected teams (members can no longer use them)", permissions=["run_actions"]
    )
    def disable_teams(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        self._set_status(request, queryset, Team.Status.DISABLED, "Disabled")

    @admin.action(description="Re-enable selected teams", permissions=["run_actions"])
    def enable_teams(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        self._set_status(request, queryset, Team.Status.ACTIVE, "Enabled")


@admin.register(ApiToken)
class ApiTokenAdmin(ActionAdmin):
    """Read-only: tokens are minted and revoked by members' actions (see MemberAdmin)."""

    list_display = ("id", "kind", "team_id", "member_id", "bot_id", "created", "revoked_at")
    list_filter = ("kind", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("team_id__exact", "member_id__exact")  # compared as text: a non-number finds nothing
    id_search_fields = ("team_id", "member_id", "bot_id")
    exclude = ("key_hash",)  # a hash of the secret: nothing an admin can use


@admin.register(TeamMembership)
class TeamMembershipAdmin(ActionAdmin):
    """Read-only: the control DB's index of an account's teams, written with the Member by
    create_team / create_member."""

    list_display = ("account", "team", "member_id")
    list_select_related = ("account", "team")
    search_fields = ("account__email", "team__domain")


@admin.register(LogEntry)
class LogEntryAdmin(ActionAdmin):
    """Read-only: the control DB's admin log, the record of which staff account changed what
    (admin-initiated actions on a team run as its owner, so this is where the staff member shows)."""

    list_display = ("action_time", "user", "content_type", "object_repr", "action_flag", "get_change_message")
    list_filter = ("action_flag", "content_type")
    search_fields = ("object_repr", "change_message")
    date_hierarchy = "action_time"


# --- team shards ------------------------------------------------------------------


class MemberCreationForm(forms.ModelForm):
    email = forms.EmailField(help_text="The person's sign-in; an existing account is reused.")
    name = forms.CharField(
        required=False, max_length=80, help_text="Full name; the handle is made from it, else from the email."
    )
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput,
        help_text="Sets the account's password (leave empty to keep an existing one).",
    )

    class Meta:
        model = Member
        fields = ("email", "is_admin")

    def clean_email(self) -> str:
        email = str(self.cleaned_data["email"]).strip().lower()
        account = Account.objects.filter(email=email).first()
        team = chosen_team()
        if account is not None and Member.objects.filter(team_id=team.id, account_id=account.pk).exists():
            raise forms.ValidationError(f"{email} is already in {team.domain}.")
        return email


@admin.register(Member)
class MemberAdmin(TeamScopedAdmin):
    """Members of the chosen team. Added by create_member; (de)activated by set_member_active,
    which revokes tokens on deactivation. Profile fields are read-only (no action edits them yet)."""

    list_display = ("name", "slack_id", "real_name", "email", "is_admin", "is_owner", "is_bot", "deleted")
    list_filter = ("is_admin", "is_owner", "is_bot", "deleted")
    search_fields = ("name", "real_name", "display_name", "email")
    id_search_fields = ("id", "bot_id")
    action_writes = frozenset({"add"})
    add_form = MemberCreationForm
    add_fields = ("email", "name", "password", "is_admin")
    actions = ("deactivate_members", "reactivate_members", "reset_tokens")

    def save_model(self, request: HttpRequest, obj: Member, form: forms.ModelForm, change: bool) -> None:
        team = chosen_team()
        require_writable(team)
        data = form.cleaned_data
        member, token = create_member(
            team,
            data["email"],
            name=data["name"] or None,
            password=data["password"] or None,
            is_admin=data["is_admin"],
        )
        adopt(obj, member)
        setattr(obj, ISSUED_TOKENS_ATTR, [(str(member), token)])

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Member], active: bool) -> None:
        team = chosen_team()
        done: list[str] = []
        refused: list[tuple[str, str]] = []
        for member in list(queryset):
            try:
                require_writable(team)
                set_member_active(team, member.id, active)
            except ApiError as exc:
                refused.append((str(member), exc.code))
            else:
                done.append(str(member))
        self.report(request, "Reactivated" if active else "Deactivated", done, refused)

    @admin.action(
        description="Deactivate selected members (revokes their tokens)", permissions=["run_actions"]
    )
    def deactivate_members(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        self._set_active(request, queryset, active=False)

    @admin.action(description="Reactivate selected members", permissions=["run_actions"])
    def reactivate_members(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        self._set_active(request, queryset, active=True)

    @admin.action(
        description="Reset tokens of selected members (revoke all, issue one new)",
        permissions=["run_actions"],
    )
    def reset_tokens(self, request: HttpRequest, queryset: QuerySet[Member]) -> HttpResponse | None:
        team = chosen_team()
        issued: list[tuple[str, str]] = []
        refused: list[tuple[str, str]] = []
        for member in list(queryset):
            try:
                require_writable(team)
                token = reset_member_tokens(team, member.id)
            except ApiError as exc:
                refused.append((str(member), exc.code))
                continue
            issued.append((str(member), token))
        self.report(request, "Reset tokens", [], refused)
        if not issued:
            return None
        return issued_tokens_response(request, self, "New tokens: copy them now", issued)


@admin.register(Bot)
class BotAdmin(TeamScopedAdmin):
    """Read-only: bots are created with their team (create_team); no action edits them yet."""

    list_display = ("name", "bot_slack_id", "member_id", "app_id", "deleted")
    list_filter = ("deleted",)
    search_fields = ("name", "app_id")
    id_search_fields = ("id", "member_id")

    @admin.display(description="bot id")
    def bot_slack_id(self, bot: Bot) -> str:
        return ids.encode(ids.BOT, bot.id)

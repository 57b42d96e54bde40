"""Django admin for conversation data, on the chosen team's shard (TeamScopedAdmin). Writes go
through messaging.actions, so each one appends its event like the Web API's do."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from messaging.actions.channels import create_channel, set_archived, validate_channel_name
from messaging.actions.editing import delete_message, update_message
from messaging.actions.reactions import add_emoji, remove_emoji
from messaging.models import Channel, ChannelMember, CustomEmoji, Event, EventSequence, Message, Pin, Reaction
from teams import ids
from teams.admin_shards import TeamScopedAdmin, admin_caller, adopt, chosen_team, require_writable
from teams.auth import Caller
from teams.directory import TeamEntry
from teams.errors import ApiError
from teams.models import ApiToken

TEXT_EXCERPT_CHARS = 80  # enough to recognise a message in the list


def author_caller(team: TeamEntry, message: Message) -> Caller:
    """The Caller an admin edit of a message acts as: its author (user or bot).

    Slack lets only a message's author edit it, and update_message enforces that; so an edit
    made in admin is made as the author (the admin log records the staff account).
    """
    require_writable(team)
    if message.user_id is None:
        raise ApiError("cant_update_message", "this message has no author to act as")
    if message.bot_id is not None:
        return Caller(team, message.user_id, message.bot_id, ApiToken.Kind.BOT, None)
    return Caller(team, message.user_id, None, "session", None)


def deleting_caller(team: TeamEntry, message: Message) -> Caller:
    """The Caller an admin delete acts as: the owner (admins may delete anyone's message) where
    the owner can see the channel; in a private channel or DM the owner is not in, the author,
    since the actions hide those channels from non-members (and the event names no actor)."""
    owner = admin_caller(team)
    channel = message.channel
    if channel.kind == Channel.Kind.PUBLIC:
        return owner
    if ChannelMember.objects.filter(channel=channel, member_id=owner.member_id).exists():
        return owner
    return author_caller(team, message)


def _refused(label: str, exc: ApiError) -> tuple[str, str]:
    return label, exc.code


class ChannelCreationForm(forms.ModelForm):
    name = forms.CharField(max_length=80, help_text="Lowercase letters, digits, hyphens and underscores.")
    is_private = forms.BooleanField(required=False, label="Private")

    class Meta:
        model = Channel
        fields = ("name",)

    def clean_name(self) -> str:
        try:
            name = validate_channel_name(self.cleaned_data["name"])
        except ApiError as exc:
            raise forms.ValidationError(f"Not a channel name ({exc.code}).") from None
        if Channel.objects.filter(team_id=chosen_team().id, name=name).exists():
            raise forms.ValidationError("A channel with this name exists in this team.")
        return name


@admin.register(Channel)
class ChannelAdmin(TeamScopedAdmin):
    """Channels and DMs. Created by create_channel (as the owner), archived and unarchived by
    set_archived. The change form is read-only: rename and topic/purpose are actions of a
    channel member, which the owner acting for the admin need not be."""

    list_display = ("__str__", "slack_id", "kind", "is_archived", "is_general", "topic", "created")
    list_filter = ("kind", "is_archived", "is_general")
    search_fields = ("name", "topic", "purpose")
    id_search_fields = ("id", "creator_id")
    action_writes = frozenset({"add"})
    add_form = ChannelCreationForm
    add_fields = ("name", "is_private")
    actions = ("archive_channels", "unarchive_channels")

    def save_model(self, request: HttpRequest, obj: Channel, form: forms.ModelForm, change: bool) -> None:
        caller = admin_caller(chosen_team())
        channel = create_channel(
            caller, form.cleaned_data["name"], is_private=form.cleaned_data["is_private"]
        )
        adopt(obj, channel)

    def _set_archived(self, request: HttpRequest, queryset: QuerySet[Channel], archived: bool) -> None:
        done: list[str] = []
        refused: list[tuple[str, str]] = []
        for channel in list(queryset):
            try:
                set_archived(admin_caller(chosen_team()), channel.slack_id, archived)
            except ApiError as exc:
                refused.append(_refused(str(channel), exc))
            else:
                done.append(str(channel))
        self.report(request, "Archived" if archived else "Unarchived", done, refused)

    @admin.action(description="Archive selected channels", permissions=["run_actions"])
    def archive_channels(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        self._set_archived(request, queryset, archived=True)

    @admin.action(description="Unarchive selected channels", permissions=["run_actions"])
    def unarchive_channels(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        self._set_archived(request, queryset, archived=False)


@admin.register(ChannelMember)
class ChannelMemberAdmin(TeamScopedAdmin):
    """Read-only: joins and leaves are the members' own actions (join, leave, invite, kick)."""

    list_display = ("member", "channel", "last_read", "joined")
    list_select_related = ("member", "channel")
    list_filter = (("channel", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("member__name", "channel__name")
    id_search_fields = ("member_id", "channel_id")


@admin.register(Message)
class MessageAdmin(TeamScopedAdmin):
    """Messages. Text edits go through update_message (as the author), deletes through
    delete_message, so clients hear message_changed / message_deleted. Nothing else is editable."""

    list_display = ("slack_ts", "channel", "author", "excerpt", "subtype", "is_deleted")
    list_select_related = ("channel",)
    # Only the team's channels that have messages: RelatedFieldListFilter would list every
    # team's channels on the shard.
    list_filter = (
        ("channel", admin.RelatedOnlyFieldListFilter),
        "is_deleted",
        "subtype",
        ("thread_ts", admin.EmptyFieldListFilter),  # "not empty": in a thread
        ("edited_ts", admin.EmptyFieldListFilter),  # "not empty": edited
    )
    search_fields = ("text", "channel__name")
    # A pasted C… finds a channel's messages, U…/B… an author's, a ts the message or its thread.
    id_search_fields = ("id", "channel_id", "user_id", "bot_id")
    ts_search_fields = ("ts", "thread_ts")
    action_writes = frozenset({"change", "delete"})
    fields = (
        "channel",
        "slack_ts",
        "user_id",
        "bot_id",
        "username",
        "text",
        "subtype",
        "thread_ts",
        "reply_count",
        "edited_ts",
        "edited_by",
        "is_deleted",
        "client_msg_id",
        "attachments",
        "blocks",
        "files",
    )
    readonly_fields = tuple(name for name in fields if name != "text")

    @admin.display(description="ts")
    def slack_ts(self, message: Message) -> str:
        return ids.format_ts(message.ts)

    @admin.display(description="author")
    def author(self, message: Message) -> str:
        if message.bot_id is not None:
            return ids.encode(ids.BOT, message.bot_id)
        return ids.encode(ids.USER, message.user_id) if message.user_id else ""

    @admin.display(description="text")
    def excerpt(self, message: Message) -> str:
        text = message.text
        return text if len(text) <= TEXT_EXCERPT_CHARS else f"{text[: TEXT_EXCERPT_CHARS - 1]}…"

    def save_model(self, request: HttpRequest, obj: Message, form: forms.ModelForm, change: bool) -> None:
        if change and "text" in form.changed_data:
            team = chosen_team()
            update_message(
                author_caller(team, obj), obj.channel.slack_id, ids.format_ts(obj.ts), text=obj.text
            )

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        team = chosen_team()
        delete_message(deleting_caller(team, obj), obj.channel.slack_id, ids.format_ts(obj.ts))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        team = chosen_team()
        refused: list[tuple[str, str]] = []
        for message in list(queryset.select_related("channel")):
            try:
                delete_message(
                    deleting_caller(team, message), message.channel.slack_id, ids.format_ts(message.ts)
                )
            except ApiError as exc:
                refused.append(_refused(str(message), exc))
        self.report(request, "Deleted", [], refused)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, set[str], Any]:
        # Reactions and pins go with their message inside delete_message; their own admins
        # refusing direct deletes must not block that.
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, model_count, set(), protected


class CustomEmojiCreationForm(forms.ModelForm):
    url = forms.URLField(max_length=500, required=False, assume_scheme="https", label="Image URL")

    class Meta:
        model = CustomEmoji
        fields = ("name", "url", "alias_for")

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip().strip(":")
        if CustomEmoji.objects.filter(team_id=chosen_team().id, name=name).exists():
            raise forms.ValidationError("This team has an emoji with this name.")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("url")) == bool(data.get("alias_for")):
            raise forms.ValidationError("Give exactly one of an image URL and an alias.")
        return data


@admin.register(CustomEmoji)
class CustomEmojiAdmin(TeamScopedAdmin):
    """Custom emoji: added by add_emoji and removed by remove_emoji, as the owner."""

    list_display = ("name", "url", "alias_for", "creator_id", "created")
    list_filter = (("alias_for", admin.EmptyFieldListFilter),)  # "empty": an image, not an alias
    search_fields = ("name", "alias_for")
    id_search_fields = ("creator_id",)
    action_writes = frozenset({"add", "delete"})
    add_form = CustomEmojiCreationForm
    add_fields = ("name", "url", "alias_for")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # Django 6's default, today

    def save_model(self, request: HttpRequest, obj: CustomEmoji, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        emoji = add_emoji(
            admin_caller(chosen_team()), data["name"], url=data["url"], alias_for=data["alias_for"]
        )
        adopt(obj, emoji)

    def delete_model(self, request: HttpRequest, obj: CustomEmoji) -> None:
        remove_emoji(admin_caller(chosen_team()), obj.name)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CustomEmoji]) -> None:
        caller = admin_caller(chosen_team())
        refused: list[tuple[str, str]] = []
        for emoji in list(queryset):
            try:
                remove_emoji(caller, emoji.name)
            except ApiError as exc:
                refused.append(_refused(str(emoji), exc))
        self.report(request, "Deleted", [], refused)


@admin.register(Reaction)
class ReactionAdmin(TeamScopedAdmin):
    """Read-only: a reaction is its member's to add or remove."""

    list_display = ("name", "member_id", "message", "created")
    list_filter = ("name",)
    search_fields = ("name", "message__text")
    id_search_fields = ("member_id", "message_id")


@admin.register(Pin)
class PinAdmin(TeamScopedAdmin):
    """Read-only: pins are added and removed by channel members."""

    list_display = ("message", "channel", "pinned_by", "created")
    list_select_related = ("channel",)
    list_filter = (("channel", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("message__text", "channel__name")
    id_search_fields = ("channel_id", "message_id", "pinned_by")


@admin.register(EventSequence)
class EventSequenceAdmin(TeamScopedAdmin):
    """Read-only: the head of the team's event log, bumped only by append_event."""

    list_display = ("team_id", "last_event_id")


@admin.register(Event)
class EventAdmin(TeamScopedAdmin):
    """Read-only: the team's event log, appended only by actions."""

    list_display = ("event_id", "type", "channel_id", "created")
    list_filter = ("type",)
    search_fields = ("type",)
    id_search_fields = ("event_id", "channel_id")  # a number finds that event, a C… its channel's
    ordering = ("-event_id",)

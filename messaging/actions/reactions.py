"""Reactions, pins and custom emoji: small writes on a message or the team."""

from __future__ import annotations

import re
import time

from django.db import IntegrityError, transaction

from chatproject.dbrouter import current_shard
from messaging.events import append_event
from messaging.models import Channel, CustomEmoji, Message, Pin, Reaction
from messaging.queries import conversation, message_at, ts_argument
from messaging.shapes import message_json
from teams import ids
from teams.auth import Caller
from teams.errors import ApiError

# Emoji names as Slack writes them, with an optional skin tone (`clap::skin-tone-3`).
_EMOJI_NAME = re.compile(r"^[a-z0-9_+\-'\u00c0-\uffff]{1,100}(::skin-tone-[2-6])?$")
MAX_REACTION_KINDS = 50  # distinct emoji on one message


def _normalize_emoji(name: str) -> str:
    name = name.strip().strip(":") if name else ""
    if not _EMOJI_NAME.match(name):
        raise ApiError("invalid_name")
    return name


def _target(caller: Caller, channel_ref: str, ts: str) -> tuple[Channel, Message]:
    channel = conversation(caller, channel_ref).channel
    message = message_at(channel, ts_argument(ts, "message_not_found"))
    if message.is_deleted:
        raise ApiError("message_not_found")
    return channel, message


def _item(channel: Channel, message: Message) -> dict[str, str]:
    return {"type": "message", "channel": channel.slack_id, "ts": ids.format_ts(message.ts)}


def _reaction_payload(caller: Caller, name: str, channel: Channel, message: Message) -> dict[str, object]:
    return {
        "user": caller.user_slack_id,
        "reaction": name,
        "item": _item(channel, message),
        "item_user": ids.encode(ids.USER, message.user_id) if message.user_id else "",
        "event_ts": ids.format_ts(time.time_ns() // 1000),
    }


def add_reaction(caller: Caller, channel_ref: str, ts: str, name: str) -> None:
    name = _normalize_emoji(name)
    channel, message = _target(caller, channel_ref, ts)
    if channel.is_archived:
        raise ApiError("is_archived")
    kinds = set(Reaction.objects.filter(message=message).values_list("name", flat=True))
    if name not in kinds and len(kinds) >= MAX_REACTION_KINDS:
        raise ApiError("too_many_reactions")
    try:
        with transaction.atomic(using=current_shard()):
            Reaction.objects.create(
                team_id=caller.team_id, message=message, name=name, member_id=caller.member_id
            )
            append_event(
                caller.team_id,
                "reaction_added",
                _reaction_payload(caller, name, channel, message),
                channel_id=channel.id,
            )
    except IntegrityError:
        raise ApiError("already_reacted") from None


def remove_reaction(caller: Caller, channel_ref: str, ts: str, name: str) -> None:
    name = _normalize_emoji(name)
    channel, message = _target(caller, channel_ref, ts)
    with transaction.atomic(using=current_shard()):
        deleted, _ = Reaction.objects.filter(message=message, name=name, member_id=caller.member_id).delete()
        if not deleted:
            raise ApiError("no_reaction")
        append_event(
            caller.team_id,
            "reaction_removed",
            _reaction_payload(caller, name, channel, message),
            channel_id=channel.id,
        )


def _pin_payload(caller: Caller, channel: Channel, message: Message) -> dict[str, object]:
    item = {
        "type": "message",
        "channel": channel.slack_id,
        "message": message_json(message, caller.team.slack_id),
        "created_by": caller.user_slack_id,
    }
    return {
        "user": caller.user_slack_id,
        "channel_id": channel.slack_id,
        "item": item,
        "event_ts": ids.format_ts(time.time_ns() // 1000),
    }


def add_pin(caller: Caller, channel_ref: str, ts: str) -> None:
    channel, message = _target(caller, channel_ref, ts)
    if channel.is_archived:
        raise ApiError("is_archived")
    try:
        with transaction.atomic(using=current_shard()):
            Pin.objects.create(
                team_id=caller.team_id,
                channel=channel,
                message=message,
                pinned_by=caller.member_id,
                created=int(time.time()),
            )
            append_event(
                caller.team_id, "pin_added", _pin_payload(caller, channel, message), channel_id=channel.id
            )
    except IntegrityError:
        raise ApiError("already_pinned") from None


def remove_pin(caller: Caller, channel_ref: str, ts: str) -> None:
    channel, message = _target(caller, channel_ref, ts)
    with transaction.atomic(using=current_shard()):
        deleted, _ = Pin.objects.filter(channel=channel, message=message).delete()
        if not deleted:
            raise ApiError("no_pin")
        append_event(
            caller.team_id, "pin_removed", _pin_payload(caller, channel, message), channel_id=channel.id
        )


def add_emoji(caller: Caller, name: str, *, url: str = "", alias_for: str = "") -> CustomEmoji:
    """Add a custom emoji (an image URL, or an alias of another emoji)."""
    name = _normalize_emoji(name)
    if "::" in name:
        raise ApiError("invalid_name")
    if bool(url) == bool(alias_for):
        raise ApiError("invalid_arguments", "give exactly one of url and alias_for")
    try:
        with transaction.atomic(using=current_shard()):
            emoji = CustomEmoji.objects.create(
                team_id=caller.team_id,
                name=name,
                url=url,
                alias_for=_normalize_emoji(alias_for) if alias_for else "",
                creator_id=caller.member_id,
            )
            value = url or f"alias:{emoji.alias_for}"
            append_event(
                caller.team_id,
                "emoji_changed",
                {
                    "subtype": "add",
                    "name": name,
                    "value": value,
                    "event_ts": ids.format_ts(time.time_ns() // 1000),
                },
            )
    except IntegrityError:
        raise ApiError("error_name_taken") from None
    return emoji


def remove_emoji(caller: Caller, name: str) -> None:
    name = _normalize_emoji(name)
    with transaction.atomic(using=current_shard()):
        deleted, _ = CustomEmoji.objects.filter(team_id=caller.team_id, name=name).delete()
        if not deleted:
            raise ApiError("emoji_not_found")
        append_event(
            caller.team_id,
            "emoji_changed",
            {"subtype": "remove", "names": [name], "event_ts": ids.format_ts(time.time_ns() // 1000)},
        )

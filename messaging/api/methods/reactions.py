"""reactions.*, pins.* and emoji.list."""

from __future__ import annotations

from typing import Any

from messaging.actions import reactions as reaction_actions
from messaging.api.registry import ApiCall, Args, SlackBool, api_method
from messaging.models import CustomEmoji, Pin
from messaging.queries import conversation, message_at, messages_json, ts_argument
from teams import ids

ITEM_ERRORS = {"channel": "no_item_specified", "timestamp": "no_item_specified"}


class ReactionArgs(Args):
    channel: str
    timestamp: str
    name: str


@api_method("reactions.add", ReactionArgs, tier=3, errors={**ITEM_ERRORS, "name": "invalid_name"})
def add(call: ApiCall) -> dict[str, Any]:
    """React to a message."""
    args = call.args
    reaction_actions.add_reaction(call.caller, args.channel, args.timestamp, args.name)
    return {}


@api_method("reactions.remove", ReactionArgs, tier=2, errors={**ITEM_ERRORS, "name": "invalid_name"})
def remove(call: ApiCall) -> dict[str, Any]:
    """Take back a reaction."""
    args = call.args
    reaction_actions.remove_reaction(call.caller, args.channel, args.timestamp, args.name)
    return {}


class ItemArgs(Args):
    channel: str
    timestamp: str
    full: SlackBool = False


def _message(call: ApiCall, channel_ref: str, timestamp: str) -> dict[str, Any]:
    channel = conversation(call.caller, channel_ref).channel
    message = message_at(channel, ts_argument(timestamp, "message_not_found"))
    return {
        "channel": channel.slack_id,
        "message": messages_json(call.caller.team.slack_id, channel, [message])[0],
    }


@api_method("reactions.get", ItemArgs, tier=3, errors=ITEM_ERRORS)
def get(call: ApiCall) -> dict[str, Any]:
    """A message with its reactions."""
    return {"type": "message", **_message(call, call.args.channel, call.args.timestamp)}


class PinArgs(Args):
    channel: str
    timestamp: str


@api_method(
    "pins.add", PinArgs, tier=2, errors={"channel": "channel_not_found", "timestamp": "no_item_specified"}
)
def pins_add(call: ApiCall) -> dict[str, Any]:
    """Pin a message to its channel."""
    reaction_actions.add_pin(call.caller, call.args.channel, call.args.timestamp)
    return {}


@api_method(
    "pins.remove", PinArgs, tier=2, errors={"channel": "channel_not_found", "timestamp": "no_item_specified"}
)
def pins_remove(call: ApiCall) -> dict[str, Any]:
    """Unpin a message."""
    reaction_actions.remove_pin(call.caller, call.args.channel, call.args.timestamp)
    return {}


class PinListArgs(Args):
    channel: str


@api_method("pins.list", PinListArgs, tier=2, errors={"channel": "channel_not_found"})
def pins_list(call: ApiCall) -> dict[str, Any]:
    """A channel's pinned messages, newest pin first."""
    channel = conversation(call.caller, call.args.channel).channel
    pins = list(Pin.objects.filter(channel=channel).select_related("message").order_by("-created", "-id"))
    shapes = messages_json(call.caller.team.slack_id, channel, [p.message for p in pins])
    return {
        "items": [
            {
                "type": "message",
                "channel": channel.slack_id,
                "message": shape,
                "created": pin.created,
                "created_by": ids.encode(ids.USER, pin.pinned_by),
            }
            for pin, shape in zip(pins, shapes, strict=True)
        ]
    }


@api_method("emoji.list", tier=2)
def emoji_list(call: ApiCall) -> dict[str, Any]:
    """The team's custom emoji: name to image URL, or `alias:other`."""
    rows = CustomEmoji.objects.filter(team_id=call.caller.team_id).order_by("name")
    return {"emoji": {e.name: e.url or f"alias:{e.alias_for}" for e in rows}, "cache_ts": "0.000000"}

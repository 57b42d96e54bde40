"""chat.postMessage, chat.update, chat.delete, chat.getPermalink."""

from __future__ import annotations

from typing import Any

from messaging.actions.editing import delete_message, update_message
from messaging.actions.posting import post_message
from messaging.api.registry import POSTING_TIER, ApiCall, Args, JsonList, SlackBool, api_method
from messaging.queries import conversation, message_at, ts_argument
from messaging.shapes import message_json
from teams import ids

NO_CHANNEL = {"channel": "channel_not_found"}


class PostArgs(Args):
    channel: str
    text: str = ""
    thread_ts: str | None = None
    reply_broadcast: SlackBool = False
    attachments: JsonList = None
    blocks: JsonList = None
    client_msg_id: str | None = None
    username: str = ""


@api_method(
    "chat.postMessage",
    PostArgs,
    tier=POSTING_TIER,
    errors={
        **NO_CHANNEL,
        "attachments": "invalid_attachments",
        "blocks": "invalid_blocks",
        "text": "invalid_arguments",
        "thread_ts": "thread_not_found",
    },
)
def post(call: ApiCall) -> dict[str, Any]:
    """Post a message (idempotent per client_msg_id)."""
    args = call.args
    posted = post_message(
        call.caller,
        args.channel,
        text=args.text,
        thread_ts=args.thread_ts,
        reply_broadcast=args.reply_broadcast,
        attachments=args.attachments,
        blocks=args.blocks,
        client_msg_id=args.client_msg_id,
        username=args.username[:80] if call.caller.is_bot else "",
    )
    message = message_json(posted.message, call.caller.team.slack_id)
    return {"channel": posted.channel.slack_id, "ts": message["ts"], "message": message}


class UpdateArgs(Args):
    channel: str
    ts: str
    text: str | None = None
    attachments: JsonList = None
    blocks: JsonList = None


@api_method(
    "chat.update",
    UpdateArgs,
    tier=3,
    errors={
        **NO_CHANNEL,
        "ts": "message_not_found",
        "attachments": "invalid_attachments",
        "blocks": "invalid_blocks",
    },
)
def update(call: ApiCall) -> dict[str, Any]:
    """Edit a message the caller sent."""
    args = call.args
    message, channel = update_message(
        call.caller, args.channel, args.ts, text=args.text, attachments=args.attachments, blocks=args.blocks
    )
    shape = message_json(message, call.caller.team.slack_id)
    return {"channel": channel.slack_id, "ts": shape["ts"], "text": message.text, "message": shape}


class DeleteArgs(Args):
    channel: str
    ts: str


@api_method("chat.delete", DeleteArgs, tier=3, errors={**NO_CHANNEL, "ts": "message_not_found"})
def delete(call: ApiCall) -> dict[str, Any]:
    """Delete a message (the caller's own; admins may delete any)."""
    channel = delete_message(call.caller, call.args.channel, call.args.ts)
    return {"channel": channel.slack_id, "ts": call.args.ts}


class PermalinkArgs(Args):
    channel: str
    message_ts: str


@api_method(
    "chat.getPermalink", PermalinkArgs, tier=4, errors={**NO_CHANNEL, "message_ts": "message_not_found"}
)
def permalink(call: ApiCall) -> dict[str, Any]:
    """A link to a message in the web client."""
    channel = conversation(call.caller, call.args.channel).channel
    message = message_at(channel, ts_argument(call.args.message_ts, "message_not_found"))
    digits = ids.format_ts(message.ts).replace(".", "")
    return {"channel": channel.slack_id, "permalink": f"{call.base_url}archives/{channel.slack_id}/p{digits}"}

"""A team's content in terms that survive an export and re-import: people by name,
conversations by name (DMs by their members' names), ids in message text replaced."""

from __future__ import annotations

import re
from typing import Any

from chatproject.dbrouter import on_shard
from messaging.models import Channel, ChannelMember, Message, Pin, Reaction
from messaging.shapes import dm_member_ids
from teams import ids
from teams.models import Member

_REF = re.compile(r"<([@#])([UWCGD][A-Z0-9]+)")


def snapshot(team_id: int, shard: str) -> dict[str, list[tuple[Any, ...]]]:
    with on_shard(shard):
        members = {m.id: m for m in Member.objects.filter(team_id=team_id)}
        channels = {c.id: c for c in Channel.objects.filter(team_id=team_id)}

        def who(member_id: int | None) -> str | None:
            return members[member_id].name if member_id in members else None

        def where(channel: Channel) -> str:
            return channel.name or "dm:" + "+".join(sorted(str(who(m)) for m in dm_member_ids(channel)))

        by_slack_id = {c.slack_id: where(c) for c in channels.values()}
        by_slack_id.update({m.slack_id: m.name for m in members.values()})

        def text(value: str) -> str:
            return _REF.sub(lambda m: f"<{m.group(1)}{by_slack_id.get(m.group(2), m.group(2))}", value)

        channel_members: dict[int, list[str]] = {}
        for membership in ChannelMember.objects.filter(team_id=team_id):
            channel_members.setdefault(membership.channel_id, []).append(str(who(membership.member_id)))
        messages = [
            (where(channels[m.channel_id]), ids.format_ts(m.ts), text(m.text), m.subtype, who(m.user_id),
             m.bot_id is not None, m.thread_ts, m.reply_count, tuple(who(u) for u in m.reply_users),
             m.latest_reply, m.is_deleted, m.edited_ts, who(m.edited_by), m.username, bool(m.files),
             bool(m.attachments), bool(m.blocks), m.client_msg_id)
            for m in Message.objects.filter(team_id=team_id)
        ]  # fmt: skip
        return {
            "members": sorted(
                (m.name, m.email, m.real_name, m.title, m.tz, m.deleted, m.is_bot, m.is_admin, m.is_owner)
                for m in members.values()
            ),
            "conversations": sorted(
                (
                    where(c),
                    c.kind,
                    c.is_archived,
                    c.is_general,
                    c.topic,
                    c.purpose,
                    c.created,
                    tuple(sorted(channel_members.get(c.id, []))),
                )
                for c in channels.values()
            ),
            "messages": sorted(messages, key=lambda m: (m[0], m[1])),
            "reactions": sorted(
                (where(channels[r.message.channel_id]), r.message.ts, r.name, str(who(r.member_id)))
                for r in Reaction.objects.filter(team_id=team_id).select_related("message")
            ),
            "pins": sorted(
                (where(channels[p.channel_id]), p.message.ts, str(who(p.pinned_by)))
                for p in Pin.objects.filter(team_id=team_id).select_related("message")
            ),
        }

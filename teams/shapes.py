"""Slack's JSON shapes for members, bots and teams."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from teams import ids
from teams.directory import TeamEntry
from teams.models import Bot, Member


def tz_offset(tz: str) -> int:
    try:
        offset = datetime.now(ZoneInfo(tz)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return 0
    return int(offset.total_seconds()) if offset else 0


def member_json(member: Member, team_slack_id: str) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "title": member.title,
        "phone": member.phone,
        "real_name": member.real_name,
        "real_name_normalized": member.real_name,
        "display_name": member.display_name,
        "display_name_normalized": member.display_name,
        "avatar_hash": member.avatar_hash,
        "team": team_slack_id,
    }
    if member.email:
        profile["email"] = member.email
    if member.bot_id:
        profile["bot_id"] = ids.encode(ids.BOT, member.bot_id)
    return {
        "id": member.slack_id,
        "team_id": team_slack_id,
        "name": member.name,
        "deleted": member.deleted,
        "color": member.color,
        "real_name": member.real_name,
        "tz": member.tz,
        "tz_label": member.tz,
        "tz_offset": tz_offset(member.tz),
        "profile": profile,
        "is_admin": member.is_admin,
        "is_owner": member.is_owner,
        "is_primary_owner": member.is_owner,
        "is_restricted": False,
        "is_ultra_restricted": False,
        "is_bot": member.is_bot,
        "is_app_user": False,
        "updated": member.updated,
    }


def bot_json(bot: Bot, team_slack_id: str) -> dict[str, Any]:
    return {
        "id": ids.encode(ids.BOT, bot.id),
        "deleted": bot.deleted,
        "name": bot.name,
        "updated": bot.updated,
        "app_id": bot.app_id,
        "user_id": ids.encode(ids.USER, bot.member_id),
        "team_id": team_slack_id,
        "icons": {},
    }


def team_json(team: TeamEntry) -> dict[str, Any]:
    return {
        "id": team.slack_id,
        "name": team.name,
        "domain": team.domain,
        "email_domain": "",
        "icon": {"image_default": True},
    }

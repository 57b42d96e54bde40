"""Opening a DM (one other person) or a group DM: found by its members, created once."""

from __future__ import annotations

import time

from django.db import IntegrityError, transaction

from chatproject.dbrouter import current_shard
from messaging.events import append_event
from messaging.models import Channel, ChannelMember
from messaging.queries import member
from messaging.shapes import channel_json
from teams.auth import Caller
from teams.errors import ApiError

K = Channel.Kind
MPIM_MAX_MEMBERS = 9  # Slack caps group DMs at 9 people including you


def open_dm(caller: Caller, user_refs: list[str]) -> tuple[Channel, bool]:
    """Find or create the DM (one other person) or group DM; returns (channel, already_open)."""
    if not user_refs:
        raise ApiError("users_list_not_supplied")
    others = [member(caller, ref) for ref in dict.fromkeys(user_refs)]
    member_ids = sorted({caller.member_id, *(m.id for m in others)})
    if len(member_ids) > MPIM_MAX_MEMBERS:
        raise ApiError("too_many_users")
    if any(m.deleted for m in others):
        raise ApiError("user_disabled")
    kind = K.IM if len(member_ids) <= 2 else K.MPIM
    dm_key = "-".join(str(i) for i in member_ids)
    existing = Channel.objects.filter(team_id=caller.team_id, dm_key=dm_key).first()
    if existing:
        return existing, True
    try:
        with transaction.atomic(using=current_shard()):
            channel = Channel.objects.create(
                team_id=caller.team_id,
                kind=kind,
                dm_key=dm_key,
                creator_id=caller.member_id,
                created=int(time.time()),
            )
            ChannelMember.objects.bulk_create(
                [ChannelMember(team_id=caller.team_id, channel=channel, member_id=i) for i in member_ids]
            )
            shape = channel_json(channel, None)
            event = "im_created" if kind == K.IM else "mpim_open"
            append_event(
                caller.team_id, event, {"channel": shape, "user": caller.user_slack_id}, audience=member_ids
            )
    except IntegrityError:
        # Someone opened the same DM at the same moment; theirs is the one.
        return Channel.objects.get(team_id=caller.team_id, dm_key=dm_key), True
    return channel, False

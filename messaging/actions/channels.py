"""Creating and changing channels: membership, name, topic/purpose, archiving, read state.
DMs are opened in messaging.actions.dms."""

from __future__ import annotations

import re
import time

from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from chatproject.dbrouter import current_shard
from messaging.actions.posting import insert_message
from messaging.actions.system_messages import announce, announce_join
from messaging.events import CHANNEL_KEY, append_event
from messaging.models import Channel, ChannelMember
from messaging.queries import Conversation, conversation, member, ts_argument
from messaging.shapes import channel_json
from teams import ids
from teams.auth import Caller
from teams.errors import ApiError
from teams.models import Member

K = Channel.Kind
NAME_MAX = 80
TOPIC_MAX = 250
_NAME_OK = re.compile(r"^[a-z0-9\u00c0-\uffff_-]+$")


def validate_channel_name(name: str) -> str:
    name = name.strip().lstrip("#")
    if not name:
        raise ApiError("invalid_name_required")
    if len(name) > NAME_MAX:
        raise ApiError("invalid_name_maxlength")
    if name != name.lower() and _NAME_OK.match(name.lower()):
        raise ApiError("invalid_name_specials", "channel names must be lowercase")
    if not _NAME_OK.match(name):
        raise ApiError("invalid_name_specials")
    return name


def _is_private(channel: Channel) -> bool:
    return channel.kind != K.PUBLIC


def _listing_scope(channel: Channel) -> int | None:
    """The channel_id of an event that changes channel lists: a public channel is in
    everyone's (the whole team hears it), another kind only in its members'."""
    return channel.id if _is_private(channel) else None


def _event_name(channel: Channel, suffix: str) -> str:
    """Slack names private-channel events group_*, public ones channel_*."""
    return f"{'group' if channel.kind == K.PRIVATE else 'channel'}_{suffix}"


def new_channel(
    team_id: int, name: str, kind: str, creator_id: int | None, *, is_general: bool = False
) -> Channel:
    """Insert a channel and its creator's membership (no event: callers append theirs)."""
    try:
        with transaction.atomic(using=current_shard()):
            channel = Channel.objects.create(
                team_id=team_id,
                name=name,
                kind=kind,
                creator_id=creator_id,
                created=int(time.time()),
                is_general=is_general,
            )
    except IntegrityError:
        raise ApiError("name_taken") from None
    if creator_id is not None:
        ChannelMember.objects.create(team_id=team_id, channel=channel, member_id=creator_id)
    return channel


def create_channel(caller: Caller, name: str, *, is_private: bool) -> Channel:
    name = validate_channel_name(name)
    with transaction.atomic(using=current_shard()):
        channel = new_channel(caller.team_id, name, K.PRIVATE if is_private else K.PUBLIC, caller.member_id)
        shape = channel_json(channel, caller.member_id, is_member=True)
        if is_private:
            append_event(caller.team_id, "group_joined", {"channel": shape}, audience=[caller.member_id])
        else:
            append_event(caller.team_id, "channel_created", {"channel": shape})
        # After the event that makes the channel the creator's: their sockets then hear it.
        announce_join(caller.team, channel, caller.member_id)
    return channel


# A membership unless there is one already. Of two joins (or invites) of one person that
# race, the second waits on the unique one_membership for the first to commit, then inserts
# nothing: it answers as for someone already in the channel instead of failing, and leaves
# its transaction usable. last_read is set by the join message (announce_join).
_INSERT_MEMBERSHIP = f"""
INSERT INTO {ChannelMember._meta.db_table} (team_id, channel_id, member_id, last_read, joined)
VALUES (%s, %s, %s, 0, %s)
ON CONFLICT (channel_id, member_id) DO NOTHING
RETURNING id
"""


def _add_member(caller: Caller, channel: Channel, member_id: int, inviter_id: int | None) -> bool:
    """Add them, with the event and the join message; False (and nothing written) when they
    are in the channel already."""
    with connections[current_shard()].cursor() as cursor:
        cursor.execute(_INSERT_MEMBERSHIP, [caller.team_id, channel.id, member_id, timezone.now()])
        if cursor.fetchone() is None:
            return False
    payload = {
        "user": ids.encode(ids.USER, member_id),
        "channel": channel.slack_id,
        "channel_type": "G" if _is_private(channel) else "C",
        "team": caller.team.slack_id,
    }
    if inviter_id:
        payload["inviter"] = ids.encode(ids.USER, inviter_id)
    # The gateway tells the joiner channel_joined/group_joined with this (realtime.delivery).
    payload[CHANNEL_KEY] = channel_json(channel, member_id, is_member=True)
    append_event(caller.team_id, "member_joined_channel", payload, channel_id=channel.id)
    announce_join(caller.team, channel, member_id, inviter_id)
    return True


def _remove_member(caller: Caller, channel: Channel, member_id: int) -> bool:
    """Leaving or removed (conversations.kick): Slack says the same channel_leave of both.
    False when they were gone already (a leave that raced this one said it)."""
    deleted, _ = ChannelMember.objects.filter(channel=channel, member_id=member_id).delete()
    if not deleted:
        return False
    # Before the event that takes the channel from them: their other sockets hear it too.
    announce(caller.team, channel, member_id, "channel_leave", "has left the channel")
    append_event(
        caller.team_id,
        "member_left_channel",
        {
            "user": ids.encode(ids.USER, member_id),
            "channel": channel.slack_id,
            "channel_type": "G" if _is_private(channel) else "C",
            "team": caller.team.slack_id,
        },
        channel_id=channel.id,
        audience=[member_id],  # no longer a member, but must still hear that they left
    )
    return True


def _lock_unarchived(channel: Channel) -> None:
    """Take the channel's row lock first in a membership change's transaction and refuse
    an archived channel, reading the flag under it: the check before the transaction read
    it unlocked, so a change that waited on an archive's lock would commit after it. First,
    too, to keep the order every write takes its locks in, channel then event sequence (a
    join appended its event before its message locked the channel: a deadlock with a post)."""
    locked = Channel.objects.select_for_update(no_key=True).filter(id=channel.id)
    if any(locked.values_list("is_archived", flat=True)):
        raise ApiError("is_archived")


def _not_dm(channel: Channel) -> None:
    if channel.is_dm_like:
        raise ApiError("method_not_supported_for_channel_type")


def join_channel(caller: Caller, channel_ref: str) -> tuple[Channel, bool]:
    """Join a public channel; returns (channel, was_already_a_member)."""
    access = conversation(caller, channel_ref)
    channel = access.channel
    if channel.kind != K.PUBLIC:
        raise ApiError("method_not_supported_for_channel_type")
    if channel.is_archived:
        raise ApiError("is_archived")
    if access.is_member:
        return channel, True
    with transaction.atomic(using=current_shard()):
        _lock_unarchived(channel)
        added = _add_member(caller, channel, caller.member_id, None)
    return channel, not added  # not added: a join of theirs that raced this one did it


def leave_channel(caller: Caller, channel_ref: str) -> bool:
    """Leave a channel; returns False when the caller was not in it (Slack's not_in_channel flag)."""
    access = conversation(caller, channel_ref)
    channel = access.channel
    _not_dm(channel)
    if channel.is_general:
        raise ApiError("cant_leave_general")
    if not access.is_member:
        return False
    if channel.is_archived:
        raise ApiError("is_archived")
    with transaction.atomic(using=current_shard()):
        _lock_unarchived(channel)
        return _remove_member(caller, channel, caller.member_id)


def invite(caller: Caller, channel_ref: str, user_refs: list[str]) -> Channel:
    access = _member_access(caller, channel_ref)
    channel = access.channel
    _not_dm(channel)
    if channel.is_archived:
        raise ApiError("is_archived")
    invitees = [member(caller, ref) for ref in dict.fromkeys(user_refs)]
    if any(m.id == caller.member_id for m in invitees):
        raise ApiError("cant_invite_self")
    if any(m.deleted for m in invitees):
        raise ApiError("user_is_deactivated")
    present = set(
        ChannelMember.objects.filter(channel=channel, member_id__in=[m.id for m in invitees]).values_list(
            "member_id", flat=True
        )
    )
    new = [m for m in invitees if m.id not in present]
    if not new:
        raise ApiError("already_in_channel")
    with transaction.atomic(using=current_shard()):
        _lock_unarchived(channel)
        # In id order: two invites of the same people in other orders then wait for each
        # other's first row rather than each hold a row the other waits for (a deadlock).
        added = [
            m for m in sorted(new, key=lambda m: m.id) if _add_member(caller, channel, m.id, caller.member_id)
        ]
        if not added:  # an invite that raced this one added them all
            raise ApiError("already_in_channel")
    return channel


def _member_access(caller: Caller, channel_ref: str) -> Conversation:
    access = conversation(caller, channel_ref)
    if not access.is_member:
        raise ApiError("not_in_channel")
    return access


def _is_admin(caller: Caller) -> bool:
    return Member.objects.filter(id=caller.member_id, team_id=caller.team_id, is_admin=True).exists()


def kick(caller: Caller, channel_ref: str, user_ref: str) -> None:
    channel = _member_access(caller, channel_ref).channel
    _not_dm(channel)
    if channel.is_archived:  # read-only, as for invite, rename and the topic
        raise ApiError("is_archived")
    target = member(caller, user_ref)
    if target.id == caller.member_id:
        raise ApiError("cant_kick_self")
    if channel.is_general:
        raise ApiError("cant_kick_from_general")
    if not ChannelMember.objects.filter(channel=channel, member_id=target.id).exists():
        raise ApiError("not_in_channel")
    if channel.kind == K.PRIVATE and channel.creator_id != caller.member_id and not _is_admin(caller):
        raise ApiError("restricted_action")
    with transaction.atomic(using=current_shard()):
        _lock_unarchived(channel)
        if not _remove_member(caller, channel, target.id):
            raise ApiError("not_in_channel")


def set_archived(caller: Caller, channel_ref: str, archived: bool) -> Channel:
    access = conversation(caller, channel_ref)
    channel = access.channel
    _not_dm(channel)
    if archived and channel.is_general:
        raise ApiError("cant_archive_general")
    if channel.is_archived == archived:
        raise ApiError("already_archived" if archived else "not_archived")
    if not access.is_member and not _is_admin(caller):  # either way: not anyone's to undo
        raise ApiError("not_in_channel")
    with transaction.atomic(using=current_shard()):
        # Only from the other state: of two racing calls, one changes it and says so.
        if not Channel.objects.filter(id=channel.id, is_archived=not archived).update(is_archived=archived):
            raise ApiError("already_archived" if archived else "not_archived")
        channel.is_archived = archived
        if archived:  # its last message, heard before the event that closes it in clients
            announce(
                caller.team,
                channel,
                caller.member_id,
                "channel_archive",
                "archived the channel",
                in_archived=True,
            )
        payload = {"channel": channel.slack_id, "user": caller.user_slack_id}
        event = _event_name(channel, "archive" if archived else "unarchive")
        append_event(caller.team_id, event, payload, channel_id=_listing_scope(channel))
        if not archived:
            announce(caller.team, channel, caller.member_id, "channel_unarchive", "un-archived the channel")
    return channel


def rename(caller: Caller, channel_ref: str, name: str) -> Channel:
    channel = _member_access(caller, channel_ref).channel
    _not_dm(channel)
    name = validate_channel_name(name)
    if channel.is_archived:
        raise ApiError("is_archived")
    if channel.is_general and not _is_admin(caller):  # everyone's channel: admins name it
        raise ApiError("restricted_action")
    try:
        with transaction.atomic(using=current_shard()):
            # Read under the row's lock: the name the message says it had is the one it had,
            # and a rename that waited on an archive's lock does not commit after it.
            old_name, archived = (
                Channel.objects.select_for_update().values_list("name", "is_archived").get(id=channel.id)
            )
            if archived:
                raise ApiError("is_archived")
            old_name = old_name or ""
            if old_name == name:
                channel.name = name
                return channel
            Channel.objects.filter(id=channel.id).update(name=name)
            channel.name = name
            payload = {"channel": {"id": channel.slack_id, "name": name, "created": channel.created}}
            append_event(
                caller.team_id, _event_name(channel, "rename"), payload, channel_id=_listing_scope(channel)
            )
            # Slack's wording ("has renamed"), as its docs and its exports have it.
            what = f'has renamed the channel from "{old_name}" to "{name}"'
            announce(
                caller.team,
                channel,
                caller.member_id,
                "channel_name",
                what,
                old_name=old_name,
                name=name,
            )
    except IntegrityError:
        raise ApiError("name_taken") from None
    return channel


def set_topic_or_purpose(caller: Caller, channel_ref: str, which: str, value: str) -> Channel:
    """conversations.setTopic / setPurpose: the change is announced by a system message."""
    assert which in ("topic", "purpose")
    if len(value) > TOPIC_MAX:
        raise ApiError("too_long")
    channel = _member_access(caller, channel_ref).channel
    if channel.is_archived:
        raise ApiError("is_archived")
    now = int(time.time())
    with transaction.atomic(using=current_shard()):
        # Under the row's lock the update takes: not once an archive it waited on committed.
        if not Channel.objects.filter(id=channel.id, is_archived=False).update(
            **{which: value, f"{which}_creator_id": caller.member_id, f"{which}_last_set": now}
        ):
            raise ApiError("is_archived")
        setattr(channel, which, value)
        setattr(channel, f"{which}_creator_id", caller.member_id)
        setattr(channel, f"{which}_last_set", now)
        verb = "set the channel topic" if which == "topic" else "set the channel purpose"
        # Public channels' topics are in every member's cached boot.
        insert_message(
            caller,
            channel,
            text=f"{verb}: {value}",
            subtype=f"channel_{which}",
            bumps_boot=channel.kind == K.PUBLIC,
            fields={which: value},  # Slack's channel_topic has `topic`, channel_purpose `purpose`
        )
    return channel


def mark_read(caller: Caller, channel_ref: str, ts: str) -> None:
    access = _member_access(caller, channel_ref)
    read_ts = ts_argument(ts, "invalid_timestamp")
    channel = access.channel
    with transaction.atomic(using=current_shard()):
        ChannelMember.objects.filter(channel=channel, member_id=caller.member_id).update(last_read=read_ts)
        append_event(
            caller.team_id,
            "im_marked" if channel.kind == K.IM else _event_name(channel, "marked"),
            {"channel": channel.slack_id, "ts": ids.format_ts(read_ts)},
            audience=[caller.member_id],
        )

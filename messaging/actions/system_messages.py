"""The system messages an action says in a channel about who came and went and what
became of the channel: channel_join, channel_leave, channel_archive, channel_name..."""

from __future__ import annotations

from messaging.actions.posting import insert_system_message
from messaging.models import Channel, ChannelMember, Message
from teams import ids
from teams.directory import TeamEntry


# Slack posts the channel_* subtypes in private channels too: group_join and the like are
# from before private channels were conversations (@slack/types' message events list only
# the channel_* ones), and our topic and purpose messages are channel_* already.
def announce(
    team: TeamEntry,
    channel: Channel,
    member_id: int,
    subtype: str,
    what: str,
    *,
    in_archived: bool = False,
    **fields: str,
) -> Message:
    return insert_system_message(
        team,
        channel,
        user_id=member_id,
        subtype=subtype,
        text=f"<@{ids.encode(ids.USER, member_id)}> {what}",
        fields=fields,
        in_archived=in_archived,
    )


def announce_join(team: TeamEntry, channel: Channel, member_id: int, inviter_id: int | None = None) -> None:
    """Slack's channel_join message; `inviter` when someone else added them. Inside the
    transaction that adds the membership, whose read position it moves to the message."""
    fields = {"inviter": ids.encode(ids.USER, inviter_id)} if inviter_id else {}
    said = announce(team, channel, member_id, "channel_join", "has joined the channel", **fields)
    # As in Slack, a newcomer has read up to their own join: what was said before they came
    # is not unread to them. Its ts was taken under the channel's row lock, above every ts
    # before it, so all that was said before the join is read and all that comes after is not.
    ChannelMember.objects.filter(channel=channel, member_id=member_id).update(last_read=said.ts)

"""Link previews: asking for them after a post commits, and attaching what came back."""

from __future__ import annotations

from django.db import connections, transaction

from chatproject.dbrouter import current_shard, on_shard, set_local_timeouts
from messaging.events import append_event
from messaging.models import Channel, Message
from messaging.mrkdwn import extract_links
from messaging.shapes import message_changed_payload, message_json
from teams import ids

PREVIEW_LOCK_TIMEOUT_MS = 2000
PREVIEW_STATEMENT_TIMEOUT_MS = 5000


def request_previews(team_id: int, message: Message, *, already: list[str] | None = None) -> None:
    """After the transaction commits, ask for one preview job per new link (posting never
    waits: the post marks its links in one Redis round trip, a drain job queues the jobs)."""
    links = [url for url in extract_links(message.text) if url not in (already or [])]
    if not links:
        return
    shard, channel_id, ts = current_shard(), message.channel_id, message.ts

    def enqueue() -> None:
        from jobs.tasks import enqueue_unfurls

        enqueue_unfurls(shard, team_id, channel_id, ts, links)

    transaction.on_commit(enqueue, using=shard)


def attach_preview(shard: str, team_id: int, channel_id: int, ts: int, url: str, attachment: dict) -> bool:
    """Add a link's preview to its message (message_changed). False when the message is
    gone, no longer has that link, or already shows its preview."""
    with on_shard(shard), transaction.atomic(using=shard):
        with connections[shard].cursor() as cursor:
            # A message row locked by a long transaction (or a statement that hangs) fails
            # this store soon, to be retried later, instead of holding one of the preview
            # worker's few database threads (jobs.db_threads) until it ends.
            set_local_timeouts(
                cursor, statement_ms=PREVIEW_STATEMENT_TIMEOUT_MS, lock_ms=PREVIEW_LOCK_TIMEOUT_MS
            )
        message = (
            Message.objects.select_for_update()
            .filter(team_id=team_id, channel_id=channel_id, ts=ts)
            .select_related("channel")
            .first()
        )
        if message is None or message.is_deleted or url not in extract_links(message.text):
            return False
        current = message.attachments or []
        if any(a.get("from_url") == url for a in current if isinstance(a, dict)):
            return False
        team = ids.encode(ids.TEAM, team_id)
        previous = message_json(message, team)
        message.attachments = [*current, attachment]
        message.save(update_fields=["attachments"])
        channel: Channel = message.channel
        append_event(
            team_id,
            "message",
            message_changed_payload(channel, message, previous, team),
            channel_id=channel.id,
        )
    return True

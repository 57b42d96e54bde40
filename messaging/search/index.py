"""Search vectors of messages, (re)computed in bulk on their shard: the work behind the
`jobs.index_messages` task and `manage.py reindex`.

The vector is computed by PostgreSQL from the row as it is when the UPDATE touches it, so
a late or repeated job can never write an older text's words: indexing is idempotent and
order-free. Tombstones get no vector, so search never finds them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import connections, transaction

from chatproject.dbrouter import set_local_timeouts
from messaging.models import JOIN_LEAVE_SUBTYPES

SEARCH_CONFIG = "english"  # the text search configuration of the vectors and of every query
BATCH_SIZE = 500  # messages per UPDATE: bounds how long one statement holds row locks
ONE_ROW_LOCK_MS = 5_000  # an edit holds a message's row for milliseconds
ONE_ROW_STATEMENT_MS = 30_000

# What a message contributes to search: its text, plus the text of the attachments its
# sender wrote (bots put most of their words there), not of link previews (`from_url`),
# which arrive later and are someone else's words. Slack's `<url|label>` markup needs no
# cleaning: the default parser splits it into the url, host and label words.
#
# Only the first INDEXED_CHARS characters are indexed. A tsvector holds at most 1 MB, and a
# post may carry up to 2 MB of attachments: past the limit to_tsvector raises, which would
# fail every batch holding that message (a message-sized error counted against the whole
# shard's search breaker) and every import of an export holding it. 100,000 characters
# (2.5 Slack messages) make at most a few hundred KB of vector, whatever the words.
INDEXED_CHARS = 100_000
# The text the vector is computed from (search rechecks a partial word against it, see
# messaging.search.sql): reads m.text and m.attachments.
INDEXED_TEXT_SQL = f"""left(
    CASE WHEN m.attachments IS NULL THEN m.text ELSE m.text || ' ' || coalesce((
        SELECT string_agg(concat_ws(' ', a ->> 'pretext', a ->> 'title', a ->> 'text', a ->> 'fallback'), ' ')
          FROM jsonb_array_elements(
               CASE jsonb_typeof(m.attachments) WHEN 'array' THEN m.attachments ELSE '[]'::jsonb END) AS a
         WHERE jsonb_typeof(a) = 'object' AND NOT a ? 'from_url'
    ), '') END, {INDEXED_CHARS})"""
# Not searched, as in Slack: a tombstone, and a message of who came and went (its words are
# no one's; "has joined the channel" would match every member's join).
UNSEARCHED_SQL = "m.is_deleted OR m.subtype IN ({})".format(", ".join(f"'{s}'" for s in JOIN_LEAVE_SUBTYPES))
VECTOR_SQL = f"""
CASE WHEN {UNSEARCHED_SQL} THEN NULL ELSE to_tsvector('{SEARCH_CONFIG}', {INDEXED_TEXT_SQL})
END
"""

# Rows another transaction holds (an edit, a reply updating its parent) are skipped rather
# than waited for: holding this batch's locks while waiting for one more row is how two
# statements deadlock. The skipped ones are redone one at a time below.
_INDEX_BATCH = f"""
WITH batch AS (
    SELECT id FROM messaging_message
     WHERE team_id = %(team_id)s AND id = ANY(%(ids)s)
     ORDER BY id
       FOR UPDATE SKIP LOCKED
)
UPDATE messaging_message AS m SET search_vector = {VECTOR_SQL}
  FROM batch WHERE m.id = batch.id
RETURNING m.id
"""

_INDEX_ONE = f"""
UPDATE messaging_message AS m SET search_vector = {VECTOR_SQL}
 WHERE m.team_id = %(team_id)s AND m.id = %(id)s
"""

_NEXT_BATCH = """
SELECT id, ts FROM messaging_message
 WHERE team_id = %(team_id)s AND (team_id, ts, id) > (%(team_id)s, %(ts)s, %(id)s)
 ORDER BY team_id, ts, id
 LIMIT %(limit)s
"""


def index_messages(shard: str, team_id: int, message_ids: Sequence[int]) -> int:
    """(Re)compute the search vectors of these messages of one team; returns how many exist.

    The one call that writes to a shard's search index (jobs.search_tasks runs it behind
    the shard's search breaker). Ids of messages deleted since, or of another team, are
    ignored. Call it outside a transaction: each batch then commits on its own, and the
    rows it had to skip are redone holding no other lock.
    """
    done = 0
    unique = sorted(set(message_ids))
    with connections[shard].cursor() as cursor:
        for start in range(0, len(unique), BATCH_SIZE):
            chunk = unique[start : start + BATCH_SIZE]
            cursor.execute(_INDEX_BATCH, {"team_id": team_id, "ids": chunk})
            indexed = {row[0] for row in cursor.fetchall()}
            done += len(indexed)
            for message_id in chunk:
                if message_id not in indexed:
                    done += _index_one(shard, team_id, message_id)
    return done


def _index_one(shard: str, team_id: int, message_id: int) -> int:
    """A row the batch skipped: locked a moment ago (or gone). Holding no other lock,
    waiting for it is safe, but only for a while: a transaction left open on it would
    otherwise hold this job, and its drain's claim, without end. Past the wait the
    OperationalError (lock_not_available) reschedules the job, and the shard's breaker
    does not count it (jobs.search_tasks.classify)."""
    with transaction.atomic(using=shard), connections[shard].cursor() as cursor:
        set_local_timeouts(cursor, statement_ms=ONE_ROW_STATEMENT_MS, lock_ms=ONE_ROW_LOCK_MS)
        cursor.execute(_INDEX_ONE, {"team_id": team_id, "id": message_id})
        return cursor.rowcount


@dataclass(frozen=True)
class ReindexProgress:
    indexed: int  # messages whose vector was recomputed so far
    batches: int


def reindex_team(
    shard: str,
    team_id: int,
    *,
    batch_size: int = BATCH_SIZE,
    index: Callable[[str, int, Sequence[int]], int] = index_messages,
    progress: Callable[[ReindexProgress], None] | None = None,
) -> ReindexProgress:
    """Recompute every message of a team, oldest first, one batch per statement.

    Walks the (team_id, ts, id) index by key, so each batch costs the same however far in
    it is, and concurrent posts land after the cursor or are indexed by their own job.
    """
    cursor_key = (-1, -1)
    state = ReindexProgress(0, 0)
    while True:
        with connections[shard].cursor() as cursor:
            cursor.execute(
                _NEXT_BATCH,
                {"team_id": team_id, "ts": cursor_key[0], "id": cursor_key[1], "limit": batch_size},
            )
            rows = cursor.fetchall()
        if not rows:
            return state
        state = ReindexProgress(
            state.indexed + index(shard, team_id, [r[0] for r in rows]), state.batches + 1
        )
        cursor_key = (rows[-1][1], rows[-1][0])
        if progress is not None:
            progress(state)

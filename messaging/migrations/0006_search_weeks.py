# The search index also holds, for every message, the week it was posted in (in its team):
# a search that ranks only the newest matches of a frequent term (messaging.search.run)
# then asks the index for the term AND one of the team's last few weeks, and reads only
# those rows instead of every match (~5 ms instead of ~11 for a term in 1% of a million
# messages). Per team, so that on a shard of many teams a window's weeks hold only the
# searched team's messages.
#
# The week is a lexeme with spaces in it, which no parsed word ever is, so no query a user
# types can match it, and search_vector itself is unchanged (ts_rank, reindex and imports
# do not see it). The index is on an expression of columns that exist already, so
# existing messages need no reindex. Built CONCURRENTLY, as 0004. The index it replaces
# (message_search) is dropped by 0007, a release later: the code of the release before this
# one still searches through it while a rolling deploy runs both.

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import AddIndexConcurrently
from django.contrib.postgres.search import SearchVectorField
from django.db import migrations
from django.db.models import F, Func

WEEK_US = 7 * 24 * 3600 * 1_000_000

# The index below is on chat_search_entries' results: a future change to either function
# must CREATE a new function (a new name) and a new index on it in a new migration, never
# CREATE OR REPLACE these. PostgreSQL trusts IMMUTABLE and does not rebuild the index, so
# rows indexed before would keep the old entries and searches would silently miss them.
# (OR REPLACE is here only so that a rerun of this migration after a failure goes through.)
FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION chat_search_entries(vector tsvector, team_id bigint, ts bigint) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT vector || array_to_tsvector(ARRAY[team_id::text || ' week ' || (ts / {WEEK_US})::text]) $$;

CREATE OR REPLACE FUNCTION chat_search_weeks(team_id bigint, since_ts bigint, until_ts bigint) RETURNS tsquery
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT string_agg(quote_literal(team_id::text || ' week ' || w::text), ' | ')::tsquery
            FROM generate_series(since_ts / {WEEK_US}, until_ts / {WEEK_US}) AS w $$;
"""

DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS chat_search_weeks(bigint, bigint, bigint);
DROP FUNCTION IF EXISTS chat_search_entries(tsvector, bigint, bigint);
"""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('messaging', '0005_eventsequence_frozen'),
    ]

    operations = [
        migrations.RunSQL(FUNCTIONS, DROP_FUNCTIONS, hints={'model_name': 'message'}),
        # A CREATE INDEX CONCURRENTLY that fails (a deadlock, a cancelled deploy) leaves an
        # INVALID index of that name behind, and running this again would then fail with
        # "already exists": drop any such leftover first (one left valid, when a later step
        # failed, is only built again). A statement of its own: CONCURRENTLY refuses to run
        # inside the implicit transaction of a multi-statement string.
        migrations.RunSQL(
            'DROP INDEX CONCURRENTLY IF EXISTS message_search_weeks',
            migrations.RunSQL.noop,
            hints={'model_name': 'message'},
        ),
        # The expression of messaging.models.SEARCH_ENTRIES_FUNCTION/_COLUMNS, frozen here.
        AddIndexConcurrently(
            model_name='message',
            index=GinIndex(
                Func(F('search_vector'), F('team_id'), F('ts'), function='chat_search_entries', output_field=SearchVectorField()),
                gin_pending_list_limit=1024,
                name='message_search_weeks',
            ),
        ),
        # Search routes on the planner's estimates of the new expression, which has no
        # statistics until the table is analyzed (a sample: about a second at any size).
        migrations.RunSQL('ANALYZE messaging_message', migrations.RunSQL.noop, hints={'model_name': 'message'}),
    ]

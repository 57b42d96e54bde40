"""Drops the search index 0006 replaced (message_search, over search_vector alone).

Ship this one release after 0006, not with it: during a rolling deploy of 0006's release
the previous release's code still runs and searches `search_vector @@ ...`, which only this
index answers; without it each of those searches would read every message of the team.
Until then both GIN indexes are kept current, so indexing writes a little more. Once no
process of the previous release runs, nothing reads it.
"""

from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('messaging', '0006_search_weeks'),
    ]

    operations = [
        RemoveIndexConcurrently(model_name='message', name='message_search'),
    ]

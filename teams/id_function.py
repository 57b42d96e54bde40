"""The SQL function `chat_next_id()`: 64-bit, time-ordered ids, unique across every database of the project.

41 bits of milliseconds since 2026-01-01, 10 bits naming the database (control = 1023,
shard_N = N), 12 bits of a per-database sequence. The database number is baked in when
each database is migrated.
"""

from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

CONTROL_NODE = 1023
EPOCH_MS = 1767225600000  # 2026-01-01T00:00:00Z


def node_for_alias(alias: str) -> int:
    if alias.startswith("shard_"):
        number = int(alias.removeprefix("shard_"))
        if number >= CONTROL_NODE:
            raise ValueError("at most 1023 shards")
        return number
    return CONTROL_NODE


def create_function(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    node = node_for_alias(schema_editor.connection.alias)
    schema_editor.execute("CREATE SEQUENCE IF NOT EXISTS chat_id_seq")
    schema_editor.execute(
        f"""
        CREATE OR REPLACE FUNCTION chat_next_id() RETURNS bigint AS $$
            SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - {EPOCH_MS}) << 22)
                   | ({node} << 12)
                   | (nextval('chat_id_seq') %% 4096)
        $$ LANGUAGE sql VOLATILE
        """
    )


def drop_function(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute("DROP FUNCTION IF EXISTS chat_next_id()")
    schema_editor.execute("DROP SEQUENCE IF EXISTS chat_id_seq")

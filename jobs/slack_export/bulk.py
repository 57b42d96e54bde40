"""Batched inserts for imports: COPY into a temporary copy of the table, then one
INSERT ... SELECT ... ON CONFLICT DO NOTHING, so a batch written twice (a job resumed
after its worker died) adds nothing the second time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg.types.json import Jsonb


def jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def copy_into(cursor: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """COPY rows into a fresh temporary table shaped like `table`; returns its name."""
    temp = f"import_{table}"
    cursor.execute(f"DROP TABLE IF EXISTS {temp}")
    cursor.execute(f"CREATE TEMP TABLE {temp} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
    with cursor.copy(f"COPY {temp} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    return temp


def insert_rows(
    cursor: Any,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    computed: dict[str, str] | None = None,
) -> int:
    """Insert rows (columns not named take the table's defaults); `computed` columns are
    SQL over the copied row, aliased `m`. Returns rows added."""
    temp = copy_into(cursor, table, columns, rows)
    extra = computed or {}
    targets = ", ".join([*columns, *extra])
    values = ", ".join([*(f"m.{c}" for c in columns), *extra.values()])
    cursor.execute(f"INSERT INTO {table} ({targets}) SELECT {values} FROM {temp} AS m ON CONFLICT DO NOTHING")
    added = int(cursor.rowcount)
    cursor.execute(f"DROP TABLE {temp}")
    return added


def copy_keyed(cursor: Any, name: str, columns: str, rows: Iterable[Sequence[Any]]) -> None:
    """A scratch table (`columns` as in CREATE TABLE) for rows joined to messages by ts."""
    cursor.execute(f"DROP TABLE IF EXISTS {name}")
    cursor.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")
    column_names = ", ".join(part.split()[0] for part in columns.split(","))
    with cursor.copy(f"COPY {name} ({column_names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)

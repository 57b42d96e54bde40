"""Copying one team's rows between shards, and proving the copy equal: the engine of a move
(teams.moves decides when each part runs).

Every team-scoped model is found from the app registry (`lives_on_shard`, keyed by team_id),
so a model added later moves with the team without touching this file. Rows travel with
their ids (ids are unique across shards) through COPY in PostgreSQL's text format, so no
value passes through Python types; a row's md5 over its text (columns named, in the
model's order) is what copies and checks compare.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

from django.apps import apps
from django.db import connections, models, transaction
from django.db.backends.utils import CursorWrapper

from chatproject.dbrouter import is_shard_model

HASH_CHUNK = 5000  # rows whose hashes are compared per round trip
COPY_CHUNK = 1000  # rows per COPY: bounds the id list sent and, in the bulk copy, a commit
DELETE_CHUNK = 5000  # rows per DELETE when a shard lets go of a team


@dataclass(frozen=True)
class TeamTable:
    """A shard table holding team rows; `key` is its primary key column."""

    model: type[models.Model]
    table: str
    key: str

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def columns(self) -> str:
        return ", ".join(_quote(f.column) for f in self.model._meta.concrete_fields)

    @property
    def row_md5(self) -> str:
        """SQL of a row's md5 (over `t`): its columns named, so column order on disk is moot."""
        return (
            "md5(ROW("
            + ", ".join(f"t.{_quote(f.column)}" for f in self.model._meta.concrete_fields)
            + ")::text)"
        )

    @property
    def row_number(self) -> str:
        """A row's md5 as a number (its first 64 bits), summed for an order-free checksum."""
        return f"('x' || substr({self.row_md5}, 1, 16))::bit(64)::bigint::numeric"


@dataclass
class TableDiff:
    """How the target's rows of one table differ from the source's."""

    table: TeamTable
    missing: list[int] = field(default_factory=list)  # on the source only
    changed: list[int] = field(default_factory=list)  # on both, different
    extra: list[int] = field(default_factory=list)  # on the target only

    @property
    def stale(self) -> list[int]:
        """Target rows to delete before the source's version is copied in."""
        return self.changed + self.extra

    @property
    def to_copy(self) -> list[int]:
        return self.missing + self.changed


@lru_cache(maxsize=1)
def team_tables() -> tuple[TeamTable, ...]:
    """Every team-scoped table, parents before the tables whose foreign keys point at them."""
    found = [m for m in apps.get_models() if is_shard_model(m)]
    for model in found:
        names = {f.attname for f in model._meta.concrete_fields}
        if "team_id" not in names:
            raise RuntimeError(f"{model._meta.label} lives on shards but has no team_id: it cannot move")
    ordered: list[type[models.Model]] = []

    def visit(model: type[models.Model], path: tuple[type[models.Model], ...]) -> None:
        if model in ordered:
            return
        if model in path:
            raise RuntimeError(f"foreign key cycle through {model._meta.label}")
        for fk in model._meta.concrete_fields:
            parent = fk.related_model if fk.is_relation else None
            if parent is not None and parent is not model and is_shard_model(parent):
                visit(parent, (*path, model))
        ordered.append(model)

    for model in sorted(found, key=lambda m: m._meta.label):
        visit(model, ())
    return tuple(TeamTable(m, m._meta.db_table, m._meta.pk.column) for m in ordered)


def count_of(number: int, noun: str) -> str:
    """Counts in progress lines read as plain English: "1 row", "3 rows"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _quote(name: str) -> str:
    return connections["default"].ops.quote_name(name)


def _row_hashes(
    cursor: CursorWrapper, table: TeamTable, team_id: int, after: int, upto: int | None, limit: int | None
) -> list[tuple[int, str]]:
    key, name = _quote(table.key), _quote(table.table)
    sql = f"SELECT t.{key}, {table.row_md5} FROM {name} t WHERE t.team_id = %s AND t.{key} > %s"
    params: list[object] = [team_id, after]
    if upto is not None:
        sql += f" AND t.{key} <= %s"
        params.append(upto)
    sql += f" ORDER BY t.{key}"
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    cursor.execute(sql, params)
    return [(int(k), str(h)) for k, h in cursor.fetchall()]


def diff_by_hash(source: CursorWrapper, target: CursorWrapper, table: TeamTable, team_id: int) -> TableDiff:
    """Walk both sides in key order, a chunk at a time, comparing row hashes."""
    diff = TableDiff(table)
    after = -(2**63)
    while True:
        theirs = _row_hashes(source, table, team_id, after, None, HASH_CHUNK)
        last_chunk = len(theirs) < HASH_CHUNK
        upto = None if last_chunk else theirs[-1][0]
        ours = dict(_row_hashes(target, table, team_id, after, upto, None))
        for key, digest in theirs:
            mine = ours.pop(key, None)
            if mine is None:
                diff.missing.append(key)
            elif mine != digest:
                diff.changed.append(key)
        diff.extra.extend(ours)
        if last_chunk:
            return diff
        after = theirs[-1][0]


def _keys(
    cursor: CursorWrapper, table: TeamTable, team_id: int, touched_since: int | None = None
) -> set[int]:
    """The team's row keys; with `touched_since` (a transaction id), only rows written by that
    transaction or a later one: PostgreSQL stamps each row version with its writer (xmin)."""
    key, name = _quote(table.key), _quote(table.table)
    sql, params = f"SELECT t.{key} FROM {name} t WHERE t.team_id = %s", [team_id]
    if touched_since is not None:
        # age() counts back from the current transaction, so this is "xmin >= touched_since"
        # without tripping over the 32-bit wraparound of stored xids.
        sql += " AND age(t.xmin) <= age((%s::bigint %% 4294967296)::text::xid)"
        params.append(touched_since)
    cursor.execute(sql, params)
    return {int(k) for (k,) in cursor.fetchall()}


def diff_since(
    source: CursorWrapper, target: CursorWrapper, table: TeamTable, team_id: int, since: int
) -> TableDiff:
    """The diff without reading every row: keys on each side show what is missing or gone,
    and rows written since transaction `since` (see snapshot_xmin) are the changed ones."""
    theirs, ours = _keys(source, table, team_id), _keys(target, table, team_id)
    touched = _keys(source, table, team_id, touched_since=since) & ours
    return TableDiff(table, sorted(theirs - ours), sorted(touched), sorted(ours - theirs))


def snapshot_xmin(alias: str) -> int:
    """The oldest transaction still running on a shard: every write a snapshot taken from now
    on misses was made by it or a later one (the `since` of the next diff_since)."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        return int(cursor.fetchone()[0])


def _chunks(keys: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def copy_rows(
    source: CursorWrapper, target: CursorWrapper, table: TeamTable, team_id: int, keys: list[int]
) -> int:
    """Insert the source's rows with these keys into the target, as they are on the source."""
    key, name, columns = _quote(table.key), _quote(table.table), table.columns
    copied = 0
    for chunk in _chunks(keys, COPY_CHUNK):
        select = f"SELECT {columns} FROM {name} WHERE team_id = %s AND {key} = ANY(%s)"
        with (
            source.cursor.copy(f"COPY ({select}) TO STDOUT", [team_id, chunk]) as rows_out,
            target.cursor.copy(f"COPY {name} ({columns}) FROM STDIN") as rows_in,
        ):
            for data in rows_out:
                rows_in.write(data)
        copied += len(chunk)
    return copied


def delete_rows(target: CursorWrapper, table: TeamTable, team_id: int, keys: list[int]) -> None:
    key, name = _quote(table.key), _quote(table.table)
    for chunk in _chunks(keys, COPY_CHUNK):
        target.execute(f"DELETE FROM {name} WHERE team_id = %s AND {key} = ANY(%s)", [team_id, chunk])


@contextmanager
def source_snapshot(alias: str) -> Iterator[CursorWrapper]:
    """A cursor reading one consistent snapshot of the source: every child row read through
    it finds its parent in the same snapshot, however long the copy takes."""
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield cursor


def bulk_copy(source: str, target: str, team_id: int, progress: Callable[[str], None]) -> int:
    """Copy the rows the target lacks, committing batch by batch while the team keeps working.

    Parents go first and everything is read from one snapshot, so each committed batch keeps
    the target's foreign keys whole; running it again (after a crash) copies only what is
    still missing. Rows changed or deleted meanwhile are left to `sync`.
    """
    total = 0
    with source_snapshot(source) as reader, connections[target].cursor() as writer:
        for table in team_tables():
            missing = sorted(_keys(reader, table, team_id) - _keys(writer, table, team_id))
            for chunk in _chunks(missing, COPY_CHUNK):
                with transaction.atomic(using=target):
                    total += copy_rows(reader, writer, table, team_id, chunk)
            if missing:
                progress(f"  copied {count_of(len(missing), 'row')} of {table.label}")
    return total


def sync(source: str, target: str, team_id: int, since: int | None = None) -> dict[str, int]:
    """Make the target's rows of the team equal the source's, in one target transaction:
    stale rows (changed or gone on the source) deleted, then missing and changed rows copied.
    Foreign keys are checked at commit, so the order of rows within it does not matter.
    With `since`, changed rows are found by their writer (diff_since), else by comparing
    every row's hash. Returns how many rows of each table differed."""
    differed: dict[str, int] = {}
    with source_snapshot(source) as reader, transaction.atomic(using=target):
        with connections[target].cursor() as writer:
            diffs = [
                diff_by_hash(reader, writer, table, team_id)
                if since is None
                else diff_since(reader, writer, table, team_id, since)
                for table in team_tables()
            ]
            for diff in reversed(diffs):
                delete_rows(writer, diff.table, team_id, diff.stale)
            for diff in diffs:
                copy_rows(reader, writer, diff.table, team_id, diff.to_copy)
                if diff.to_copy or diff.extra:
                    differed[diff.table.label] = len(diff.to_copy) + len(diff.extra)
    return differed


@dataclass(frozen=True)
class TableSum:
    rows: int
    checksum: str


def table_sums(alias: str, team_id: int) -> dict[str, TableSum]:
    """Per table: the team's row count and an order-free checksum of its rows (the sum of each
    row's md5 taken as a 64-bit number; equal rows give equal sums on any shard)."""
    sums: dict[str, TableSum] = {}
    with connections[alias].cursor() as cursor:
        for table in team_tables():
            cursor.execute(
                f"SELECT count(*), coalesce(sum({table.row_number}), 0)::text"
                f" FROM {_quote(table.table)} t WHERE t.team_id = %s",
                [team_id],
            )
            rows, checksum = cursor.fetchone()
            sums[table.label] = TableSum(int(rows), str(checksum))
    return sums


def compare_shards(source: str, target: str, team_id: int) -> tuple[dict[str, TableSum], list[str]]:
    """The source's sums, and the tables whose count or checksum differ on the target. Both
    shards add up at once (each on its own connection), as this runs while writes wait."""

    def sums_of(alias: str) -> dict[str, TableSum]:
        try:
            return table_sums(alias, team_id)
        finally:
            connections.close_all()  # this thread's own connections

    with ThreadPoolExecutor(max_workers=2) as pool:
        theirs, ours = pool.map(sums_of, (source, target))
    return theirs, sorted(label for label, total in theirs.items() if ours.get(label) != total)


def delete_team_rows(
    alias: str,
    team_id: int,
    keep: Callable[[TeamTable], bool],
    *,
    keep_rows: Mapping[type[models.Model], Collection[int]] | None = None,
) -> int:
    """Delete the team's rows on one shard, children first, a batch per transaction
    (savepoints inside a caller's transaction). Tables `keep` says yes to are left alone,
    and so are the rows of `keep_rows` (model -> primary keys)."""
    deleted = 0
    keep_rows = keep_rows or {}
    with connections[alias].cursor() as cursor:
        for table in reversed(team_tables()):
            if keep(table):
                continue
            key, name = _quote(table.key), _quote(table.table)
            kept = list(keep_rows.get(table.model, ()))
            spared = f" AND NOT ({key} = ANY(%s))" if kept else ""
            while True:
                with transaction.atomic(using=alias):
                    cursor.execute(
                        f"DELETE FROM {name} WHERE {key} IN"
                        f" (SELECT {key} FROM {name} WHERE team_id = %s{spared} LIMIT %s)",
                        [team_id, *([kept] if kept else []), DELETE_CHUNK],
                    )
                    count = cursor.rowcount
                deleted += count
                if count < DELETE_CHUNK:
                    break
    return deleted

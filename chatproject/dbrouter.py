"""Routes every team-scoped model to the shard of the team being served.

Code that touches a team's rows runs inside `on_shard(alias)` (the Web API, actions,
tasks do this once per request/job); a team-scoped query outside it raises instead of
silently landing on the wrong database. Also the one way to cap a transaction's
statement and lock waits (set_local_timeouts).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import OperationalError, models

from chatproject import shard_outage

if TYPE_CHECKING:
    from django.db.backends.utils import CursorWrapper

CONTROL_DB = "default"
_current_shard: ContextVar[str | None] = ContextVar("current_shard", default=None)


class NoShardSelected(RuntimeError):
    """A team-scoped model was queried without choosing the team's shard."""


def is_shard_model(model: type[models.Model]) -> bool:
    return bool(getattr(model, "lives_on_shard", False))


def current_shard() -> str:
    alias = _current_shard.get()
    if alias is None:
        raise NoShardSelected("team-scoped query outside on_shard()")
    return alias


@contextmanager
def on_shard(alias: str) -> Iterator[str]:
    # A shard known to be down refuses at once (chatproject.shard_outage).
    shard_outage.check(alias)
    token = _current_shard.set(alias)
    try:
        yield alias
    except OperationalError as exc:
        shard_outage.report_failure(alias, exc)
        raise
    finally:
        _current_shard.reset(token)


def set_local_timeouts(cursor: CursorWrapper, *, statement_ms: int, lock_ms: int | None = None) -> None:
    """Cap the statements (and, given lock_ms, the lock waits) of the transaction the
    cursor is in, so a slow or locked database fails this work instead of holding it."""
    if not cursor.db.in_atomic_block:
        # Outside a transaction SET LOCAL is a no-op (a warning in the server log only).
        raise RuntimeError("set_local_timeouts must run inside a transaction")
    if lock_ms is not None:
        cursor.execute(f"SET LOCAL lock_timeout = {int(lock_ms)}")
    cursor.execute(f"SET LOCAL statement_timeout = {int(statement_ms)}")


class ShardRouter:
    def _db_for(self, model: type[models.Model], hints: dict[str, Any]) -> str:
        if not is_shard_model(model):
            return CONTROL_DB
        instance = hints.get("instance")
        if instance is not None and instance._state.db:
            return str(instance._state.db)
        return current_shard()

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str:
        return self._db_for(model, hints)

    def db_for_write(self, model: type[models.Model], **hints: Any) -> str:
        return self._db_for(model, hints)

    def allow_relation(self, obj1: models.Model, obj2: models.Model, **hints: Any) -> bool:
        return bool(obj1._state.db == obj2._state.db)

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        if model_name is None:
            return True  # RunSQL/RunPython: the operation decides for itself
        try:
            model = apps.get_model(app_label, model_name)
        except LookupError:
            model = hints.get("model")
        on_shard_db = db != CONTROL_DB
        return is_shard_model(model) == on_shard_db if model is not None else not on_shard_db

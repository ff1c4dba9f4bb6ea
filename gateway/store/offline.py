"""Reading a store from outside the service that owns it: `alarmgw queue`, `drills` and
`status` when no service answers on the control socket, and the self-test's look at it.

A read-only connection (`mode=ro`), never an `Outbox`: opening one puts rows left in flight
back to ready, writes the reserve file and stamps the schema version, and a command that
only looks must change nothing on disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import StoreError
from gateway.store import inspections
from gateway.store.records import QueueStats
from gateway.store.reports import drill_records, queue_stats, waiting_rows
from gateway.store.schema import version_problem

T = TypeVar("T")


def _read_offline(path: Path, read: Callable[[sqlite3.Connection], T]) -> T:
    """Run `read` on a read-only connection to the store of a service that is not running."""
    if not path.exists():
        raise StoreError(f"no store at {path} (has the service ever run with this config?)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store {path} read-only: {exc}") from exc
    try:
        problem = version_problem(path, db.execute("PRAGMA user_version").fetchone()[0])
        if problem is not None:
            raise StoreError(problem)
        return read(db)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the store {path}: {exc}") from exc
    finally:
        db.close()


def read_drills_offline(path: Path, limit: int = 100) -> list[dict[str, Any]]:
    """The drill records of a store whose service is not running."""
    return _read_offline(path, lambda db: drill_records(db, limit))


def read_queue_offline(path: Path, limit: int = 100) -> tuple[QueueStats, list[dict[str, Any]]]:
    """Read the queue of a store whose service is not running, without changing it."""
    return _read_offline(path, lambda db: (queue_stats(db, 0, 0, 0), waiting_rows(db, limit)))


def read_proven_offline(path: Path) -> dict[str, dict[str, Any]]:
    """Point id -> its proven record (gateway.inspection.record), from a store whose service
    is not running; none in a file an older alarmgw wrote."""

    def read(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='proven'").fetchone() is None:
            return {}
        return inspections.proven(db)

    return _read_offline(path, read)


def read_inspections_offline(path: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The inspection windows (latest first) of a store whose service is not running; none
    in a file an older alarmgw wrote, which has no inspection table yet."""

    def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='inspections'").fetchone() is None:
            return []
        return inspections.windows(db, limit=limit)

    return _read_offline(path, read)

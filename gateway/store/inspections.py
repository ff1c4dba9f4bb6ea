"""The inspection tables: windows, the per-point proven record, the notices sent.

What gateway.inspection keeps across a restart: a window that is still running (so that
it resumes), the record of every press in it and, once it ended, its report; for each
point, the last time it was proven working (or since when it has gone unproven); and the
untested notices already sent, so that none is sent twice. The records are JSON documents
that gateway.inspection makes; the store keeps them and says nothing of what they mean,
beyond the columns its readers select by.

Nothing here writes on a timer: each write is a window starting or ending, a press, a
delivery or a notice (gateway.store.schema, version 3, has the tables).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from gateway.store.records import StoreWrite

TABLES = ("inspections", "proven", "notices")


def apply(db: sqlite3.Connection, write: StoreWrite) -> None:
    """Write one record, inside the caller's transaction."""
    text = json.dumps(write.record, ensure_ascii=False, separators=(",", ":"))
    if write.table == "inspections":
        db.execute("INSERT INTO inspections (id, open, started_at, record) VALUES (?,?,?,?)"
                   " ON CONFLICT (id) DO UPDATE SET open=excluded.open, record=excluded.record",
                   (write.key, 1 if write.record.get("open") else 0,
                    str(write.record.get("started_at", "")), text))
    elif write.table == "proven":
        db.execute("INSERT OR REPLACE INTO proven (point, record) VALUES (?, ?)",
                   (write.key, text))
    elif write.table == "notices":
        db.execute("INSERT OR REPLACE INTO notices (point, about, record) VALUES (?, ?, ?)",
                   (write.key, str(write.record.get("about", "")), text))
    else:
        raise ValueError(f"no table {write.table!r} for inspection records (tables:"
                         f" {', '.join(TABLES)})")


def windows(db: sqlite3.Connection, *, open_only: bool = False, limit: int = 20
            ) -> list[dict[str, Any]]:
    """Inspection windows, the latest first (open ones only, with `open_only`)."""
    where = " WHERE open=1" if open_only else ""
    rows = db.execute(f"SELECT record FROM inspections{where} ORDER BY rowid DESC LIMIT ?",
                      (limit,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def proven(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Point id -> its proven record."""
    return {r[0]: json.loads(r[1]) for r in db.execute("SELECT point, record FROM proven")}


def notices(db: sqlite3.Connection) -> dict[str, str]:
    """Point id -> what its last notice was about."""
    return {r[0]: r[1] for r in db.execute("SELECT point, about FROM notices")}

"""Schema version 3 only adds the inspection tables: a version 2 file is brought to 3 on
open with every row kept, its inspection records then work, and the offline reader reads
a version 2 file (no inspection table yet) without changing it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store import (
    SCHEMA_VERSION,
    EventDraft,
    Lane,
    Outbox,
    StoreWrite,
    read_inspections_offline,
)
from gateway.store.schema import version_problem

V3_TABLES = ("inspections", "proven", "notices")


def make_v2_store(path: Path) -> list[tuple[object, ...]]:
    """A store as alarmgw with schema version 2 left it (one event, one ack); its rows."""
    with Outbox(path) as box:
        box.commit_event(Lane.ALARM, lambda seq: EventDraft(f"ev-{seq}", "alarm", "event",
                                                            b'{"seq": 1}'))
        box.record_ack("ev-1", "cmd-1", "duty officer", None, "2026-11-28T15:38:01.000Z")
    db = sqlite3.connect(path, isolation_level=None)
    for table in V3_TABLES:
        db.execute(f"DROP TABLE {table}")
    db.execute("PRAGMA user_version=2")
    rows = db.execute("SELECT rowid, lane, state, seq, event_id, payload FROM outbox").fetchall()
    db.close()
    return rows


def tables(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()


def test_a_version_2_store_gets_the_inspection_tables_and_keeps_every_row(
        tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    before = make_v2_store(path)
    assert version_problem(path, 2) is None
    assert not set(V3_TABLES) & tables(path)
    # Read offline before the upgrade: nothing to show, and the file is left as it was.
    assert read_inspections_offline(path) == []
    assert not set(V3_TABLES) & tables(path)
    with Outbox(path) as box:
        db = box._db
        assert db is not None
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        after = db.execute("SELECT rowid, lane, state, seq, event_id, payload FROM outbox"
                           ).fetchall()
        assert after == before
        assert box.acks_for("ev-1")[0]["operator"] == "duty officer"
        box.write(StoreWrite("inspections", "i-1", {"id": "i-1", "open": True,
                                                    "started_at": "2026-12-01T08:00:00.000Z"}),
                  StoreWrite("proven", "gate-panic", {"proven_at": None}),
                  StoreWrite("notices", "gate-panic", {"about": "since:x"}))
        assert [w["id"] for w in box.inspection_windows(open_only=True)] == ["i-1"]
        assert box.proven_records() == {"gate-panic": {"proven_at": None}}
        assert box.notices_sent() == {"gate-panic": "since:x"}
    assert set(V3_TABLES) <= tables(path)
    assert [w["id"] for w in read_inspections_offline(path)] == ["i-1"]
    # Opened again at version 3: nothing to migrate, the records are there.
    with Outbox(path) as box:
        assert box.proven_records() == {"gate-panic": {"proven_at": None}}


def test_an_inspection_record_commits_with_its_event_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        window = StoreWrite("inspections", "i-2", {"id": "i-2", "open": True,
                                                   "started_at": "t"})
        box.commit_event(Lane.ALARM, lambda seq: EventDraft("ev-a", "inspection_started",
                                                            "event", b"{}"), writes=[window])
        assert [w["id"] for w in box.inspection_windows()] == ["i-2"]
        bad = StoreWrite("nowhere", "x", {})
        try:
            box.commit_event(Lane.ALARM, lambda seq: EventDraft("ev-b", "test", "event", b"{}"),
                             writes=[StoreWrite("proven", "p", {}), bad])
        except ValueError:
            pass
        else:
            raise AssertionError("a write to an unknown table was taken")
        assert box.find_event("ev-b") is None and box.proven_records() == {}

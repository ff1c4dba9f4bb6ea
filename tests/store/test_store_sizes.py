"""Reading the store's sizes and ages must not read its pictures.

A row's columns are stored in order, and SQLite reaches a column behind a picture only by
walking the picture's chain of overflow pages. `Outbox.stats()` runs from the heartbeat,
from the systemd status line after every commit and from `alarmgw status`, under the
store's lock: if it reads a column stored after the payload, every picture is read again
each time, and an alarm's commit waits behind them. These tests hold that down without a
clock: which columns the store's queries read (SQLite's authorizer, told of every column a
statement reads when it is prepared), and how many bytes the reading thread takes from the
files (`rchar` of /proc/thread-self/io: SQLite reads its pages with pread, so that is
pages read, in bytes). Also: a store written by the first schema (its DDL is written out
below, as that version of alarmgw left it on disk) opens, is migrated, and keeps every row.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.errors import StoreError
from gateway.store import SCHEMA_VERSION, EventDraft, Lane, Outbox, State, read_queue_offline

#: One fake JPEG: a store of them is what the snapshot lane leaves while the broker is away.
PICTURE = b"\xff\xd8" + os.urandom(200 * 1024) + b"\xff\xd9"
#: Enough pictures that no page cache holds them (SQLite's default cache is 2 MiB).
PICTURES = 100
#: What reading the sizes of PICTURES rows may take from disk, in bytes: a few pages per
#: row, far below the PICTURES * 200 KiB a walk through the pictures reads.
FEW_PAGES = 1024 * 1024

SQLITE_READ = 20

# The file format of schema version 1, as alarmgw 0.1.0 created it: `size`, `created_at`,
# `attempts` and `acked_at` come after the payload.
V1_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE outbox (
    rowid      INTEGER PRIMARY KEY,
    lane       INTEGER NOT NULL,
    state      INTEGER NOT NULL DEFAULT 0,
    seq        INTEGER UNIQUE,
    event_id   TEXT UNIQUE,
    event_type TEXT,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    properties TEXT,
    size       INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    acked_at   TEXT
);
CREATE INDEX outbox_by_state ON outbox (state, lane, rowid);
CREATE INDEX outbox_acked ON outbox (rowid) WHERE state = 2;
CREATE TABLE acks (event_id TEXT NOT NULL, command_id TEXT NOT NULL, operator TEXT NOT NULL,
                   note TEXT, issued_at TEXT NOT NULL, received_at TEXT NOT NULL);
CREATE INDEX acks_by_event ON acks (event_id);
CREATE TABLE open_faults (device TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE commands_seen (rowid INTEGER PRIMARY KEY, command_id TEXT NOT NULL UNIQUE,
                            received_at TEXT NOT NULL);
CREATE TABLE drills (event_id TEXT PRIMARY KEY, seq INTEGER, point TEXT NOT NULL,
                     requested_by TEXT, boot_id TEXT NOT NULL, timeline TEXT NOT NULL);
"""
V1_COLUMNS = ("rowid", "lane", "state", "seq", "event_id", "event_type", "topic", "payload",
              "properties", "size", "created_at", "attempts", "acked_at")
OLD_BOOT = "0d0e1f2a-3b4c-4d5e-8f60-718293a4b5c6"


def alarm(seq: int) -> EventDraft:
    doc = {"id": f"alarm-{seq}", "seq": seq, "type": "alarm", "mono_ns": 1000 + seq,
           "boot_id": OLD_BOOT}
    return EventDraft(event_id=f"alarm-{seq}", event_type="alarm", topic="event",
                      payload=json.dumps(doc).encode())


def fill(box: Outbox, n: int = PICTURES) -> None:
    for i in range(n):
        box.put_bulk(f"snapshot/e{i}/cam-1", PICTURE, {"event_id": f"e{i}", "camera": "cam-1"})


def outbox_columns(db: sqlite3.Connection) -> list[str]:
    return [r[1] for r in db.execute("PRAGMA table_info(outbox)")]


@contextmanager
def columns_read(box: Outbox) -> Iterator[set[str]]:
    """The columns of `outbox` that the statements run inside the block read."""
    db = box._db
    assert db is not None
    seen: set[str] = set()

    def authorize(action: int, table: str | None, column: str | None, *_: object) -> int:
        if action == SQLITE_READ and table == "outbox" and column:
            seen.add(column)
        return sqlite3.SQLITE_OK

    # Setting an authorizer makes SQLite prepare cached statements again, so each one
    # the block runs is seen.
    db.set_authorizer(authorize)
    try:
        yield seen
    finally:
        db.set_authorizer(None)


def after_payload(box: Outbox, columns: set[str]) -> list[str]:
    """Those of `columns` stored after the payload: reaching one walks the whole picture."""
    assert box._db is not None
    order = outbox_columns(box._db)
    return [c for c in order[order.index("payload") + 1:] if c in columns]


def bytes_read(fn: Callable[[], object]) -> int:
    """Bytes this thread read (pread and read) while running `fn`."""
    def rchar() -> int:
        for line in Path("/proc/thread-self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        raise AssertionError("no rchar in /proc/thread-self/io")

    if not Path("/proc/thread-self/io").exists():
        pytest.skip("needs Linux's per-thread I/O accounting (/proc/thread-self/io)")
    before = rchar()
    fn()
    return rchar() - before


# -- the hazard: statistics that read the pictures --------------------------------------------


def test_stats_and_waiting_read_no_column_stored_after_the_payload(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as box:
        fill(box, 3)
        box.commit_event(Lane.ALARM, alarm)
        with columns_read(box) as seen:
            box.stats()
            box.waiting(100)
        assert "payload" not in seen
        assert after_payload(box, seen) == []
        assert {"size", "created_at"} <= seen


def test_stats_reads_a_few_pages_not_the_pictures(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        fill(box)
        box.commit_event(Lane.ALARM, alarm)
    with Outbox(path) as box:  # a new connection: nothing of the pictures in its cache
        stats = box.stats()
        assert stats.lanes["bulk"].bytes == PICTURES * len(PICTURE)
        # Every figure again, as the heartbeat and the status line ask for them.
        assert bytes_read(box.stats) < FEW_PAGES
        assert bytes_read(lambda: box.waiting(PICTURES)) < FEW_PAGES


def test_an_alarm_on_a_store_at_its_budget_reads_no_picture_but_the_one_it_evicts(
        tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    budget = PICTURES * len(PICTURE)
    with Outbox(path, max_bytes=budget) as box:
        fill(box)
    with Outbox(path, max_bytes=budget) as box:
        with columns_read(box) as seen:
            read = bytes_read(lambda: box.commit_event(Lane.ALARM, alarm))
        assert box.evicted_total == 1
        assert "payload" not in seen and after_payload(box, seen) == []
        # Deleting the evicted picture walks its own pages, once; nothing else is read.
        assert read < len(PICTURE) + FEW_PAGES


def test_take_ack_and_pruning_read_nothing_stored_after_the_payload(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", keep_acked=0) as box:
        fill(box, 4)
        with columns_read(box) as seen:
            rows = box.take(4)
            box.ack([r.rowid for r in rows])  # and prunes: keep_acked 0
        assert [r.payload for r in rows] == [PICTURE] * 4
        assert after_payload(box, seen) == []
        assert box.stats().acked_kept == 0 and box.stats().bytes_total == 0


def test_payload_is_the_last_column(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as box:
        assert box._db is not None
        assert outbox_columns(box._db)[-1] == "payload"


# -- a store of schema version 1 -------------------------------------------------------------


def make_v1_store(path: Path, pictures: int = 2) -> list[dict[str, object]]:
    """Write a store as schema version 1 left it; return its outbox rows."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V1_DDL)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO meta VALUES ('next_seq', 13)")
    rows: list[tuple[object, ...]] = []
    for seq, state, lane, etype in ((10, State.ACKED, Lane.ALARM, "alarm"),
                                    (11, State.IN_FLIGHT, Lane.ALARM, "alarm"),
                                    (12, State.READY, Lane.EVENT, "restore")):
        doc = {"id": f"ev-{seq}", "seq": seq, "type": etype, "mono_ns": 5_000_000_000 + seq,
               "boot_id": OLD_BOOT}
        payload = json.dumps(doc).encode()
        rows.append((int(lane), int(state), seq, f"ev-{seq}", etype, "event", payload, None,
                     len(payload), f"2026-11-28T15:37:0{seq - 10}.123Z", 1 if state else 0,
                     "2026-11-28T15:38:00.000Z" if state == State.ACKED else None))
    for i in range(pictures):
        props = json.dumps({"event_id": "ev-11", "camera": f"cam-{i}"})
        rows.append((int(Lane.BULK), int(State.ACKED if i == 0 else State.READY), None, None,
                     None, f"snapshot/ev-11/cam-{i}", PICTURE, props, len(PICTURE),
                     f"2026-11-28T15:37:05.{i:03d}Z", 0, None))
    result = json.dumps({"ok": True}).encode()
    rows.append((int(Lane.EVENT), int(State.READY), None, None, None, "cmd/result", result,
                 json.dumps({"correlation": "c-1"}), len(result), "2026-11-28T15:39:00.000Z",
                 0, None))
    db.executemany("INSERT INTO outbox (lane, state, seq, event_id, event_type, topic, payload,"
                   " properties, size, created_at, attempts, acked_at)"
                   " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.execute("INSERT INTO acks VALUES ('ev-10', 'cmd-1', 'duty officer', NULL,"
               " '2026-11-28T15:38:01.000Z', '2026-11-28T15:38:01.100Z')")
    db.execute("INSERT INTO open_faults VALUES ('cam-1', '{\"device\": \"cam-1\"}')")
    db.execute("INSERT INTO commands_seen (command_id, received_at) VALUES ('cmd-1', 'now')")
    db.execute("INSERT INTO drills VALUES ('ev-10', 10, 'gate-panic', NULL, ?, '{}')",
               (OLD_BOOT,))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    got = rows_of(db, V1_COLUMNS)
    db.close()
    return got


def rows_of(db: sqlite3.Connection, columns: tuple[str, ...]) -> list[dict[str, object]]:
    cur = db.execute(f"SELECT {', '.join(columns)} FROM outbox ORDER BY rowid")
    return [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]


def test_a_version_1_store_is_migrated_on_open_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    before = make_v1_store(path)
    with Outbox(path) as box:
        db = box._db
        assert db is not None
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert outbox_columns(db)[-1] == "payload"
        after = rows_of(db, V1_COLUMNS)
        # Every row and every value, but the in-flight one that open puts back to ready.
        expect = [r | {"state": State.READY} if r["state"] == State.IN_FLIGHT else r
                  for r in before]
        assert after == expect
        assert box.requeued_at_open == 1
        # An event's boot clock comes from its document; other rows have none.
        clocks = db.execute("SELECT event_id, boot_id, mono_ns FROM outbox ORDER BY rowid"
                            ).fetchall()
        assert clocks[:3] == [(f"ev-{s}", OLD_BOOT, 5_000_000_000 + s) for s in (10, 11, 12)]
        assert all(c[1:] == (None, None) for c in clocks[3:])
        # The other tables as they were.
        assert db.execute("SELECT operator FROM acks").fetchall() == [("duty officer",)]
        assert box.open_faults() == [{"device": "cam-1"}]
        assert box.recent_commands(5) == ["cmd-1"]
        assert [d["point"] for d in box.drills()] == ["gate-panic"]

        sizes = {r["rowid"]: r["size"] for r in before}
        stats = box.stats()
        assert stats.bytes_total == sum(sizes.values())  # type: ignore[arg-type]
        assert stats.next_seq == 13
        assert stats.acked_kept == 2
        assert (stats.lanes["alarm"].ready, stats.lanes["alarm"].in_flight) == (1, 0)
        assert stats.lanes["event"].ready == 2
        assert (stats.lanes["bulk"].ready, stats.lanes["bulk"].bytes) == (1, len(PICTURE))
        assert stats.lanes["alarm"].oldest_event_id == "ev-11"
        with columns_read(box) as seen:
            box.stats()
        assert after_payload(box, seen) == []

        # It goes on as any store: the next event gets seq 13, delivery resumes in order.
        seq, _ = box.commit_event(Lane.ALARM, alarm)
        assert seq == 13
        taken = box.take(10)
        assert [r.seq for r in taken[:2]] == [11, 13]
        assert taken[-1].payload == PICTURE
    with Outbox(path) as box:  # and a second open finds nothing to migrate
        assert box.stats().next_seq == 14


def test_a_version_1_store_is_read_offline_as_it_is(tmp_path: Path) -> None:
    """`alarmgw queue` and `status` with the service stopped after an upgrade, before it has
    opened (and migrated) its store: read, not changed."""
    path = tmp_path / "o.sqlite3"
    make_v1_store(path)
    content = path.read_bytes()
    stats, waiting = read_queue_offline(path, 10)
    assert stats.waiting == 4 and stats.lanes["alarm"].oldest_event_id == "ev-11"
    assert stats.lanes["alarm"].oldest_mono_ns is None
    assert [(w["event_id"], w["mono_ns"], w["boot_id"]) for w in waiting[:2]] == [
        ("ev-11", None, None), ("ev-12", None, None)]
    assert path.read_bytes() == content


def test_migrating_a_store_of_pictures_does_not_double_its_file(tmp_path: Path) -> None:
    """The rows move into the new table in one transaction that reuses the pages it frees:
    the file must not keep a second copy of the pictures, nor the WAL the whole of them."""
    path = tmp_path / "o.sqlite3"
    make_v1_store(path, pictures=PICTURES)
    size_before = path.stat().st_size
    with Outbox(path) as box:
        assert box.stats().lanes["bulk"].ready == PICTURES - 1
    assert path.stat().st_size < size_before * 1.1
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size < FEW_PAGES


def test_an_unknown_schema_version_is_refused_and_the_file_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    make_v1_store(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    content = path.read_bytes()
    with pytest.raises(StoreError, match="schema version 99"):
        Outbox(path).open()
    assert path.read_bytes() == content


def test_a_version_1_store_on_a_full_disk_gives_its_snapshots_up_to_be_migrated(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The migration writes every row again; where the disk has no room for that, the
    service must still start with every alarm and event (what a full disk lets go anyway,
    waiting snapshots and delivered history, goes first)."""
    from test_full_disk import fill_with_file, small_tmpfs

    made = tmp_path / "v1.sqlite3"
    before = make_v1_store(made, pictures=25)  # 5 MB: the migration needs as much again
    with small_tmpfs(tmp_path / "state", "8m") as state:
        path = state / "o.sqlite3"
        shutil.copyfile(made, path)
        filler = fill_with_file(state)
        filler.write_bytes(b"\0" * (filler.stat().st_size - 512 * 1024))
        with Outbox(path, reserve_bytes=64 * 1024) as box:
            db = box._db
            assert db is not None
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert outbox_columns(db)[-1] == "payload"
            kept = rows_of(db, V1_COLUMNS)
            events = [r | {"state": State.READY} if r["state"] == State.IN_FLIGHT else r
                      for r in before if r["lane"] != Lane.BULK and r["state"] != State.ACKED]
            assert [r for r in kept if r["lane"] != Lane.BULK] == events
            assert [r for r in kept if r["lane"] == Lane.BULK] == []
            assert box.evicted_total == 24  # the waiting pictures (the 25th was delivered)
            assert box.disk_trouble is not None and "migrating" in box.disk_trouble
            assert box.stats().bytes_total == sum(r["size"] for r in events)  # type: ignore[misc]
            seq, _ = box.commit_event(Lane.ALARM, alarm)
            assert seq == 13
        assert "no room on the disk to migrate the store" in caplog.text

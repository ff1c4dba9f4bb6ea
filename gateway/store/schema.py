"""The store's file format: its tables, the pragmas a writing connection runs with, and the
check of the schema version when the file is opened.

What is on disk outlives any one process and is read by the offline readers too
(gateway.store.offline), so it is written down once, here, apart from the code that moves
rows about. There is one schema version so far: "migrating" a file on open means stamping
a new one with it and refusing a file of any other version, never guessing at it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.errors import StoreError

SCHEMA_VERSION = 1
#: What `prepare` leaves the connection's `synchronous` at: the first commit of a row must
#: be fsynced, so a connection starts out at the strict setting.
SYNCHRONOUS_AT_OPEN = "FULL"

# `lane` and `state` hold Lane and State (gateway.store.records): the 2 of the partial
# index is State.ACKED, the history that pruning walks.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
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
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, lane, rowid);
CREATE INDEX IF NOT EXISTS outbox_acked ON outbox (rowid) WHERE state = 2;
CREATE TABLE IF NOT EXISTS acks (
    event_id    TEXT NOT NULL,
    command_id  TEXT NOT NULL,
    operator    TEXT NOT NULL,
    note        TEXT,
    issued_at   TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS acks_by_event ON acks (event_id);
CREATE TABLE IF NOT EXISTS open_faults (
    device TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands_seen (
    rowid       INTEGER PRIMARY KEY,
    command_id  TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drills (
    event_id     TEXT PRIMARY KEY,
    seq          INTEGER,
    point        TEXT NOT NULL,
    requested_by TEXT,
    boot_id      TEXT NOT NULL,
    timeline     TEXT NOT NULL  -- JSON: step -> {"at": UTC time, "mono_ns": CLOCK_BOOTTIME}
);
"""


def prepare(db: sqlite3.Connection, path: Path, *, reserve_bytes: int) -> None:
    """Set a fresh writing connection to the store's pragmas and make sure of its tables
    and schema version; `path`: the database file (for messages), `reserve_bytes`: the
    size of the ballast file kept for alarms (0: none).

    Raises StoreError for a file this alarmgw must not write to; lets sqlite3.Error
    through for the caller to say the store is unusable.
    """
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise StoreError(f"store {path}: SQLite refused WAL mode (got {mode!r});"
                         " is the state directory on a filesystem without mmap?")
    db.execute(f"PRAGMA synchronous={SYNCHRONOUS_AT_OPEN}")
    # Debian's SQLite zeroes deleted rows (secure_delete=ON): a zeroed picture costs its
    # size again in WAL and SD writes, which a full disk does not have.
    db.execute("PRAGMA secure_delete=FAST")
    if reserve_bytes > 0:
        # The WAL must never hold more than the reserve can take: releasing the
        # reserve has to leave room for a checkpoint to move it into the database.
        page = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute(f"PRAGMA wal_autocheckpoint={max(16, reserve_bytes // page // 2)}")
    db.executescript(_SCHEMA)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    elif version != SCHEMA_VERSION:
        raise StoreError(f"store {path} has schema version {version}, this alarmgw"
                         f" knows {SCHEMA_VERSION}: upgrade alarmgw or move the file")

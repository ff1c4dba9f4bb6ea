"""The store's file format: its tables, the pragmas a writing connection runs with, the
check of the schema version when the file is opened, and the migration of a file an
older alarmgw wrote.

What is on disk outlives any one process and is read by the offline readers too
(gateway.store.offline), so it is written down once, here, apart from the code that moves
rows about. A file of an older version is migrated on open, in one transaction (either
the old file or the new one, never half of each); a file of a version this alarmgw does
not know is refused, never guessed at.

Versions:

1. The first: `size`, `created_at`, `attempts` and `acked_at` stored after the payload.
2. The payload is the last column, and rows carry the boot clock of their creation
   (`mono_ns`, `boot_id`). SQLite stores a row's columns in order and reaches one behind a
   picture only by walking the picture's overflow pages, so with version 1 the sizes and
   ages the status screens read cost a read of every picture stored; in version 2 they
   are on the row's first page, and the indexes the sums use carry `size` themselves.
   Within one boot a row's age is told by CLOCK_BOOTTIME, which NTP does not step.
3. Inspections (gateway.inspection): `inspections` (each window and, once it ended, its
   report), `proven` (per point, the last time it was proven working, or since when it
   has gone unproven) and `notices` (the untested notices sent, so that none is sent
   twice). Only tables are added: a version 2 file is brought to 3 by creating them.
4. Second paths (gateway.store.paths): `path_queue`, the events a path other than MQTT
   (the DC-09 path) has still to deliver, each with its wire sequence number. A table is
   added, nothing rewritten: a version 2 or 3 file is brought to 4 by creating what it lacks.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway import __version__
from gateway.errors import StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
#: What `prepare` leaves the connection's `synchronous` at: the first commit of a row must
#: be fsynced, so a connection starts out at the strict setting.
SYNCHRONOUS_AT_OPEN = "FULL"

# `lane` and `state` hold Lane and State (gateway.store.records): the 2 of the partial
# index is State.ACKED, the history that pruning walks.
#
# The order of the outbox's columns is part of the format: the small ones that every
# report and every move reads come first, the variable text after them, the payload last.
# `size` in both indexes makes the sums of the queue by lane, the budget's and the
# pruning's walks read index pages only (and in rowid order, where they stop early).
_OUTBOX = """
CREATE TABLE IF NOT EXISTS {name} (
    rowid      INTEGER PRIMARY KEY,
    lane       INTEGER NOT NULL,
    state      INTEGER NOT NULL DEFAULT 0,
    size       INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    seq        INTEGER UNIQUE,
    mono_ns    INTEGER,  -- CLOCK_BOOTTIME when the row was created, in ns
    created_at TEXT NOT NULL,
    boot_id    TEXT,     -- the boot that mono_ns belongs to
    acked_at   TEXT,
    event_id   TEXT UNIQUE,
    event_type TEXT,
    topic      TEXT NOT NULL,
    properties TEXT,
    payload    BLOB NOT NULL
)"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, lane, rowid, size)",
    "CREATE INDEX IF NOT EXISTS outbox_acked ON outbox (rowid, size) WHERE state = 2",
)
#: What version 3 added.
_V3_TABLES = (
    # `record` is the JSON of gateway.inspection's own records; the columns beside it
    # are what the readers select and order by.
    """CREATE TABLE IF NOT EXISTS inspections (
    rowid      INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    open       INTEGER NOT NULL,  -- 1 while the window runs (it resumes after a restart)
    started_at TEXT NOT NULL,
    record     TEXT NOT NULL
)""",
    "CREATE TABLE IF NOT EXISTS proven (point TEXT PRIMARY KEY, record TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS notices (
    point   TEXT PRIMARY KEY,
    about   TEXT NOT NULL,  -- the proven record the notice was about (one notice each)
    record  TEXT NOT NULL
)""",
)
#: What version 4 added. `outbox_row` is the event's row in the outbox (kept while queued).
_V4_TABLES = (
    """CREATE TABLE IF NOT EXISTS path_queue (
    rowid      INTEGER PRIMARY KEY,
    path       TEXT NOT NULL,     -- 'dc09'
    outbox_row INTEGER NOT NULL,
    wire_seq   INTEGER NOT NULL,  -- the path's sequence number, given when queued
    UNIQUE (path, outbox_row)
)""",
    "CREATE INDEX IF NOT EXISTS path_queue_by_row ON path_queue (outbox_row)",
)
_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    _OUTBOX.format(name="outbox"),
    *_INDEXES,
    """CREATE TABLE IF NOT EXISTS acks (
    event_id    TEXT NOT NULL,
    command_id  TEXT NOT NULL,
    operator    TEXT NOT NULL,
    note        TEXT,
    issued_at   TEXT NOT NULL,
    received_at TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS acks_by_event ON acks (event_id)",
    "CREATE TABLE IF NOT EXISTS open_faults (device TEXT PRIMARY KEY, record TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS commands_seen (
    rowid       INTEGER PRIMARY KEY,
    command_id  TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS drills (
    event_id     TEXT PRIMARY KEY,
    seq          INTEGER,
    point        TEXT NOT NULL,
    requested_by TEXT,
    boot_id      TEXT NOT NULL,
    timeline     TEXT NOT NULL  -- JSON: step -> {"at": UTC time, "mono_ns": CLOCK_BOOTTIME}
)""",
    *_V3_TABLES,
    *_V4_TABLES,
)

#: The columns a version 1 outbox shares with version 2.
_V1_COLUMNS = ("rowid, lane, state, size, attempts, seq, created_at, acked_at, event_id,"
               " event_type, topic, properties, payload")
# An event's document carries the boot clock of its occurrence; version 1 kept it nowhere
# else. Each WHEN is tried in order, so json_* only ever sees a valid document.
_DOC = "CAST(payload AS TEXT)"
_FROM_DOC = ("CASE WHEN event_id IS NULL THEN NULL WHEN NOT json_valid({doc}) THEN NULL"
             " WHEN json_type({doc}, '$.{key}') = '{kind}' THEN json_extract({doc}, '$.{key}')"
             " END")
_MOVE_V1_ROW = (
    f"INSERT INTO outbox_v2 ({_V1_COLUMNS}, mono_ns, boot_id) SELECT {_V1_COLUMNS},"
    f" {_FROM_DOC.format(doc=_DOC, key='mono_ns', kind='integer')},"
    f" {_FROM_DOC.format(doc=_DOC, key='boot_id', kind='text')}"
    " FROM outbox WHERE rowid=?")


def has_row_clocks(db: sqlite3.Connection) -> bool:
    """Whether the file's rows carry their boot clock (`mono_ns`, `boot_id`): a file of
    version 1 that the service has not opened since its upgrade does not; the offline
    readers, which must not change the file, read it as it is."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version >= 2



@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One migration step: all of it or none (BEGIN IMMEDIATE, COMMIT or ROLLBACK)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise

def prepare(db: sqlite3.Connection, path: Path, *, reserve_bytes: int) -> None:
    """Set a fresh writing connection to the store's pragmas and make sure of its tables
    and schema version, migrating a file of an older version; `path`: the database file
    (for messages), `reserve_bytes`: the size of the ballast file kept for alarms (0: none).

    Raises StoreError for a file this alarmgw must not write to; lets sqlite3.Error
    through for the caller to say the store is unusable (or, SQLITE_FULL while migrating,
    to make room and try again: the file is then as it was).
    """
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    problem = version_problem(path, version)
    if problem is not None:
        raise StoreError(problem)
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
    if version == SCHEMA_VERSION:
        return
    if version in (2, 3):
        _add_tables(db, path, version)
        return
    # Version 0 is a new file, or one whose first open stopped before it was stamped: its
    # outbox, if it has one, tells which layout it is.
    if not _outbox_is_v1(db):
        db.executescript(";\n".join(_TABLES))
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return
    with _immediate(db):
        _migrate_v1(db, path)
        for ddl in _TABLES:
            db.execute(ddl)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    # The migration's WAL is as large as the rows it moved: put it into the database and
    # give its space back to the filesystem, once.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    log.info("store %s: migrated to schema version %d", path, SCHEMA_VERSION)


def version_problem(path: Path, version: int) -> str | None:
    """Why this alarmgw must not open a store file of schema `version`, or None: a newer
    alarmgw wrote it (a downgrade past a schema change), and its rows would be misread."""
    if 0 <= version <= SCHEMA_VERSION:
        return None
    return (f"store {path} has schema version {version}, written by a newer alarmgw; this"
            f" alarmgw ({__version__}) knows schema version {SCHEMA_VERSION} and does not open"
            " a newer file (the events waiting in it would be misread): install the newer"
            " alarmgw again, or move the file away once `alarmgw queue` (of the newer"
            " version) shows nothing waiting")


def file_version(path: Path) -> int | None:
    """The schema version of the store file at `path`, read without writing to it; None
    when there is no such file or it cannot be read."""
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return version


def needs_migration(db: sqlite3.Connection) -> bool:
    """Whether `prepare` has a version 1 outbox to migrate in this file."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version in (0, 1) and _outbox_is_v1(db)


def _outbox_is_v1(db: sqlite3.Connection) -> bool:
    columns = [r[1] for r in db.execute("PRAGMA table_info(outbox)")]
    return bool(columns) and columns[-1] != "payload"


def _add_tables(db: sqlite3.Connection, path: Path, version: int) -> None:
    """Bring a version 2 or 3 file to 4: the tables the later versions added are created,
    nothing is rewritten."""
    with _immediate(db):
        for ddl in (*_V3_TABLES, *_V4_TABLES):
            db.execute(ddl)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    log.info("store %s: migrated from schema version %d to %d (tables added: %s)", path,
             version, SCHEMA_VERSION, "inspections, path queue" if version == 2 else "path queue")


def _migrate_v1(db: sqlite3.Connection, path: Path) -> None:
    """Rebuild a version 1 outbox as version 2 (inside the caller's transaction).

    Row by row, each moved and then deleted: the pages a picture frees are on the
    freelist for the next one, so the file does not grow by a second copy of the
    pictures (a table copied whole, then dropped, would leave the file twice its size for
    good). The WAL still holds every row moved until the checkpoint after the commit.
    """
    log.info("store %s: migrating from schema version 1 to %d: every row is rewritten once,"
             " in one transaction", path, SCHEMA_VERSION)
    db.execute(_OUTBOX.format(name="outbox_v2"))
    rowids = [r[0] for r in db.execute("SELECT rowid FROM outbox ORDER BY rowid")]
    for rowid in rowids:
        db.execute(_MOVE_V1_ROW, (rowid,))
        db.execute("DELETE FROM outbox WHERE rowid=?", (rowid,))
    db.execute("DROP TABLE outbox")  # and its indexes
    db.execute("ALTER TABLE outbox_v2 RENAME TO outbox")

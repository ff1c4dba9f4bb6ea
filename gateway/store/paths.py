"""The second paths' queues: which events a path other than MQTT must still deliver.

An event that a second path carries (the DC-09 path to a receiving centre) gets a row in
`path_queue` in the transaction that commits it to the outbox, so that the event is on
disk for that path exactly when it is for MQTT, and each path delivers it on its own: MQTT
moves the outbox row through its states, the path deletes its queue row when its receiver
acknowledged it. The outbox row itself (the event's document) is kept from pruning and
eviction while any path still has it queued: an event leaves the disk only when every path
that must carry it has it.

A queue row carries the path's own sequence number for the event (`wire_seq`, DC-09's
0001-8999), given in the transaction that queues it and kept across restarts: a receiver
that got the message but whose ACK was lost sees the retry under the same number and
de-duplicates it. Nothing else of a path's delivery is on disk: which row is in flight is
the path thread's memory (at a restart everything not acknowledged is sent again), so a
take is a read, a send costs no write, and an ACK one delete (gateway.store.schema,
version 4).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

#: Outbox rows a path still needs: kept out of pruning and eviction (a subquery).
QUEUED_ROWS = "SELECT outbox_row FROM path_queue"
#: The highest wire sequence number of events; numbering wraps to 1 after it. DC-09 has
#: 4 digits: 9000-9999 are the path's messages that are not events (supervision, tests),
#: numbered in memory, so that a receiver de-duplicating by sequence never takes a poll
#: for a repeated alarm.
MAX_WIRE_SEQ = 8999


@dataclass(frozen=True)
class PathRow:
    """One event a path has still to deliver."""

    rowid: int
    """The queue row's id (what `delete` takes)."""
    seq: int | None
    """The event's seq (the platform's numbering), for log lines."""
    event_id: str
    payload: bytes
    """The event's document, as MQTT publishes it."""
    wire_seq: int
    """The path's sequence number for this event."""


@dataclass(frozen=True)
class PathQueueStats:
    """A path's queue at one moment."""

    waiting: int
    oldest_event_id: str | None
    oldest_created_at: str | None
    oldest_mono_ns: int | None
    oldest_boot_id: str | None


def enqueue(db: sqlite3.Connection, path: str, outbox_row: int) -> None:
    """Queue the event at `outbox_row` for `path`, with its wire sequence number, inside
    the caller's transaction (the one that commits the event)."""
    db.execute("INSERT OR IGNORE INTO path_queue (path, outbox_row, wire_seq) VALUES (?, ?, ?)",
               (path, outbox_row, _allocate_wire_seq(db, path)))


def next_rows(db: sqlite3.Connection, path: str, limit: int, skip: set[int]) -> list[PathRow]:
    """The next rows `path` is to send, alarms first, then in commit order; rows in `skip`
    (in flight, or delivered with the deletion still to be written) are passed over. A
    read: the wire numbers were given when the rows were queued."""
    rows = db.execute(
        "SELECT q.rowid, o.seq, o.event_id, o.payload, q.wire_seq FROM path_queue q"
        " JOIN outbox o ON o.rowid = q.outbox_row WHERE q.path = ?"
        " ORDER BY o.lane, q.outbox_row LIMIT ?", (path, limit + len(skip))).fetchall()
    return [PathRow(rowid=r[0], seq=r[1], event_id=r[2], payload=bytes(r[3]), wire_seq=r[4])
            for r in rows if r[0] not in skip][:limit]


def _allocate_wire_seq(db: sqlite3.Connection, path: str) -> int:
    """The next wire number of `path` (1 after MAX_WIRE_SEQ), the last one given kept in
    `meta` (Debian 12's SQLite 3.40 has RETURNING)."""
    wire: int = db.execute(
        "INSERT INTO meta (key, value) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET"
        " value = value % ? + 1 RETURNING value", (f"{path}_last_wire_seq", MAX_WIRE_SEQ)
    ).fetchone()[0]
    return wire


def delete(db: sqlite3.Connection, rowids: list[int]) -> None:
    db.executemany("DELETE FROM path_queue WHERE rowid=?", [(r,) for r in rowids])


def stats(db: sqlite3.Connection, path: str) -> PathQueueStats:
    n: int = db.execute("SELECT COUNT(*) FROM path_queue WHERE path=?", (path,)).fetchone()[0]
    oldest = db.execute(
        "SELECT o.event_id, o.created_at, o.mono_ns, o.boot_id FROM path_queue q JOIN outbox o"
        " ON o.rowid = q.outbox_row WHERE q.path=? ORDER BY q.outbox_row LIMIT 1",
        (path,)).fetchone()
    if oldest is None:
        return PathQueueStats(n, None, None, None, None)
    return PathQueueStats(n, oldest[0], oldest[1], oldest[2], oldest[3])


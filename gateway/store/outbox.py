"""The durable outbox: every event waits here, on disk, until the broker has it.

SQLite in WAL mode. A row is committed with `synchronous=FULL` (fsync of
the WAL) before anything else happens to it: that commit is the moment the
gateway has "detected" the event. Rows then move through explicit states:

    READY --(published)--> IN_FLIGHT --(PUBACK)--> ACKED --(pruned)--> gone
      ^                        |
      +---(service start, or broker refused the message)

On open, IN_FLIGHT rows go back to READY: the process that sent them died
before their PUBACK arrived, so they are sent again (the platform
de-duplicates by event id). State changes after the first commit use
`synchronous=NORMAL`: losing one on power loss means a duplicate delivery,
never a lost event, and it spares the SD card an fsync per message.

Rows sit in priority lanes. The uplink always takes the lowest lane first,
so a new alarm overtakes any backlog. A byte budget bounds the store:
acknowledged history goes first, then the oldest bulk rows (snapshots,
telemetry); alarm and event rows are never evicted or refused.

The per-gateway event `seq` is allocated inside the same transaction that
inserts the event, so the sequence is gapless across crashes.

A full filesystem (an SD card partition filled by logs, or by a budget larger
than the disk) must never refuse an alarm nor stop its delivery. Three things
keep it so. A ballast file of `reserve_bytes` beside the store is released the
moment an event cannot be committed, and snapshots are refused until it can be
put back. While the disk is full every write transaction is followed by a
checkpoint, so the WAL is rewritten from its start instead of growing. And
the uplink's state changes (in flight, delivered, requeued) that still find
no room are kept in memory, over the rows on disk: delivery goes on, and a
restart before they reach the disk only means a duplicate. Deleted rows are
not zeroed (`secure_delete=FAST`, where Debian's SQLite defaults to ON): a
zeroed picture costs its size again in WAL and SD writes, which a full disk
does not have.

Why this is one class of several hundred lines: all of the above is one set of
invariants kept through one connection under one lock. The byte count, the count of
delivered rows, the reserve file, the full-disk state and the overlay of state changes
held in memory are read and changed by the engine's commits, the uplink's moves, the
budget's evictions and the pruning alike, and must change with the transactions that
change the rows they count. Spread over modules, every part would need the lock and the
counters of every other; kept together, each use of the connection can be seen to hold
the lock. What does not need the connection lives apart: the plain data
(gateway.store.records), the file format (gateway.store.schema) and the read-only
reports it shares with the offline readers (gateway.store.reports).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.clock import mono_ns, read_boot_id
from gateway.errors import StoreError, StoreFullError
from gateway.store import inspections
from gateway.store import paths as path_queue
from gateway.store.paths import QUEUED_ROWS, PathQueueStats, PathRow
from gateway.store.records import EventDraft, Lane, QueueStats, Row, State, StoreWrite
from gateway.store.reports import drill_records, queue_stats, waiting_rows
from gateway.store.schema import SYNCHRONOUS_AT_OPEN, needs_migration, prepare

log = logging.getLogger(__name__)

PRUNE_BATCH = 64
#: Every this many rows held in memory on a full disk, say so again in the log.
OVERLAY_WARN = 1000
#: Delivered alarms without an acknowledgement kept from pruning (the newest ones).
PROTECT_UNANSWERED = 256
#: What the budget evicts, in order, oldest first: delivered rows, then waiting bulk rows.
_EVICTION_ORDER = (
    (State.ACKED, f"SELECT rowid, size FROM outbox WHERE state={State.ACKED:d}"
                  f" AND rowid NOT IN ({QUEUED_ROWS}) ORDER BY rowid"),
    (State.READY, f"SELECT rowid, size FROM outbox WHERE state={State.READY:d}"
                  f" AND lane={Lane.BULK:d} ORDER BY rowid"),
)
#: The rowids of those alarms (one parameter: PROTECT_UNANSWERED).
_UNANSWERED = ("SELECT rowid FROM outbox WHERE state=2 AND event_type='alarm' AND event_id"
               " NOT IN (SELECT event_id FROM acks) ORDER BY rowid DESC LIMIT ?")


def _utc_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Outbox:
    """The on-disk queue between the engine (which commits) and the uplink (which drains).

    Thread-safe: one connection behind a lock; each method is one transaction.
    """

    def __init__(self, path: Path, *, max_bytes: int = 256 * 1024 * 1024,
                 keep_acked: int = 1000, reserve_bytes: int = 0,
                 boot_id: str | None = None,
                 paths: dict[str, frozenset[str]] | None = None) -> None:
        """`path`: the database file; `max_bytes`: byte budget of rows, in bytes;
        `keep_acked`: how many delivered rows to keep for inspection; `reserve_bytes`:
        size of the ballast file kept beside the store so that an alarm can still be
        committed on a full filesystem, in bytes (0: none); `boot_id`: the boot that rows
        committed now belong to (default: the kernel's), recorded with their CLOCK_BOOTTIME
        so that their age can be told within a boot whatever the wall clock did; `paths`:
        the event types each second path carries (gateway.store.paths), queued for it in
        the transaction that commits them."""
        self.path = Path(path)
        self.boot_id = boot_id if boot_id is not None else read_boot_id()
        self.max_bytes = max_bytes
        self.keep_acked = keep_acked
        self.reserve_bytes = reserve_bytes
        self.reserve_path = self.path.with_name(self.path.name + ".reserve")
        self.paths = dict(paths or {})
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._sync = ""
        self._bytes = 0
        self._acked = 0
        self.evicted_total = 0
        self.refused_total = 0
        self.requeued_at_open = 0
        #: Why the filesystem is in trouble (None: it is not): set when a write found no
        #: room or the reserve could not be kept, cleared by `recover_disk()`.
        self.disk_trouble: str | None = None
        #: State changes of the uplink that found no room on disk: rowid -> state.
        self._overlay: dict[int, State] = {}
        #: Called (it must not block) when the filesystem is first found full.
        self.on_trouble: Callable[[], None] | None = None

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> None:
        """Open (creating if needed) and put rows left in flight back to ready."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}; check that the state"
                             " directory exists and is writable by the service user") from exc
        try:
            self._prepare(db)
            self._sync = SYNCHRONOUS_AT_OPEN
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute("UPDATE outbox SET state=? WHERE state=?",
                             (State.READY, State.IN_FLIGHT))
            self.requeued_at_open = cur.rowcount
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1)")
            db.execute("COMMIT")
            self._bytes = db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
            self._acked = db.execute("SELECT COUNT(*) FROM outbox WHERE state=?",
                                     (State.ACKED,)).fetchone()[0]
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"store {self.path} is unusable: {exc}; if the file is corrupt,"
                             " stop the service and move it aside (events in it are lost)") from exc
        except StoreError:
            db.close()
            raise
        self._db = db
        if not self._ensure_reserve():
            self._no_room(f"the {self.reserve_bytes}-byte reserve for alarms")
        if self.requeued_at_open:
            log.info("store %s: %d rows were in flight when the service stopped; sending them"
                     " again", self.path, self.requeued_at_open)

    def _prepare(self, db: sqlite3.Connection) -> None:
        """The file format's checks and any migration (gateway.store.schema). A migration
        that finds no room on the filesystem leaves the file as it was; then what a full
        disk lets go anyway (the reserve, waiting snapshots, delivered history but the
        alarms still unanswered) goes before a second try: an alarmgw that cannot start
        delivers no alarm."""
        try:
            prepare(db, self.path, reserve_bytes=self.reserve_bytes)
            return
        except sqlite3.OperationalError as exc:
            if not (_is_full(exc) and needs_migration(db)):
                raise
            self._no_room("migrating the store to this alarmgw's file format", exc)
        log.error("store %s: no room on the disk to migrate the store; releasing the reserve"
                  " and dropping waiting snapshots and delivered history to make room",
                  self.path)
        self._release_reserve()
        db.execute("BEGIN IMMEDIATE")
        try:
            evicted = db.execute("DELETE FROM outbox WHERE lane=? AND state=?",
                                 (Lane.BULK, State.READY)).rowcount
            # (A file still to migrate has no second path's queue to spare.)
            db.execute(f"DELETE FROM outbox WHERE state=? AND rowid NOT IN ({_UNANSWERED})",
                       (State.ACKED, PROTECT_UNANSWERED))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.evicted_total += evicted
        try:
            prepare(db, self.path, reserve_bytes=self.reserve_bytes)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            raise StoreError(f"store {self.path}: no room on the filesystem of"
                             f" {self.path.parent} to migrate the store, even without its"
                             " snapshots: free space there (the store's alarms and events are"
                             " kept as they were)") from exc

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Outbox:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _open_db(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock (all use of it is serialised)."""
        with self._lock:
            db = self._db
            if db is None:
                raise StoreError(f"store {self.path} is not open")
            yield db

    @contextmanager
    def _txn(self, synchronous: str) -> Iterator[sqlite3.Connection]:
        with self._open_db() as db:
            if self._sync != synchronous:
                db.execute(f"PRAGMA synchronous={synchronous}")
                self._sync = synchronous
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._after_write(db)

    def _after_write(self, db: sqlite3.Connection) -> None:
        """While the disk is full, checkpoint after every write: the next one then
        rewrites the WAL from its start instead of appending to a file with no room."""
        if self.disk_trouble is None:
            return
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.debug("store %s: checkpoint on a full disk failed: %s", self.path, exc)

    def _no_room(self, what: str, exc: BaseException | None = None) -> None:
        """Note that the filesystem had no room for `what` (the disk watch reports it)."""
        if self.disk_trouble is None:
            detail = f" ({exc})" if exc is not None else ""
            self.disk_trouble = (f"no room on the filesystem of {self.path.parent} for"
                                 f" {what}{detail}")
            log.error("store %s: the filesystem is full: %s", self.path, self.disk_trouble)
            hook = self.on_trouble
            if hook is not None:
                hook()

    # -- the engine's side -------------------------------------------------

    def commit_event(self, lane: Lane, make: Callable[[int], EventDraft],
                     properties: dict[str, Any] | None = None, *,
                     fault_open: dict[str, Any] | None = None,
                     fault_closed: str | None = None,
                     writes: Sequence[StoreWrite] = ()) -> tuple[int, EventDraft]:
        """Allocate the next seq, build the event with it and commit it durably.

        `fault_open` (a fault's record, with "device") / `fault_closed` (a device id)
        update the open faults in the same transaction, so that a fault open when the
        process dies is known at the next start and gets its fault_cleared. `writes`
        (inspection records) go in the same transaction too: an inspection's window is
        on disk exactly when its `inspection_started` is.

        Returns (seq, draft) once the row is fsynced. Alarm and event lanes are
        never refused: if the budget is exceeded, bulk rows are evicted first and
        the row is stored regardless.
        """
        if lane == Lane.BULK:
            raise ValueError("events go in the alarm or event lane")
        for attempt in (1, 2):
            try:
                with self._txn("FULL") as db:
                    seq = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]
                    draft = make(seq)
                    size = len(draft.payload)
                    self._make_room(db, size, lane)
                    cur = db.execute(
                        "INSERT INTO outbox (lane, seq, event_id, event_type, topic, payload,"
                        " properties, size, created_at, mono_ns, boot_id)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (int(lane), seq, draft.event_id, draft.event_type, draft.topic,
                         draft.payload, _props(properties), size, _utc_now(), mono_ns(),
                         self.boot_id))
                    db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (seq + 1,))
                    for path, types in self.paths.items():
                        if draft.event_type in types:
                            assert cur.lastrowid is not None
                            path_queue.enqueue(db, path, cur.lastrowid)
                    if fault_open is not None:
                        db.execute("INSERT OR REPLACE INTO open_faults (device, record)"
                                   " VALUES (?, ?)", (fault_open["device"],
                                                      json.dumps(fault_open, ensure_ascii=False)))
                    if fault_closed is not None:
                        db.execute("DELETE FROM open_faults WHERE device=?", (fault_closed,))
                    for write in writes:
                        inspections.apply(db, write)
                self._bytes += size
                return seq, draft
            except sqlite3.OperationalError as exc:
                if _is_full(exc):
                    self._no_room("an event", exc)
                    if attempt == 1:
                        log.error("store %s: disk full while committing an event; releasing"
                                  " the reserve, evicting bulk rows and retrying", self.path)
                        self._release_reserve()
                        self._evict_for_disk()
                        continue
                raise StoreError(f"store {self.path}: cannot commit event: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: cannot commit event: {exc}") from exc
        raise AssertionError("unreachable")

    def put_bulk(self, topic: str, payload: bytes,
                 properties: dict[str, Any] | None = None) -> int:
        """Store a bulk row (snapshot, telemetry); evicts older bulk rows to fit the budget.

        Raises StoreFullError when even after evicting it does not fit.
        """
        size = len(payload)
        if not self._ensure_reserve():
            # The room kept for alarms comes back before any snapshot takes space.
            self._no_room(f"the {self.reserve_bytes}-byte reserve for alarms")
            self.refused_total += 1
            raise StoreFullError(Lane.BULK.name.lower(), size, self.max_bytes,
                                 reason="the disk is full (no room for the alarms' reserve)")
        try:
            with self._txn("NORMAL") as db:
                self._make_room(db, size, Lane.BULK)
                if self._bytes + size > self.max_bytes:
                    self.refused_total += 1
                    raise StoreFullError(Lane.BULK.name.lower(), size, self.max_bytes)
                cur = db.execute(
                    "INSERT INTO outbox (lane, topic, payload, properties, size, created_at,"
                    " mono_ns, boot_id) VALUES (?,?,?,?,?,?,?,?)",
                    (int(Lane.BULK), topic, payload, _props(properties), size, _utc_now(),
                     mono_ns(), self.boot_id))
                rowid = cur.lastrowid
        except sqlite3.Error as exc:
            if _is_full(exc):
                self._no_room("a snapshot", exc)
                self.refused_total += 1
                raise StoreFullError(Lane.BULK.name.lower(), size, self.max_bytes,
                                     reason="the disk is full") from exc
            raise StoreError(f"store {self.path}: cannot store bulk row: {exc}") from exc
        self._bytes += size
        assert rowid is not None
        return rowid

    def put_message(self, lane: Lane, topic: str, payload: bytes,
                    properties: dict[str, Any] | None = None) -> int:
        """Store a message that is not an event (a command result) in `lane`; no seq."""
        size = len(payload)
        try:
            with self._txn("NORMAL") as db:
                self._make_room(db, size, lane)
                cur = db.execute(
                    "INSERT INTO outbox (lane, topic, payload, properties, size, created_at,"
                    " mono_ns, boot_id) VALUES (?,?,?,?,?,?,?,?)",
                    (int(lane), topic, payload, _props(properties), size, _utc_now(),
                     mono_ns(), self.boot_id))
                rowid = cur.lastrowid
        except sqlite3.Error as exc:
            if _is_full(exc):
                self._no_room("a message", exc)
            raise StoreError(f"store {self.path}: cannot store message: {exc}") from exc
        self._bytes += size
        assert rowid is not None
        return rowid

    def find_event(self, event_id: str) -> dict[str, Any] | None:
        """The stored event document with this id (waiting or recently delivered)."""
        with self._open_db() as db:
            row = db.execute("SELECT payload FROM outbox WHERE event_id=?",
                             (event_id,)).fetchone()
        if row is None:
            return None
        doc: dict[str, Any] = json.loads(bytes(row[0]))
        return doc

    def record_ack(self, event_id: str, command_id: str, operator: str, note: str | None,
                   issued_at: str) -> str:
        """Record who acknowledged an event and when; returns the time recorded."""
        now = _utc_now()
        try:
            with self._txn("FULL") as db:
                db.execute("INSERT INTO acks (event_id, command_id, operator, note, issued_at,"
                           " received_at) VALUES (?,?,?,?,?,?)",
                           (event_id, command_id, operator, note, issued_at, now))
        except sqlite3.Error as exc:
            if _is_full(exc):
                self._no_room("an acknowledgement", exc)
            raise StoreError(f"store {self.path}: cannot record the acknowledgement: {exc}"
                             ) from exc
        return now

    def remember_command(self, command_id: str, keep: int) -> None:
        """Record a platform command's id against replays (a restart must not forget it:
        with the clock unsynced, the id is all that stops an old command). Fsynced: one
        per command, and commands are rare. Keeps the last `keep` ids."""
        try:
            with self._txn("FULL") as db:
                cur = db.execute("INSERT OR IGNORE INTO commands_seen (command_id, received_at)"
                                 " VALUES (?, ?)", (command_id, _utc_now()))
                if cur.lastrowid is not None and cur.lastrowid % PRUNE_BATCH == 0:
                    db.execute("DELETE FROM commands_seen WHERE rowid <= ?",
                               (cur.lastrowid - keep,))
        except sqlite3.Error as exc:
            if _is_full(exc):
                self._no_room("a command id", exc)
            raise StoreError(f"store {self.path}: cannot record command id {command_id!r}:"
                             f" {exc}") from exc

    def recent_commands(self, limit: int) -> list[str]:
        """The last `limit` command ids received, oldest first."""
        with self._open_db() as db:
            rows = db.execute("SELECT command_id FROM commands_seen ORDER BY rowid DESC"
                              " LIMIT ?", (limit,)).fetchall()
        return [r[0] for r in reversed(rows)]

    def unanswered_events(self, types: frozenset[str], finished: frozenset[str]
                          ) -> list[tuple[dict[str, Any], bool]]:
        """Events of `types` still in the store that the platform has not acknowledged and
        whose escalation did not reach one of the `finished` steps, oldest first, each
        with whether the broker has it (its PUBACK recorded). Read once at start, to
        watch them again."""
        with self._open_db() as db:
            marks = ",".join("?" * len(types))
            rows = db.execute(f"SELECT rowid, event_id, state, payload FROM outbox WHERE"
                              f" event_type IN ({marks}) ORDER BY rowid",
                              tuple(types)).fetchall()
            if not rows:
                return []
            acked = {r[0] for r in db.execute("SELECT DISTINCT event_id FROM acks")}
            escalated = set()
            for (payload,) in db.execute("SELECT payload FROM outbox WHERE"
                                         " event_type='escalation'"):
                try:
                    detail = json.loads(bytes(payload))["detail"]
                    if detail["step"] in finished:
                        escalated.add(detail["for_event"])
                except (ValueError, KeyError, TypeError):
                    continue
            overlay = dict(self._overlay)
        out = []
        for rowid, event_id, state, payload in rows:
            if event_id in acked or event_id in escalated:
                continue
            try:
                doc = json.loads(bytes(payload))
            except ValueError:
                continue
            out.append((doc, overlay.get(rowid, state) == State.ACKED))
        return out

    def delivered(self, event_ids: list[str]) -> set[str]:
        """Which of these events the broker has (PUBACK recorded, or pruned since)."""
        if not event_ids:
            return set()
        with self._open_db() as db:
            marks = ",".join("?" * len(event_ids))
            rows = db.execute(f"SELECT rowid, event_id, state FROM outbox WHERE event_id IN"
                              f" ({marks})", tuple(event_ids)).fetchall()
            overlay = dict(self._overlay)
        waiting = {event_id for rowid, event_id, state in rows
                   if overlay.get(rowid, state) != State.ACKED}
        return set(event_ids) - waiting

    def acks_for(self, event_id: str) -> list[dict[str, Any]]:
        with self._open_db() as db:
            rows = db.execute("SELECT command_id, operator, note, issued_at, received_at FROM"
                              " acks WHERE event_id=? ORDER BY rowid", (event_id,)).fetchall()
        return [{"command_id": r[0], "operator": r[1], "note": r[2], "issued_at": r[3],
                 "received_at": r[4]} for r in rows]

    def drill_step(self, event_id: str, step: str, at: str, mono: int, *,
                   create: dict[str, Any] | None = None) -> None:
        """Record one step of a drill's timeline (rare: one write per step of a drill).

        `create` (seq, point, requested_by, boot_id) makes the record; later steps
        of an unknown drill are ignored.
        """
        try:
            with self._txn("NORMAL") as db:
                if create is not None:
                    db.execute("INSERT OR IGNORE INTO drills (event_id, seq, point, requested_by,"
                               " boot_id, timeline) VALUES (?,?,?,?,?, '{}')",
                               (event_id, create.get("seq"), create["point"],
                                create.get("requested_by"), create["boot_id"]))
                row = db.execute("SELECT timeline FROM drills WHERE event_id=?",
                                 (event_id,)).fetchone()
                if row is None:
                    return
                timeline = json.loads(row[0])
                if step in timeline:
                    return  # first occurrence wins (a re-send is not a new step)
                timeline[step] = {"at": at, "mono_ns": mono}
                db.execute("UPDATE drills SET timeline=? WHERE event_id=?",
                           (json.dumps(timeline), event_id))
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: cannot record drill step {step}: {exc}"
                             ) from exc

    def drill_snapshot(self, event_id: str, at: str, mono: int) -> None:
        """Count one more of a drill's snapshots delivered (PUBACK), keeping the last time."""
        try:
            with self._txn("NORMAL") as db:
                row = db.execute("SELECT timeline FROM drills WHERE event_id=?",
                                 (event_id,)).fetchone()
                if row is None:
                    return
                timeline = json.loads(row[0])
                count = int(timeline.get("snapshots", {}).get("count", 0)) + 1
                timeline["snapshots"] = {"at": at, "mono_ns": mono, "count": count}
                db.execute("UPDATE drills SET timeline=? WHERE event_id=?",
                           (json.dumps(timeline), event_id))
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: cannot record a drill snapshot: {exc}"
                             ) from exc

    def write(self, *writes: StoreWrite) -> None:
        """Write inspection records (a press, a delivery, a resumed window) in one
        transaction, fsynced: each keeps a promise across a restart."""
        try:
            with self._txn("FULL") as db:
                for write in writes:
                    inspections.apply(db, write)
        except sqlite3.Error as exc:
            if _is_full(exc):
                self._no_room("an inspection record", exc)
            raise StoreError(f"store {self.path}: cannot write an inspection record:"
                             f" {exc}") from exc

    def inspection_windows(self, *, open_only: bool = False, limit: int = 20
                           ) -> list[dict[str, Any]]:
        """Inspection windows, the latest first (only the running ones, with `open_only`)."""
        with self._open_db() as db:
            return inspections.windows(db, open_only=open_only, limit=limit)

    def proven_records(self) -> dict[str, dict[str, Any]]:
        """Point id -> the last time it was proven working (or since when it is unproven)."""
        with self._open_db() as db:
            return inspections.proven(db)

    def notices_sent(self) -> dict[str, str]:
        """Point id -> what the untested notice last sent for it was about."""
        with self._open_db() as db:
            return inspections.notices(db)

    def open_faults(self) -> list[dict[str, Any]]:
        """Faults whose fault event was committed and whose fault_cleared was not."""
        with self._open_db() as db:
            rows = db.execute("SELECT record FROM open_faults ORDER BY rowid").fetchall()
        return [json.loads(r[0]) for r in rows]

    def drills(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._open_db() as db:
            return drill_records(db, limit)

    def _make_room(self, db: sqlite3.Connection, size: int, lane: Lane) -> None:
        """Evict delivered rows, then the oldest waiting bulk rows, until `size` fits."""
        need = self._bytes + size - self.max_bytes
        if need <= 0:
            return
        for state, query in _EVICTION_ORDER:
            # From the index by state (which carries `size`), oldest first, and only as far
            # as needed: an alarm on a full store reads no row but those it evicts.
            victims: list[int] = []
            freed = 0
            cur = db.execute(query)
            try:
                for rowid, rsize in cur:
                    victims.append(rowid)
                    freed += rsize
                    if freed >= need:
                        break
            finally:
                cur.close()
            if victims:
                db.executemany("DELETE FROM outbox WHERE rowid=?", [(r,) for r in victims])
                self._bytes -= freed
                need -= freed
                if state == State.ACKED:
                    self._acked -= len(victims)
                else:
                    self.evicted_total += len(victims)
                    log.warning("store budget of %d bytes reached: evicted %d waiting bulk rows"
                                " (%d bytes) to keep a %s row", self.max_bytes, len(victims),
                                freed, lane.name.lower())
            if need <= 0:
                return
        if lane != Lane.BULK:
            log.warning("store budget of %d bytes exceeded by %d bytes of alarm/event rows;"
                        " they are kept regardless", self.max_bytes, need)

    def _ensure_reserve(self) -> bool:
        """Make sure the ballast file exists; True if it does (or none is wanted).

        Written once and fsynced (not on a timer): it only changes when a full disk made
        us delete it, and it is put back before any snapshot may use the space again.
        """
        if self.reserve_bytes <= 0:
            return True
        try:
            if self.reserve_path.stat().st_size >= self.reserve_bytes:
                return True
        except FileNotFoundError:
            pass
        try:
            with open(self.reserve_path, "wb") as f:
                f.write(b"\0" * self.reserve_bytes)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            try:
                self.reserve_path.unlink()
            except OSError:
                pass
            log.warning("store %s: no room for the %d-byte reserve for alarms (%s):"
                        " snapshots wait until the disk has room again", self.path,
                        self.reserve_bytes, exc.strerror)
            return False
        return True

    def _release_reserve(self) -> None:
        try:
            self.reserve_path.unlink()
            log.error("store %s: the disk is full; released the %d-byte reserve so the alarm"
                      " can be committed; free space on %s (journal, logs)", self.path,
                      self.reserve_bytes, self.path.parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("store %s: cannot release the reserve: %s", self.path, exc)

    def _evict_for_disk(self) -> None:
        """Make room inside the database on a full disk: move the WAL into the database
        (the released reserve leaves room for it), then drop delivered rows and waiting
        bulk rows, then checkpoint again so the next write reuses the WAL from its start."""
        with self._lock:
            db = self._db
            if db is None:
                return
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                evicted = db.execute("DELETE FROM outbox WHERE lane=? AND state=?",
                                     (Lane.BULK, State.READY)).rowcount
                db.execute(f"DELETE FROM outbox WHERE state=? AND rowid NOT IN ({_UNANSWERED})"
                       f" AND rowid NOT IN ({QUEUED_ROWS})",
                           (State.ACKED, PROTECT_UNANSWERED))
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.error("store %s: could not free space: %s", self.path, exc)
                return
            finally:
                self._bytes = db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox"
                                         ).fetchone()[0]
                self._acked = db.execute("SELECT COUNT(*) FROM outbox WHERE state=?",
                                         (State.ACKED,)).fetchone()[0]
            if evicted > 0:
                self.evicted_total += evicted
                log.error("store %s: the disk is full: evicted %d waiting snapshot rows",
                          self.path, evicted)

    # -- the uplink's side -------------------------------------------------

    _ROW_COLUMNS = ("rowid, lane, topic, payload, properties, seq, event_id, event_type,"
                    " created_at, attempts, state")

    def take(self, limit: int, max_lane: Lane = Lane.BULK) -> list[Row]:
        """Move up to `limit` ready rows, lowest lane first, to IN_FLIGHT and return them.

        If the disk has no room to record that, the rows are returned all the same and
        their new state is kept in memory (see the module's notes on a full disk).
        """
        if limit <= 0:
            return []
        try:
            with self._open_db() as db:
                # All writes go through this connection under this lock, so the rows
                # read here are still ready when they are marked: no write transaction
                # (and no WAL frame) for a look that finds nothing.
                found = self._ready_rows(db, limit, max_lane)
                if found:
                    self._write_states(db, [(r[0], State.IN_FLIGHT, r[10]) for r in found],
                                       attempts=True)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: cannot take rows: {exc}") from exc
        return [Row(rowid=r[0], lane=Lane(r[1]), topic=r[2], payload=bytes(r[3]),
                    properties=json.loads(r[4]) if r[4] else None, seq=r[5], event_id=r[6],
                    event_type=r[7], created_at=r[8], attempts=r[9] + 1) for r in found]

    def _ready_rows(self, db: sqlite3.Connection, limit: int, max_lane: Lane) -> list[Any]:
        """Rows that are READY as far as this process knows: on disk, corrected by the
        overlay of state changes that found no room."""
        overlay = self._overlay
        rows = db.execute(
            f"SELECT {self._ROW_COLUMNS} FROM outbox WHERE state=? AND lane<=?"
            " ORDER BY lane, rowid LIMIT ?",
            (State.READY, int(max_lane), limit + len(overlay))).fetchall()
        if not overlay:
            return rows
        rows = [r for r in rows if overlay.get(r[0], State.READY) == State.READY]
        back = [rowid for rowid, state in overlay.items() if state == State.READY]
        if back:
            marks = ",".join("?" * len(back))
            rows += db.execute(
                f"SELECT {self._ROW_COLUMNS} FROM outbox WHERE rowid IN ({marks})"
                " AND state!=? AND lane<=?", (*back, State.READY, int(max_lane))).fetchall()
            rows.sort(key=lambda r: (r[1], r[0]))
        return rows[:limit]

    def _write_states(self, db: sqlite3.Connection, changes: list[tuple[int, State, int]], *,
                      attempts: bool = False) -> int:
        """Record state changes (rowid, new state, state on disk) and any the overlay
        holds, in one transaction; on a full disk keep them all in the overlay.

        Returns how many rows changed state. Called with the lock held."""
        now = _utc_now()
        pending = dict(self._overlay)
        for rowid, state, _ in changes:
            pending[rowid] = state
        if self._sync != "NORMAL":
            db.execute("PRAGMA synchronous=NORMAL")
            self._sync = "NORMAL"
        newly_acked, pruned, freed = 0, 0, 0
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if attempts:
                    db.executemany("UPDATE outbox SET attempts=attempts+1 WHERE rowid=?",
                                   [(c[0],) for c in changes])
                for rowid, state in pending.items():
                    if state == State.ACKED:
                        cur = db.execute("UPDATE outbox SET state=?, acked_at=? WHERE rowid=?"
                                         " AND state!=?", (State.ACKED, now, rowid, State.ACKED))
                        newly_acked += cur.rowcount
                    else:
                        db.execute("UPDATE outbox SET state=? WHERE rowid=?", (state, rowid))
                if newly_acked:
                    pruned, freed = self._prune(db, self._acked + newly_acked)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            self._no_room("the delivery state of rows", exc)
            for rowid, state, on_disk in changes:
                if state == on_disk:
                    self._overlay.pop(rowid, None)
                else:
                    self._overlay[rowid] = state
            if len(self._overlay) > OVERLAY_WARN and len(self._overlay) % OVERLAY_WARN == 1:
                log.error("store %s: %d rows' delivery state is held in memory for want of"
                          " disk space; a restart now sends them again", self.path,
                          len(self._overlay))
            return len(changes)
        # Counted once committed: a transaction the full disk rolled back changed nothing.
        self._acked += newly_acked - pruned
        self._bytes -= freed
        self._overlay.clear()
        self._after_write(db)
        return len(changes)

    def has_ready(self, max_lane: Lane = Lane.BULK) -> bool:
        with self._lock:
            db = self._db
            if db is None:
                return False
            return bool(self._ready_rows(db, 1, max_lane))

    def ack(self, rowids: list[int]) -> int:
        """Mark rows delivered (their PUBACK arrived) and prune old history."""
        return self._move(rowids, State.ACKED, "cannot record PUBACKs")

    def release(self, rowids: list[int]) -> None:
        """Put in-flight rows back to READY (the broker refused them, or we gave up waiting)."""
        self._move(rowids, State.READY, "cannot requeue rows")

    def _move(self, rowids: list[int], state: State, what: str) -> int:
        """Move in-flight rows (on disk, or in the overlay) to `state`."""
        if not rowids:
            return 0
        try:
            with self._open_db() as db:
                marks = ",".join("?" * len(rowids))
                on_disk = dict(db.execute(f"SELECT rowid, state FROM outbox WHERE rowid IN"
                                          f" ({marks})", rowids).fetchall())
                changes = []
                for rowid in rowids:
                    if rowid not in on_disk:  # evicted meanwhile (a snapshot, disk full)
                        self._overlay.pop(rowid, None)
                        continue
                    known = self._overlay.get(rowid, on_disk[rowid])
                    if known == State.IN_FLIGHT:
                        changes.append((rowid, state, on_disk[rowid]))
                return self._write_states(db, changes) if changes else 0
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {what}: {exc}") from exc

    def _prune(self, db: sqlite3.Connection, acked: int) -> tuple[int, int]:
        """Delete the oldest delivered rows beyond `keep_acked`, in batches; `acked`: how
        many delivered rows there are. Returns (rows deleted, bytes freed).

        The last PROTECT_UNANSWERED alarms the platform has not acknowledged are kept
        whatever `keep_acked` says: a restarted gateway finds in them the alarms it must
        still watch for an acknowledgement (gateway.police.escalation)."""
        excess = acked - self.keep_acked
        # Pruned in batches: one delete per PRUNE_BATCH acks, not one per ack.
        if not (excess >= PRUNE_BATCH or (excess > 0 and self.keep_acked < PRUNE_BATCH)):
            return 0, 0
        # The state is written out so that an index of delivered rows (both carry `size`)
        # can answer without the rows themselves.
        victims = db.execute(
            f"SELECT rowid, size FROM outbox WHERE state={State.ACKED:d} AND rowid NOT IN"
            f" ({_UNANSWERED}) AND rowid NOT IN ({QUEUED_ROWS}) ORDER BY rowid LIMIT ?",
            (PROTECT_UNANSWERED, excess)).fetchall()
        db.executemany("DELETE FROM outbox WHERE rowid=?", [(r[0],) for r in victims])
        return len(victims), sum(r[1] for r in victims)

    def recover_disk(self) -> bool:
        """Try to leave the full-disk state: put the reserve back and write the overlay.

        Called when the filesystem has room again (the disk watch looks); True when the
        store is back to normal."""
        if self.disk_trouble is None:
            return True
        if not self._ensure_reserve():
            return False
        try:
            with self._lock:
                db = self._db
                if db is None:
                    return False
                if self._overlay:
                    self._write_states(db, [])
                    if self._overlay:
                        return False
        except sqlite3.Error as exc:
            log.error("store %s: cannot write the delivery state held in memory: %s",
                      self.path, exc)
            return False
        log.warning("store %s: the filesystem has room again: reserve restored, snapshots"
                    " are stored again", self.path)
        self.disk_trouble = None
        return True

    # -- a second path's side -----------------------------------------------

    def path_take(self, path: str, limit: int, skip: set[int]) -> list[PathRow]:
        """The next `limit` events `path` is to send (alarms first, then in commit order),
        passing over the queue rows in `skip`, each with the wire sequence number it was
        given when committed (gateway.store.paths). A read: no write transaction, so the
        uplink's take of the same alarm never waits for one."""
        try:
            with self._open_db() as db:
                return path_queue.next_rows(db, path, limit, skip)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: cannot read the {path} path's queue: {exc}"
                             ) from exc

    def path_done(self, path: str, rowids: list[int]) -> None:
        """`path` has delivered these queue rows: they go, and with them the last claim
        on their outbox rows (pruned with the delivered history once MQTT has them too)."""
        try:
            with self._txn("NORMAL") as db:
                path_queue.delete(db, rowids)
        except sqlite3.Error as exc:
            if _is_full(exc):
                self._no_room(f"the {path} path's deliveries", exc)
            raise StoreError(f"store {self.path}: cannot record the {path} path's deliveries:"
                             f" {exc}") from exc

    def path_stats(self, path: str) -> PathQueueStats:
        with self._open_db() as db:
            return path_queue.stats(db, path)

    def oldest_waiting_age(self, max_lane: Lane) -> float | None:
        """Seconds the oldest row of this boot in lanes up to `max_lane` has waited for
        its PUBACK (by CLOCK_BOOTTIME), or None when none waits. Read only: the path
        watch asks it every second."""
        with self._open_db() as db:
            row = db.execute(
                "SELECT mono_ns FROM outbox WHERE state IN (?, ?) AND lane <= ? AND boot_id = ?"
                " ORDER BY rowid LIMIT 1",
                (State.READY, State.IN_FLIGHT, int(max_lane), self.boot_id)).fetchone()
        if row is None or row[0] is None:
            return None
        return max(0.0, (mono_ns() - int(row[0])) / 1e9)

    # -- inspection --------------------------------------------------------

    def stats(self) -> QueueStats:
        with self._open_db() as db:
            return queue_stats(db, self.max_bytes, self.evicted_total, self.refused_total,
                               self._overlay)

    def waiting(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._open_db() as db:
            return waiting_rows(db, limit)


def _is_full(exc: BaseException) -> bool:
    """True if SQLite says the disk (or the database) is full."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or (code is None and "full" in str(exc))


def _props(properties: dict[str, Any] | None) -> str | None:
    return json.dumps(properties, ensure_ascii=False) if properties else None

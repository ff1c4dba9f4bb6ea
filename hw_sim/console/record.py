"""The console's record: one SQLite file that every ingest worker writes and every page reads.

Delivery is at least once and any worker of a shared subscription may get any message,
so every write is idempotent: an event is kept once by its `id` (`INSERT OR IGNORE`), a
picture once by gateway, event, camera, phase and shot. Every write also appends a row
to `changes`; the web server follows that table to push what changed to the pages.

Several processes open the file at once: WAL mode and a busy timeout let them take
turns. A worker commits before it acknowledges the message to the broker, so a worker
killed at any moment loses nothing: what it had not committed, the broker sends again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: How long a writer waits for another process's transaction, in milliseconds.
BUSY_TIMEOUT_MS = 15000
#: The longest text kept of a point's name or location on a card, in characters.
NAME_CHARS = 200
#: Event types shown as alarms; drills, tests and inspection reports have their own tab.
ALARM_TYPES = ("alarm", "tamper")
DRILL_TYPES = ("drill", "test", "inspection_report")
#: Types an officer acknowledges.
ACK_TYPES = ("alarm", "tamper", "drill", "test")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, gateway TEXT NOT NULL, seq INTEGER, type TEXT NOT NULL,
    for_event TEXT, doc TEXT NOT NULL, arrived REAL NOT NULL, worker TEXT);
CREATE INDEX IF NOT EXISTS events_for ON events(for_event);
CREATE INDEX IF NOT EXISTS events_arrived ON events(arrived);
CREATE TABLE IF NOT EXISTS pictures (
    n INTEGER PRIMARY KEY AUTOINCREMENT, gateway TEXT NOT NULL, event_id TEXT NOT NULL,
    camera TEXT NOT NULL, phase TEXT NOT NULL, shot INTEGER NOT NULL, failed INTEGER NOT NULL,
    info TEXT NOT NULL, jpeg BLOB, is_jpeg INTEGER NOT NULL, size INTEGER NOT NULL,
    arrived REAL NOT NULL,
    UNIQUE (gateway, event_id, camera, phase, shot, failed));
CREATE INDEX IF NOT EXISTS pictures_event ON pictures(event_id);
CREATE TABLE IF NOT EXISTS gateways (
    gateway TEXT PRIMARY KEY, status TEXT, status_at REAL, health TEXT, health_at REAL);
CREATE TABLE IF NOT EXISTS acks (
    cmd_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, gateway TEXT NOT NULL,
    operator TEXT NOT NULL, sent_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS acks_event ON acks(event_id);
CREATE TABLE IF NOT EXISTS results (cmd_id TEXT PRIMARY KEY, doc TEXT NOT NULL,
    arrived REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rejects (n INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
    reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (worker TEXT PRIMARY KEY, messages INTEGER NOT NULL,
    redelivered INTEGER NOT NULL, duplicates INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS changes (rev INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
    key TEXT NOT NULL);
"""


def is_jpeg(data: bytes) -> bool:
    """A complete JPEG: start and end markers (what the gateway checks too)."""
    return len(data) >= 4 and data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"


def _short(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= NAME_CHARS else text[:NAME_CHARS] + "…"


class Record:
    """One connection to the record file. Thread-safe (one lock per instance)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        # A platform's record, not the gateway's outbox: a power cut may cost the last
        # commits, which the broker then sends again (no PUBACK was given for them).
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Record:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes (ingest workers, the acknowledge endpoint) -----------------------------------

    def _tx(self, fn: Any) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    @staticmethod
    def _changed(db: sqlite3.Connection, kind: str, key: str) -> None:
        db.execute("INSERT INTO changes (kind, key) VALUES (?, ?)", (kind, key))

    def add_event(self, gateway: str, doc: dict[str, Any], worker: str = "") -> bool:
        """Keep an event once by its id; True if it was new."""
        etype = str(doc.get("type", ""))
        detail = doc.get("detail")
        for_event = detail.get("for_event") if isinstance(detail, dict) else None
        for_event = str(for_event) if for_event is not None else None

        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "INSERT OR IGNORE INTO events (id, gateway, seq, type, for_event, doc, arrived,"
                " worker) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (str(doc["id"]), gateway, int(doc["seq"]), etype, for_event,
                 json.dumps(doc, ensure_ascii=False), time.time(), worker))
            if cur.rowcount == 0:
                return False
            self._changed(db, "event", for_event if etype == "escalation" and for_event
                          else str(doc["id"]))
            return True

        new: bool = self._tx(write)
        return new

    def add_picture(self, gateway: str, event_id: str, camera: str, phase: str, shot: int,
                    *, jpeg: bytes | None = None, failure: dict[str, Any] | None = None,
                    user: dict[str, str] | None = None) -> bool:
        """Keep a picture (or a failed shot's record) once; True if it was new."""
        failed = failure is not None
        info = json.dumps(failure if failed else (user or {}), ensure_ascii=False)
        data = jpeg if jpeg is not None else b""
        good = is_jpeg(data)

        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "INSERT OR IGNORE INTO pictures (gateway, event_id, camera, phase, shot, failed,"
                " info, jpeg, is_jpeg, size, arrived) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (gateway, event_id, camera, phase, shot, int(failed), info,
                 data if good else None, int(good), len(data), time.time()))
            if cur.rowcount == 0:
                return False
            self._changed(db, "event", event_id)
            return True

        new: bool = self._tx(write)
        return new

    def set_status(self, gateway: str, doc: dict[str, Any]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO gateways (gateway, status, status_at) VALUES (?, ?, ?)"
                       " ON CONFLICT(gateway) DO UPDATE SET status = excluded.status,"
                       " status_at = excluded.status_at",
                       (gateway, json.dumps(doc, ensure_ascii=False), time.time()))
            self._changed(db, "gateway", gateway)

        self._tx(write)

    def set_health(self, gateway: str, doc: dict[str, Any]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO gateways (gateway, health, health_at) VALUES (?, ?, ?)"
                       " ON CONFLICT(gateway) DO UPDATE SET health = excluded.health,"
                       " health_at = excluded.health_at",
                       (gateway, json.dumps(doc, ensure_ascii=False), time.time()))
            self._changed(db, "gateway", gateway)

        self._tx(write)

    def add_ack(self, cmd_id: str, event_id: str, gateway: str, operator: str) -> None:
        """An acknowledgement about to be sent (before it is published)."""
        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO acks (cmd_id, event_id, gateway, operator, sent_at)"
                       " VALUES (?, ?, ?, ?, ?)", (cmd_id, event_id, gateway, operator,
                                                   time.time()))
            self._changed(db, "event", event_id)

        self._tx(write)

    def add_result(self, doc: dict[str, Any]) -> None:
        cmd_id = str(doc.get("id", ""))

        def write(db: sqlite3.Connection) -> None:
            cur = db.execute("INSERT OR IGNORE INTO results (cmd_id, doc, arrived)"
                             " VALUES (?, ?, ?)",
                             (cmd_id, json.dumps(doc, ensure_ascii=False), time.time()))
            if cur.rowcount == 0:
                return
            row = db.execute("SELECT event_id FROM acks WHERE cmd_id = ?", (cmd_id,)).fetchone()
            if row is not None:
                self._changed(db, "event", row[0])

        self._tx(write)

    def reject(self, topic: str, reason: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO rejects (topic, reason, at) VALUES (?, ?, ?)",
                       (topic[:300], reason[:500], time.time()))
            self._changed(db, "rejects", "")

        self._tx(write)

    def count_delivery(self, worker: str, *, redelivered: bool, duplicate: bool) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO deliveries (worker, messages, redelivered, duplicates)"
                       " VALUES (?, 1, ?, ?) ON CONFLICT(worker) DO UPDATE SET"
                       " messages = messages + 1, redelivered = redelivered + excluded.redelivered,"
                       " duplicates = duplicates + excluded.duplicates",
                       (worker, int(redelivered), int(duplicate)))

        self._tx(write)

    # -- reads (the web server) --------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def rev(self) -> int:
        rows = self._query("SELECT COALESCE(MAX(rev), 0) FROM changes")
        return int(rows[0][0])

    def changes_since(self, rev: int, limit: int = 2000) -> tuple[int, set[tuple[str, str]]]:
        """The newest rev and the (kind, key) pairs changed after `rev`."""
        rows = self._query("SELECT rev, kind, key FROM changes WHERE rev > ? ORDER BY rev"
                           " LIMIT ?", (rev, limit))
        if not rows:
            return rev, set()
        return int(rows[-1][0]), {(str(k), str(key)) for _, k, key in rows}

    def event(self, event_id: str) -> tuple[str, dict[str, Any]] | None:
        rows = self._query("SELECT gateway, doc FROM events WHERE id = ?", (event_id,))
        if not rows:
            return None
        return str(rows[0][0]), json.loads(rows[0][1])

    def event_count(self, gateway: str | None = None, etype: str | None = None) -> int:
        rows = self._query("SELECT COUNT(*) FROM events WHERE (? IS NULL OR gateway = ?)"
                           " AND (? IS NULL OR type = ?)", (gateway, gateway, etype, etype))
        return int(rows[0][0])

    def event_ids(self, gateway: str, etype: str) -> list[str]:
        return [str(r[0]) for r in self._query(
            "SELECT id FROM events WHERE gateway = ? AND type = ?", (gateway, etype))]

    def deliveries(self) -> dict[str, dict[str, int]]:
        return {str(w): {"messages": int(m), "redelivered": int(r), "duplicates": int(d)}
                for w, m, r, d in self._query(
                    "SELECT worker, messages, redelivered, duplicates FROM deliveries")}

    def rejects(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM rejects")[0][0])

    def recent_cards(self, limit: int = 500) -> list[dict[str, Any]]:
        """The newest events worth a card or a line, newest first."""
        rows = self._query("SELECT id FROM events WHERE type != 'escalation'"
                           " ORDER BY arrived DESC LIMIT ?", (limit,))
        cards = [self.card(str(r[0])) for r in rows]
        return [c for c in cards if c is not None]

    def card(self, event_id: str) -> dict[str, Any] | None:
        """What the page shows of one event: the event, its pictures, escalations, acks."""
        rows = self._query("SELECT gateway, doc, arrived, type FROM events WHERE id = ?",
                           (event_id,))
        if not rows:
            return None
        gateway, doc_text, arrived, etype = rows[0]
        doc = json.loads(doc_text)
        point = doc.get("point") if isinstance(doc.get("point"), dict) else {}
        card: dict[str, Any] = {
            "id": event_id, "gateway": gateway, "type": etype, "seq": doc.get("seq"),
            "arrived": arrived, "occurred_at": _short(doc.get("occurred_at")),
            "time_synced": doc.get("time_synced") is True,
            "point": {"id": _short(point.get("id")), "name": _short(point.get("name")),
                      "location": _short(point.get("location"))},
            "source": _short(doc.get("source")),
            "startup": doc.get("detected_at_startup") is True,
            "expected": [], "pictures": [], "escalations": [], "ack": None,
        }
        for s in doc.get("snapshots") or []:
            if isinstance(s, dict):
                card["expected"].append({"camera": _short(s.get("camera")),
                                         "name": _short(s.get("name")),
                                         "pre": s.get("pre"), "post": s.get("post")})
        for n, camera, phase, shot, failed, info, good, size in self._query(
                "SELECT n, camera, phase, shot, failed, info, is_jpeg, size FROM pictures"
                " WHERE event_id = ? AND gateway = ? ORDER BY camera, phase DESC, shot",
                (event_id, gateway)):
            meta = json.loads(info)
            pic: dict[str, Any] = {"camera": _short(camera), "phase": _short(phase),
                                   "shot": shot, "failed": bool(failed), "size": size}
            if failed:
                pic["reason"] = _short(meta.get("reason"))
                pic["error"] = _short(meta.get("error"))
            elif good:
                pic["url"] = f"/api/picture/{n}"
                pic["taken_at"] = _short(meta.get("taken_at"))
            else:
                pic["bad"] = "not_jpeg"
            card["pictures"].append(pic)
        for (esc_text,) in self._query("SELECT doc FROM events WHERE for_event = ? AND"
                                       " type = 'escalation' ORDER BY seq", (event_id,)):
            esc = json.loads(esc_text)
            detail = esc.get("detail") if isinstance(esc.get("detail"), dict) else {}
            card["escalations"].append({"step": _short(detail.get("step")),
                                        "reason": _short(detail.get("reason")),
                                        "to": _short(detail.get("to")),
                                        "at": _short(esc.get("occurred_at"))})
        acks = self._query(
            "SELECT a.operator, a.sent_at, r.doc, r.arrived FROM acks a LEFT JOIN results r"
            " ON r.cmd_id = a.cmd_id WHERE a.event_id = ? ORDER BY a.sent_at", (event_id,))
        if acks:
            # The first acknowledgement that worked, else the latest one sent.
            chosen = acks[-1]
            for a in acks:
                if a[2] is not None and json.loads(a[2]).get("ok") is True:
                    chosen = a
                    break
            operator, sent_at, res_text, res_at = chosen
            ack: dict[str, Any] = {"operator": _short(operator), "sent_at": sent_at,
                                   "answered": res_text is not None}
            if res_text is not None:
                res = json.loads(res_text)
                result = res.get("result") if isinstance(res.get("result"), dict) else {}
                ack.update(ok=res.get("ok") is True, rtt_ms=round((res_at - sent_at) * 1000),
                           lamp=_short(result.get("lamp")) if result.get("lamp") else None,
                           lamp_on=result.get("lamp_on") is True,
                           error=_short(res.get("error") or res.get("code") or ""))
            card["ack"] = ack
        return card

    def gateways(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT gateway FROM gateways ORDER BY gateway")
        found = [self.gateway(str(r[0])) for r in rows]
        return [g for g in found if g is not None]

    def gateway(self, key: str) -> dict[str, Any] | None:
        rows = self._query("SELECT status, status_at, health, health_at FROM gateways"
                           " WHERE gateway = ?", (key,))
        if not rows:
            return None
        status_text, status_at, health_text, health_at = rows[0]
        status = json.loads(status_text) if status_text else {}
        health = json.loads(health_text) if health_text else {}
        faults = []
        for f in health.get("faults") or []:
            if isinstance(f, dict):
                faults.append({"id": _short(f.get("device") or f.get("id")),
                               "name": _short(f.get("name")),
                               "reason": _short(f.get("reason"))})
        queue = health.get("queue") if isinstance(health.get("queue"), dict) else None
        return {"gateway": key, "state": _short(status.get("state") or "unknown"),
                "reason": _short(status.get("reason")), "version": _short(status.get("version")),
                "status_at": status_at, "health_at": health_at, "faults": faults,
                "queue": {k: queue.get(k) for k in ("alarm", "event", "bulk")} if queue else None,
                "time_synced": (health.get("time_synced") if health else
                                status.get("time_synced"))}

    def picture(self, n: int) -> bytes | None:
        rows = self._query("SELECT jpeg FROM pictures WHERE n = ? AND is_jpeg = 1", (n,))
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None

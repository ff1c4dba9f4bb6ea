"""Read-only reports over a store's connection: the queue by lane, the rows waiting, the
drills' timelines.

Each takes a connection and only reads, so the same code answers for the running
service (through `Outbox`, under its lock) and for a stopped one (gateway.store.offline,
on a read-only connection): `alarmgw queue` and `alarmgw drills` then say the same
thing whichever way they got it.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from typing import Any

from gateway.store.records import Lane, LaneStats, QueueStats, State
from gateway.store.schema import has_row_clocks

#: A drill's steps in the order they happen; durations are taken between consecutive ones.
DRILL_STEPS = ("pressed", "committed", "published", "puback", "platform_ack")


def queue_stats(db: sqlite3.Connection, budget: int, evicted: int, refused: int,
                overlay: dict[int, State] | None = None) -> QueueStats:
    """The queue by lane. `budget`, `evicted`, `refused`: what only the running store
    knows (0 when read offline); `overlay`: state changes a full disk keeps in memory
    (rowid -> state).

    Runs under the store's lock as often as the heartbeat and the status line ask, so it
    reads the index by state (which carries each row's size) and one row per lane, never
    the rows' payloads (gateway.store.schema, version 2)."""
    counts: dict[Lane, list[int]] = {lane: [0, 0, 0] for lane in Lane}  # ready, in flight, bytes
    acked, total = 0, 0
    for state, lane, n, nbytes in db.execute(
            "SELECT state, lane, COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
            " GROUP BY state, lane"):
        total += nbytes
        if state == State.ACKED:
            acked += n
        elif state in (State.READY, State.IN_FLIGHT) and lane in counts:
            counts[Lane(lane)][state] += n
            counts[Lane(lane)][2] += nbytes
    # State changes held in memory on a full disk count as what they will be.
    for rowid, state in (overlay or {}).items():
        row = db.execute("SELECT lane, state, size FROM outbox WHERE rowid=?",
                         (rowid,)).fetchone()
        if row is None or row[1] == state:
            continue
        c = counts[Lane(row[0])]
        if row[1] == State.ACKED:
            acked -= 1
            c[2] += row[2]
        else:
            c[row[1]] -= 1
        if state == State.ACKED:
            acked += 1
            c[2] -= row[2]
        else:
            c[state] += 1
    clocks = _clock_columns(db)
    lanes: dict[str, LaneStats] = {}
    for lane, (ready, in_flight, nbytes) in counts.items():
        # The first waiting row of each state, from the index; the older of the two.
        firsts = [r[0] for r in db.execute(
            "SELECT MIN(rowid) FROM outbox WHERE state=? AND lane=? UNION ALL"
            " SELECT MIN(rowid) FROM outbox WHERE state=? AND lane=?",
            (State.READY, int(lane), State.IN_FLIGHT, int(lane))) if r[0] is not None]
        oldest = db.execute(f"SELECT rowid, created_at, event_id, {clocks} FROM outbox"
                            " WHERE rowid=?", (min(firsts),)).fetchone() if firsts else None
        lanes[lane.name.lower()] = LaneStats(
            ready=ready, in_flight=in_flight, bytes=nbytes,
            oldest_created_at=oldest[1] if oldest else None,
            oldest_event_id=oldest[2] if oldest else None,
            oldest_row=oldest[0] if oldest else None,
            oldest_mono_ns=oldest[3] if oldest else None,
            oldest_boot_id=oldest[4] if oldest else None)
    row = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
    return QueueStats(lanes=lanes, acked_kept=acked, bytes_total=total, budget_bytes=budget,
                      next_seq=row[0] if row else 1, evicted_total=evicted,
                      refused_total=refused)


def waiting_rows(db: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` rows not yet delivered, in the order the uplink takes them, each with
    the boot clock of its creation (`mono_ns`, `boot_id`: None for a row that an older
    alarmgw wrote) that its age is told by."""
    rows = db.execute(
        "SELECT rowid, lane, state, seq, event_id, event_type, topic, size, created_at,"
        f" attempts, {_clock_columns(db)} FROM outbox WHERE state<2 ORDER BY lane, rowid"
        " LIMIT ?", (limit,)).fetchall()
    return [{"row": r[0], "lane": Lane(r[1]).name.lower(),
             "state": "in_flight" if r[2] == State.IN_FLIGHT else "ready", "seq": r[3],
             "event_id": r[4], "type": r[5], "topic": r[6], "bytes": r[7], "created_at": r[8],
             "attempts": r[9], "mono_ns": r[10], "boot_id": r[11]} for r in rows]


def _clock_columns(db: sqlite3.Connection) -> str:
    """The rows' boot clock, or NULLs from a file of schema version 1 read as it is."""
    return "mono_ns, boot_id" if has_row_clocks(db) else "NULL, NULL"


def drill_records(db: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The last `limit` drills, newest first, each with its timeline and the durations
    between its steps."""
    rows = db.execute("SELECT event_id, seq, point, requested_by, boot_id, timeline FROM drills"
                      " ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
    out = []
    for event_id, seq, point, requested_by, boot_id, timeline_json in rows:
        timeline = json.loads(timeline_json)
        # Durations between consecutive recorded steps, exact within one boot (mono_ns).
        steps = [s for s in DRILL_STEPS if s in timeline]
        durations = {f"{a}->{b}": round((timeline[b]["mono_ns"] - timeline[a]["mono_ns"]) / 1e6,
                                        3)
                     for a, b in itertools.pairwise(steps)}
        total = None
        if len(steps) >= 2:
            total = round((timeline[steps[-1]]["mono_ns"] - timeline[steps[0]]["mono_ns"]) / 1e6,
                          3)
        snaps = timeline.get("snapshots")
        snapshots = None
        if snaps is not None and "pressed" in timeline:
            snapshots = {"count": snaps["count"], "last_after_ms": round(
                (snaps["mono_ns"] - timeline["pressed"]["mono_ns"]) / 1e6, 3)}
        out.append({"event_id": event_id, "seq": seq, "point": point,
                    "requested_by": requested_by, "boot_id": boot_id, "timeline": timeline,
                    "durations_ms": durations, "total_ms": total, "snapshots": snapshots,
                    "complete": all(s in timeline for s in DRILL_STEPS)})
    return out

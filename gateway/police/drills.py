"""Drills: each one's timeline, kept in the store for the school's records.

A drill (`alarmgw test-alarm --drill POINT`, or the platform's `drill`
command) travels the alarm path like a real alarm, marked `drill`. Its
steps are recorded as they happen: pressed (raised), committed (fsynced),
published, PUBACK (the broker has it), platform_ack (the police platform
acknowledged it), and its snapshots (how many the broker has, and when the
last arrived). Each step keeps UTC time and CLOCK_BOOTTIME, so its
durations are exact even when the wall clock is not synced.
`alarmgw drills` prints them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock, mono_ns, utc_iso
from gateway.engine import Committed
from gateway.store import Outbox, Row

log = logging.getLogger(__name__)

#: How many drills the log keeps in memory at most (the store keeps every one).
KEEP_DRILLS = 256


@dataclass
class _Tracked:
    """A drill of this run whose pictures may still come."""

    expected: int | None = None
    """Pictures planned (its document's snapshots), once the document was published."""
    done: int = 0
    """Pictures (or their failure records) the broker has."""


class DrillLog:
    """Records drill timelines; its hooks are called from the engine, uplink and commands."""

    def __init__(self, outbox: Outbox, clock: Clock, *, keep: int = KEEP_DRILLS) -> None:
        self.outbox = outbox
        self.clock = clock
        self.keep = keep
        """The most drills held in memory: the latest ones, the oldest forgotten first."""
        self._recent: OrderedDict[str, _Tracked] = OrderedDict()
        """Drills of this run whose pictures may still come: only their snapshots touch
        the store. A drill leaves once all its pictures are in (or `keep` later ones
        came)."""
        self._lock = threading.Lock()

    def _step(self, event_id: str, step: str, *, wall_ns: int | None = None,
              mono: int | None = None, create: dict[str, Any] | None = None) -> None:
        try:
            self.outbox.drill_step(event_id, step, utc_iso(wall_ns or time.time_ns()),
                                   mono if mono is not None else mono_ns(), create=create)
        except Exception:
            # The drill record is for the school's files; it must never disturb delivery.
            log.exception("drills: could not record step %s of drill %s", step, event_id)

    def on_committed(self, c: Committed) -> None:
        """Service listener (engine thread, right after the fsync)."""
        if c.type != "drill":
            return
        with self._lock:
            self._recent[c.event_id] = _Tracked()
            while len(self._recent) > max(0, self.keep):
                self._recent.popitem(last=False)
        now_mono = mono_ns()
        create = {"seq": c.seq, "point": c.point_id, "boot_id": self.clock.boot_id,
                  "requested_by": c.detail.get("requested_by")}
        self._step(c.event_id, "pressed", wall_ns=c.occurred_wall_ns, mono=c.occurred_mono_ns,
                   create=create)
        self._step(c.event_id, "committed", mono=now_mono)

    def on_delivery(self, step: str, rows: list[Row]) -> None:
        """Uplink hook: `step` is 'published' or 'puback' for these rows."""
        for row in rows:
            if row.event_type == "drill" and row.event_id is not None:
                doc = _document(row.payload)
                # A busy uplink can take the drill from the store before on_committed
                # (the engine thread) has made its record: make it from the document.
                self._step(row.event_id, step, create=_record_of(doc, self.clock.boot_id))
                if step == "published":
                    self._planned(row.event_id, doc)
            elif step == "puback" and row.topic.startswith("snapshot/"):
                # snapshot/{event_id}/{camera}[/failed]: one of a drill's pictures is in.
                # (An alarm's snapshots cost no store transaction here.)
                event_id = row.topic.split("/")[1]
                if not self._picture_done(event_id):
                    continue
                if row.topic.endswith("/failed"):
                    continue
                try:
                    self.outbox.drill_snapshot(event_id, utc_iso(time.time_ns()), mono_ns())
                except Exception:
                    log.exception("drills: could not record a snapshot of %s", row.topic)

    def _planned(self, event_id: str, doc: dict[str, Any] | None) -> None:
        """A drill's document is out: how many pictures follow it."""
        try:
            shots = (doc or {})["snapshots"]
            expected = sum(int(s.get("pre", 0)) + int(s.get("post", 0)) for s in shots)
        except (KeyError, ValueError, TypeError, AttributeError):
            return  # not known: the drill stays until `keep` later drills push it out
        with self._lock:
            tracked = self._recent.get(event_id)
            if tracked is None or tracked.expected is not None:
                return
            tracked.expected = expected
            if tracked.done >= expected:
                del self._recent[event_id]

    def _picture_done(self, event_id: str) -> bool:
        """Count one picture (or failure record) of `event_id`; False if it is no drill
        the log holds."""
        with self._lock:
            tracked = self._recent.get(event_id)
            if tracked is None:
                return False
            tracked.done += 1
            if tracked.expected is not None and tracked.done >= tracked.expected:
                del self._recent[event_id]
            return True

    def on_ack(self, event_id: str, point_id: str, ack: dict[str, Any]) -> dict[str, Any]:
        """Command dispatcher ack listener (a first one: a store write, never a wait)."""
        if ack.get("type") == "drill":
            self._step(event_id, "platform_ack")
        return {}


def _document(payload: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _record_of(doc: dict[str, Any] | None, boot_id: str) -> dict[str, Any] | None:
    """The drill record's columns from its event document (as on_committed makes them)."""
    if doc is None:
        return None
    try:
        detail = doc.get("detail") or {}
        return {"seq": int(doc["seq"]), "point": str(doc["point"]["id"]),
                "boot_id": str(doc.get("boot_id") or boot_id),
                "requested_by": detail.get("requested_by") if isinstance(detail, dict)
                else None}
    except (KeyError, TypeError, ValueError):
        return None

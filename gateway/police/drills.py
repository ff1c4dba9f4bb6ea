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

import logging
import time
from typing import Any

from gateway.clock import Clock, mono_ns, utc_iso
from gateway.engine import Committed
from gateway.store import Outbox, Row

log = logging.getLogger(__name__)


class DrillLog:
    """Records drill timelines; its hooks are called from the engine, uplink and commands."""

    def __init__(self, outbox: Outbox, clock: Clock) -> None:
        self.outbox = outbox
        self.clock = clock
        self._recent: set[str] = set()
        """Drills of this run: only their snapshots touch the store."""

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
        self._recent.add(c.event_id)
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
                self._step(row.event_id, step)
            elif step == "puback" and row.topic.startswith("snapshot/") \
                    and not row.topic.endswith("/failed") \
                    and row.topic.split("/")[1] in self._recent:
                # snapshot/{event_id}/{camera}: one of a drill's pictures is delivered.
                # (An alarm's snapshots cost no store transaction here.)
                try:
                    self.outbox.drill_snapshot(row.topic.split("/")[1],
                                               utc_iso(time.time_ns()), mono_ns())
                except Exception:
                    log.exception("drills: could not record a snapshot of %s", row.topic)

    def on_ack(self, event_id: str, point_id: str, ack: dict[str, Any]) -> dict[str, Any]:
        """Command dispatcher ack listener."""
        if ack.get("type") == "drill":
            self._step(event_id, "platform_ack")
        return {}

"""The live feed behind `alarmgw inputs --watch`: every input change and glitch, as it happens.

A technician on site presses each button in turn and watches the screen. A
short tap must not be missed, so the feed is not a poll of the current state:
it is a ring of the last `capacity` entries (memory only), each with a
cursor number, filled as the engine handles each change and as a driver's
debouncer counts a glitch. The CLI long-polls the control socket
(`{"cmd": "input-watch", "after": CURSOR, "wait_s": 5}`): the answer comes
as soon as there is anything after CURSOR, or empty after `wait_s`. A client
that fell more than `capacity` entries behind is told how many it missed.
This keeps the control socket's one-request-one-answer protocol and its
short client timeouts.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from gateway.clock import utc_iso
from gateway.drivers import FaultChange, InputChange

#: Longest a watch request may wait for news, in seconds (below the client's 10 s timeout).
MAX_WAIT_S = 8.0


class InputFeed:
    """Recent input changes, glitches and device faults, for live watching."""

    def __init__(self, capacity: int = 1000) -> None:
        """`capacity`: entries kept; older ones are dropped (and counted as missed)."""
        self._entries: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._cond = threading.Condition()
        self._cursor = 0
        self._closed = False

    @property
    def cursor(self) -> int:
        with self._cond:
            return self._cursor

    def _add(self, entry: dict[str, Any], mono: int) -> None:
        wall = time.time_ns() - (time.clock_gettime_ns(time.CLOCK_BOOTTIME) - mono)
        with self._cond:
            self._cursor += 1
            entry["n"] = self._cursor
            entry["at"] = utc_iso(wall)
            entry["mono_ns"] = mono
            self._entries.append(entry)
            self._cond.notify_all()

    def record(self, change: InputChange | FaultChange) -> None:
        """An engine observer: runs in the engine thread after each change; never blocks."""
        if isinstance(change, InputChange):
            self._add({"what": "change", "input": change.point_id, "active": change.active,
                       "initial": change.initial}, change.mono_ns)
        else:
            self._add({"what": "fault" if change.active else "fault_cleared",
                       "input": change.device_id, "name": change.name, "source": change.source,
                       "reason": change.reason}, change.mono_ns)

    def record_glitch(self, point_id: str, glitches: int, mono: int) -> None:
        """A driver's debouncer saw an excursion shorter than the debounce time."""
        self._add({"what": "glitch", "input": point_id, "glitches": glitches}, mono)

    def read(self, after: int, wait_s: float) -> dict[str, Any]:
        """Entries after cursor `after`, waiting up to `wait_s` seconds for the first one."""
        wait_s = max(0.0, min(wait_s, MAX_WAIT_S))
        with self._cond:
            reset = after > self._cursor  # a cursor from before the service restarted
            if reset:
                after = 0
            self._cond.wait_for(lambda: self._cursor > after or self._closed, wait_s)
            entries = [dict(e) for e in self._entries if e["n"] > after]
            first = entries[0]["n"] if entries else self._cursor + 1
            missed = max(0, first - after - 1) if after < self._cursor else 0
            return {"cursor": self._cursor, "entries": entries, "missed": missed,
                    "closed": self._closed, "reset": reset}

    def close(self) -> None:
        """The service is stopping: answer every waiting watcher now."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

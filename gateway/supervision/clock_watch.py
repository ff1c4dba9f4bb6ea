"""Supervision of the wall clock: a fault while it stays unsynchronised too long.

A Raspberry Pi has no battery-backed clock. After a power cut without
network its wall time is wrong until NTP syncs, and every event says so
(`time_synced: false`). A few minutes of that after boot are normal; an hour
means the NTP server is unreachable and every alarm carries a doubtful time.
So once the clock has been unsynced for longer than `clock.unsynced_fault_s`
(counted from boot, or from when sync was lost), a `fault` event for the
device "clock" is raised through the engine's door, and a `fault_cleared`
once it syncs. The check reads memory and a syscall every few seconds and
writes nothing unless the state changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway.clock import Clock, mono_ns
from gateway.drivers import FaultChange
from gateway.supervision.watch_thread import WatchThread

log = logging.getLogger(__name__)

DEVICE_ID = "clock"
"""The point id of clock faults."""


class ClockWatch(WatchThread):
    """Raises a clock fault while the clock is unsynced longer than a threshold."""

    def __init__(self, clock: Clock, door: Callable[[FaultChange], None], *,
                 fault_after_s: float, check_every_s: float = 10.0,
                 boottime_ns: Callable[[], int] = mono_ns) -> None:
        """`door`: the engine's door; `fault_after_s`: seconds unsynced (since boot, or
        since sync was lost) before the fault, 0 for never; `check_every_s`: seconds
        between two looks; `boottime_ns`: CLOCK_BOOTTIME source, in ns."""
        super().__init__("clock-watch", check_every_s)
        self.clock = clock
        self._door = door
        self.fault_after_s = fault_after_s
        self._boottime_ns = boottime_ns
        self._seen_synced = False
        self._unsynced_since_ns: int | None = None
        self.fault_open = False
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.fault_after_s > 0:
            super().start()

    def unsynced_for_s(self) -> float | None:
        """Seconds the clock has been unsynced as far as this watch knows; None if synced."""
        with self._lock:
            since = self._unsynced_since_ns
        if since is None:
            return None
        return (self._boottime_ns() - since) / 1e9

    def check_now(self) -> None:
        """Look at the clock now (and report a change through the door)."""
        if self.fault_after_s <= 0:
            return
        synced = self.clock.is_synced()
        now = self._boottime_ns()
        change: FaultChange | None = None
        with self._lock:
            if synced:
                self._seen_synced = True
                self._unsynced_since_ns = None
                if self.fault_open:
                    self.fault_open = False
                    change = FaultChange(DEVICE_ID, "system clock", f"ntp:{self.clock.source}",
                                         active=False, reason="", mono_ns=now)
            else:
                if self._unsynced_since_ns is None:
                    # Never seen synced in this run: it may have been unsynced since boot.
                    self._unsynced_since_ns = now if self._seen_synced else 0
                unsynced_s = (now - self._unsynced_since_ns) / 1e9
                if not self.fault_open and unsynced_s >= self.fault_after_s:
                    self.fault_open = True
                    what = "since boot" if self._unsynced_since_ns == 0 else "since it lost sync"
                    change = FaultChange(
                        DEVICE_ID, "system clock", f"ntp:{self.clock.source}", active=True,
                        reason=(f"the clock has not been NTP-synced for {unsynced_s:.0f} s"
                                f" {what} (clock.unsynced_fault_s = {self.fault_after_s:.0f}):"
                                " event times are guesses until it syncs; check `timedatectl`,"
                                " that the network reaches an NTP server (UDP port 123) and"
                                " the servers in /etc/systemd/timesyncd.conf"),
                        mono_ns=now, detail={"unsynced_s": round(unsynced_s)})
        if change is not None:
            self._door(change)

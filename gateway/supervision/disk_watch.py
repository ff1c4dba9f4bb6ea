"""Supervision of the state directory's filesystem: a fault while it is (nearly) full.

A full filesystem never refuses an alarm (the store keeps a reserve, see
`gateway.store`), but it is a fault all the same: snapshots are refused, and
the next outage's backlog has nowhere to go. A `fault` event for the device
"disk" is raised through the engine's door when the store finds no room for a
write (or cannot keep its reserve), or when less free space than the reserve is
left beside it (a second reserve's worth: the warning before the first one is
touched). Once the filesystem has twice the reserve free again, the store puts
its reserve back and the `fault_cleared` follows. The check reads memory and
one statvfs every few seconds; it writes nothing unless the state changes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from gateway.clock import mono_ns
from gateway.drivers import FaultChange
from gateway.store import Outbox
from gateway.supervision.watch_thread import WatchThread

log = logging.getLogger(__name__)

DEVICE_ID = "disk"
"""The point id of disk faults."""
#: Free space under which the disk is a fault when the store keeps no reserve, in bytes.
MIN_LOW_WATER_BYTES = 64 * 1024


def free_bytes(path: os.PathLike[str] | str) -> int:
    """Bytes an unprivileged process may still write on the filesystem of `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskWatch(WatchThread):
    """Raises a disk fault while the store's filesystem is full."""

    def __init__(self, outbox: Outbox, door: Callable[[FaultChange], None], *,
                 check_every_s: float = 10.0,
                 free: Callable[[os.PathLike[str] | str], int] = free_bytes) -> None:
        """`door`: the engine's door; `check_every_s`: seconds between two looks;
        `free`: how free space is measured (bytes)."""
        super().__init__("disk-watch", check_every_s)
        self.outbox = outbox
        self._door = door
        self._free = free
        self.fault_open = False
        self._lock = threading.Lock()  # one look at a time: a fault is raised once
        outbox.on_trouble = self.wake

    @property
    def directory(self) -> str:
        return str(self.outbox.path.parent)

    def stop(self) -> None:
        super().stop()
        self.outbox.on_trouble = None

    def check_now(self) -> None:
        """Look at the store and the filesystem now (and report a change)."""
        with self._lock:
            self._check()

    def _check(self) -> None:
        trouble = self.outbox.disk_trouble
        reserve = self.outbox.reserve_bytes
        low_water = max(reserve, MIN_LOW_WATER_BYTES)
        free = self._free_or_none()
        change: FaultChange | None = None
        if not self.fault_open:
            if trouble is None and (free is None or free >= low_water):
                return
            if trouble is None:
                trouble = (f"only {free} bytes are free on the filesystem of {self.directory},"
                           f" less than the {reserve}-byte reserve kept for alarms")
            self.fault_open = True
            change = FaultChange(
                DEVICE_ID, "state directory filesystem", f"fs:{self.directory}", active=True,
                reason=(f"{trouble}: alarms are still committed and delivered (a reserve is"
                        " kept for them), snapshots are refused while the disk is full; free"
                        f" space on {self.directory} (`df -h`,"
                        " `journalctl --vacuum-size=50M`) and check that store.max_bytes fits"
                        " the partition"),
                mono_ns=mono_ns(), detail={"free_bytes": free, "reserve_bytes": reserve})
        else:
            if free is None or free < 2 * low_water:
                return
            if trouble is not None and not self.outbox.recover_disk():
                return
            self.fault_open = False
            change = FaultChange(DEVICE_ID, "state directory filesystem",
                                 f"fs:{self.directory}", active=False, reason="",
                                 mono_ns=mono_ns(), detail={"free_bytes": free})
        self._door(change)

    def _free_or_none(self) -> int | None:
        try:
            return self._free(self.directory)
        except OSError as exc:
            log.error("disk watch: cannot read the free space of %s: %s", self.directory, exc)
            return None

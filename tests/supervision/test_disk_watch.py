"""The disk watch: a fault while the state directory's filesystem is (nearly) full."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.drivers import FaultChange
from gateway.store import Outbox
from gateway.supervision.disk_watch import DiskWatch

RESERVE = 256 * 1024


class Disk:
    """The free space the watch sees, set by the test."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.looks = 0

    def __call__(self, path: object) -> int:
        self.looks += 1
        return self.free


def watch(tmp_path: Path, disk: Disk) -> tuple[DiskWatch, Outbox, list[FaultChange]]:
    box = Outbox(tmp_path / "outbox.sqlite3", reserve_bytes=RESERVE)
    box.open()
    seen: list[FaultChange] = []
    return DiskWatch(box, seen.append, free=disk), box, seen


def test_less_free_space_than_the_reserve_is_a_fault_cleared_with_twice_that(
        tmp_path: Path) -> None:
    disk = Disk(10 * RESERVE)
    w, box, seen = watch(tmp_path, disk)
    try:
        w.check_now()
        assert seen == []
        disk.free = RESERVE - 1
        w.check_now()
        w.check_now()  # raised once
        assert [c.active for c in seen] == [True]
        assert seen[0].device_id == "disk" and "less than the 262144-byte reserve" in seen[0].reason
        assert seen[0].detail["free_bytes"] == RESERVE - 1
        disk.free = 2 * RESERVE - 1  # hysteresis: not yet
        w.check_now()
        assert len(seen) == 1
        disk.free = 2 * RESERVE
        w.check_now()
        assert [c.active for c in seen] == [True, False]
    finally:
        box.close()


def test_a_store_that_found_no_room_is_a_fault_until_its_reserve_is_back(
        tmp_path: Path) -> None:
    disk = Disk(10 * RESERVE)
    w, box, seen = watch(tmp_path, disk)
    try:
        box.reserve_path.unlink()  # as a full disk made the store release it
        box._no_room("an event")  # what the store notes when a write finds no room
        w.check_now()
        assert [c.active for c in seen] == [True]
        assert "no room on the filesystem" in seen[0].reason
        # Room again: the next look puts the reserve back and clears the fault.
        w.check_now()
        assert [c.active for c in seen] == [True, False]
        assert box.reserve_path.stat().st_size == RESERVE
        assert box.disk_trouble is None
    finally:
        box.close()


def test_the_store_wakes_the_watch_when_it_finds_no_room(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3", reserve_bytes=RESERVE)
    box.open()
    raised = threading.Event()
    looked = threading.Event()

    def free(path: object) -> int:
        looked.set()
        return 10 * RESERVE

    # Only the store's call can make it look again within the test's time.
    w = DiskWatch(box, lambda change: raised.set(), free=free, check_every_s=3600.0)
    try:
        w.start()
        assert looked.wait(10)  # the first look: nothing wrong
        assert not raised.is_set()
        box._no_room("a snapshot")
        assert raised.wait(10)
    finally:
        w.stop()
        box.close()

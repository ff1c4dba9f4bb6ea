"""A full disk for real: a small tmpfs as the state directory, filled up.

The byte budget (tests/store/test_store.py) keeps the outbox within its share; this is the case the
budget cannot see: the filesystem itself is full (a small SD card partition, logs grown
beside the store, or a budget larger than the partition). An alarm must still be committed
and delivered, snapshots give way first, a `fault` says the disk is full, and once space
returns the reserve is put back, the fault clears and snapshots are stored again. Mounting
needs root: elsewhere these tests say so and skip.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw import InProcessGateway, write_config

from gateway.errors import StoreError
from gateway.store import EventDraft, Lane, Outbox
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

GW = "test-school/gw-test"
#: One fake JPEG, in bytes: the disk fills after about a hundred.
SNAPSHOT = b"\xff\xd8" + os.urandom(8 * 1024) + b"\xff\xd9"


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True)
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("a real full disk needs root to mount a small tmpfs as the state directory")
    res = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                          str(where)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {res.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    """The gateway's state directory on a 1 MiB tmpfs (root only)."""
    with small_tmpfs(tmp_path / "gw" / "state", "1m") as state:
        yield state


def fill_with_file(directory: Path, name: str = "filler") -> Path:
    """Fill the filesystem of `directory` to the last byte with one file (as logs would)."""
    filler = directory / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (64 * 1024, 4096, 512, 1):
            try:
                while os.write(fd, b"\0" * chunk):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert shutil.disk_usage(directory).free < 4096
    return filler


def fill_and_press(gw: InProcessGateway, broker: Mosquitto) -> None:
    """Kill the broker, fill the disk with snapshots, then press and release."""
    assert gw.panel is not None
    box = gw.service.outbox
    engine = gw.service.engine
    assert engine is not None
    broker.kill()  # nothing leaves: snapshots pile up until the disk is full
    stored = 0
    with pytest.raises(StoreError, match="full"):
        for i in range(1000):
            box.put_bulk(f"snapshot/e{i}/cam", SNAPSHOT)
            stored += 1
    assert stored > 10
    # (The disk's fault, committed as soon as the store found no room, may already have
    # taken the reserve and evicted the snapshots: it is an event like the alarm.)
    gw.panel.press("gate-panic")
    gw.panel.release("gate-panic")
    # The watch has looked (its own look, or this one) and the engine has what it saw.
    assert gw.service.diskwatch is not None
    gw.service.diskwatch.check_now()
    engine.call(lambda: None).result(10)


def full_disk_config(tmp_path: Path, broker: Mosquitto) -> Path:
    # The byte budget is not the limit here; the reserve for alarms is 128 KiB.
    return write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                        store={"max_bytes": 64 * 1024 * 1024, "reserve_bytes": 128 * 1024})


def waiting_types(box: Outbox) -> list[str]:
    return sorted(str(w["type"]) for w in box.waiting() if w["type"] is not None)


def test_a_full_disk_never_refuses_an_alarm_and_is_a_fault(
        tmp_path: Path, small_state_dir: Path,
        persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    broker, _ = persistent
    with InProcessGateway(full_disk_config(tmp_path, broker)) as gw:
        fill_and_press(gw, broker)
        box = gw.service.outbox
        engine = gw.service.engine
        assert engine is not None
        # The alarm and its restore are committed in the room the released reserve and the
        # evicted snapshots made, and the disk is a fault (also committed).
        assert engine.call(lambda: [f["device"] for f in engine.open_faults()]).result(5) \
            == ["disk"]
        assert waiting_types(box) == ["alarm", "fault", "restore"]
        assert box.stats().lanes["bulk"].ready == 0  # snapshots gave way first
        assert box.evicted_total > 10
        # Snapshots are refused while the reserve for alarms cannot be put back.
        with pytest.raises(StoreError, match="reserve"):
            box.put_bulk("snapshot/late/cam", SNAPSHOT)


def test_a_full_disk_still_delivers_the_alarm(
        tmp_path: Path, small_state_dir: Path,
        persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    broker, console = persistent
    with InProcessGateway(full_disk_config(tmp_path, broker)) as gw:
        fill_and_press(gw, broker)
        broker.start()
        assert console.wait_for(lambda c: len(c.events) == 3, 20)
        events = console.ordered(GW)
        assert sorted(e["type"] for e in events) == ["alarm", "fault", "restore"]
        assert [e["seq"] for e in events] == [1, 2, 3]
        fault = next(e for e in events if e["type"] == "fault")
        assert fault["point"]["id"] == "disk" and "full" in fault["detail"]["reason"]
        assert gw.service.uplink is not None
        assert gw.service.uplink.wait_for_drained(10)


def test_space_returning_clears_the_fault_and_snapshots_are_stored_again(
        tmp_path: Path, persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    """Logs fill the partition; the alarm goes through; the logs are cleaned up."""
    broker, console = persistent
    with small_tmpfs(tmp_path / "gw" / "state", "4m") as state, \
            InProcessGateway(full_disk_config(tmp_path, broker)) as gw:
        assert gw.panel is not None and gw.service.diskwatch is not None
        box = gw.service.outbox
        filler = fill_with_file(state)
        gw.panel.press("gate-panic")
        assert console.wait_for(lambda c: [e["type"] for e in c.ordered(GW)]
                                == ["alarm", "fault"], 20)
        assert not box.reserve_path.exists()
        # The logs go on growing into what the released reserve left free (the alarm and
        # the fault may have fitted in the WAL's old pages): no room for the reserve now.
        more = fill_with_file(state, "filler-2")
        with pytest.raises(StoreError, match="reserve"):
            box.put_bulk("snapshot/refused/cam", SNAPSHOT)
        # The partition is cleaned up; the watch's next look puts the reserve back.
        filler.unlink()
        more.unlink()
        gw.service.diskwatch.check_now()
        assert console.wait_for(lambda c: [e["type"] for e in c.ordered(GW)]
                                == ["alarm", "fault", "fault_cleared"], 20)
        assert box.reserve_path.stat().st_size == 128 * 1024
        assert box.disk_trouble is None
        box.put_bulk("snapshot/stored/cam", SNAPSHOT)
        gw.panel.release("gate-panic")
        assert console.wait_for(lambda c: c.ordered(GW)[-1]["type"] == "restore", 20)


def _commit(box: Outbox, n: int) -> None:
    for i in range(n):
        box.commit_event(Lane.ALARM, lambda seq, i=i: EventDraft(  # type: ignore[misc]
            event_id=f"e{i}", event_type="alarm", topic="event", payload=b"x" * 300))


def _no_wal_room(path: Path) -> Path:
    """Give the WAL back to the filesystem (from another connection, as a checkpoint by
    any reader would) and fill what it freed: every write now needs room it cannot get."""
    other = sqlite3.connect(path)
    try:
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        other.close()
    return fill_with_file(path.parent)


@pytest.mark.parametrize("recover", [True, False], ids=["space-returns", "restart-full"])
def test_delivery_state_with_no_room_at_all_is_kept_in_memory(
        tmp_path: Path, recover: bool) -> None:
    """No reserve, no WAL room: taking, acknowledging and requeueing rows still works, in
    memory; nothing is sent twice meanwhile, and a restart before space returns sends the
    undelivered ones again rather than losing them."""
    with small_tmpfs(tmp_path / "state", "1m") as state:
        path = state / "outbox.sqlite3"
        box = Outbox(path)
        box.open()
        try:
            _commit(box, 3)
            filler = _no_wal_room(path)
            rows = box.take(10)
            assert [r.event_id for r in rows] == ["e0", "e1", "e2"]
            assert box.disk_trouble is not None and "full" in box.disk_trouble
            assert box.take(10) == [] and not box.has_ready()
            stats = box.stats()
            assert (stats.lanes["alarm"].ready, stats.lanes["alarm"].in_flight) == (0, 3)
            assert box.ack([rows[0].rowid, rows[1].rowid]) == 2
            box.release([rows[2].rowid])
            again = box.take(10)
            assert [r.event_id for r in again] == ["e2"]
            assert box.ack([rows[2].rowid]) == 1
            assert box.stats().waiting == 0 and box.stats().acked_kept == 3
            if recover:
                filler.unlink()
                assert box.recover_disk()
                assert box.disk_trouble is None
                # Counted once, when written: not also for the attempts the disk refused.
                assert box._acked == box.stats().acked_kept == 3
        finally:
            box.close()
        box = Outbox(path)
        box.open()
        try:
            left = [w["event_id"] for w in box.waiting()]
            assert left == ([] if recover else ["e0", "e1", "e2"])
        finally:
            box.close()



"""A full disk for real: a 1 MiB tmpfs as the state directory, filled with snapshots.

The byte budget (tests/test_store.py) keeps the outbox within its share; this is the case the
budget cannot see: the filesystem itself is full (a small SD card partition, logs grown
beside the store). An alarm must still be committed, snapshots give way first, and once
space returns the gateway stores snapshots again. Mounting needs root: elsewhere the test
says so and skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw import InProcessGateway, write_config

from gateway.errors import StoreError
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

GW = "test-school/gw-test"
#: One fake JPEG, in bytes: the disk fills after about a hundred.
SNAPSHOT = b"\xff\xd8" + os.urandom(8 * 1024) + b"\xff\xd9"


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    """The gateway's state directory on a 1 MiB tmpfs (root only)."""
    state = tmp_path / "gw" / "state"
    state.mkdir(parents=True)
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("a real full disk needs root to mount a small tmpfs as the state directory")
    res = subprocess.run([mount, "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(state)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {res.stderr.strip()}")
    try:
        yield state
    finally:
        subprocess.run(["umount", str(state)], check=True)


def fill_and_press(gw: InProcessGateway, broker: Mosquitto, state: Path) -> None:
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
    assert shutil.disk_usage(state).free < 2 * len(SNAPSHOT)
    gw.panel.press("gate-panic")
    gw.panel.release("gate-panic")
    engine.call(lambda: None).result(10)


def full_disk_config(tmp_path: Path, broker: Mosquitto) -> Path:
    # The byte budget is not the limit here; the reserve for alarms is 128 KiB.
    return write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                        store={"max_bytes": 64 * 1024 * 1024, "reserve_bytes": 128 * 1024})


def test_a_full_disk_never_refuses_an_alarm(
        tmp_path: Path, small_state_dir: Path,
        persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    broker, _ = persistent
    with InProcessGateway(full_disk_config(tmp_path, broker)) as gw:
        fill_and_press(gw, broker, small_state_dir)
        box = gw.service.outbox
        stats = box.stats()
        # Both events committed (seq 1 and 2), in the room the released reserve made.
        assert stats.next_seq == 3
        assert stats.lanes["alarm"].ready == 1 and stats.lanes["event"].ready == 1
        # Snapshots give way: with no room to put the reserve back, none is accepted.
        with pytest.raises(StoreError, match="reserve"):
            box.put_bulk("snapshot/late/cam", SNAPSHOT)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "known gap: on a really full filesystem the alarm is committed (the reserve), but"
    " marking rows in flight, recording PUBACKs and evicting snapshots are SQLite writes"
    " that need WAL room too, so the uplink cannot deliver until space returns; needs"
    " in-memory in-flight state as a fallback and eviction in WAL-sized steps"))
def test_a_full_disk_still_delivers_the_alarm(
        tmp_path: Path, small_state_dir: Path,
        persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    broker, console = persistent
    with InProcessGateway(full_disk_config(tmp_path, broker)) as gw:
        fill_and_press(gw, broker, small_state_dir)
        broker.start()
        assert console.wait_for(lambda c: len(c.events) == 2, 20)
        assert [e["type"] for e in console.ordered(GW)] == ["alarm", "restore"]

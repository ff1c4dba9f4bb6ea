"""Each event gets its own pre-alarm pictures, even when its commit had to be retried.

`SnapshotLane.plan` freezes a camera's ring inside the commit; `on_committed` hands those
frames to the camera once the event is on disk. When the commit fails (a full disk), the
engine holds the alarm and retries it, and the next alarm of the same button may be
committed first: the frames must follow their event, not the order of commits.

Everything is real (simulated HTTP cameras, the store on disk, Mosquitto, the platform
console) except the failure: a subclass of `Outbox` refuses the first alarm's commits
from inside the transaction, with the error a full disk gives, until the test lets it in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gw import DEFAULT_INPUTS, InProcessGateway, write_config
from refusing_store import RefusingOutbox

from gateway.drivers.cameras import Picture
from gateway.service import store_path
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

WAIT = 15.0
PRE = 2


@pytest.fixture
def gateway(tmp_path: Path, broker: Mosquitto) -> Iterator[tuple[InProcessGateway,
                                                                  RefusingOutbox,
                                                                  PlatformConsole]]:
    inputs = [dict(i, cameras=["gate-cam"]) if i["id"] == "gate-panic" else i
              for i in DEFAULT_INPUTS]
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0, inputs=inputs,
                       cameras=[{"id": "gate-cam", "name": "gate-cam camera", "driver": "sim",
                                 "username": "admin", "password": "sim-pass", "width": 320,
                                 "height": 180, "timeout_s": 1.0, "interval_s": 0.1,
                                 "pre_frames": PRE, "pre_interval_s": 0.1, "shots": 1}])
    gw = InProcessGateway(cfg)
    c = gw.config.store
    box = RefusingOutbox(store_path(gw.config), max_bytes=c.max_bytes,
                         keep_acked=c.keep_acked, reserve_bytes=c.reserve_bytes)
    gw.service.outbox = box  # before start: every part is built on it
    with PlatformConsole(broker.host, broker.port, persistent=False,
                         snapshot_dir=tmp_path / "platform") as console:
        gw.start()
        try:
            yield gw, box, console
        finally:
            gw.stop()


def test_an_alarm_retried_after_a_failed_commit_keeps_its_own_pictures(
        gateway: tuple[InProcessGateway, RefusingOutbox, PlatformConsole]) -> None:
    gw, box, console = gateway
    assert gw.panel is not None and gw.service.cameras is not None
    engine = gw.service.engine
    assert engine is not None
    cam = gw.service.cameras.units["gate-cam"]

    def ring_newer_than(mono: int) -> Callable[[Any], bool]:
        def full(u: Any) -> bool:
            frames: list[Picture] = u.ring_frames()
            return len(frames) == PRE and all(p.taken_mono_ns > mono for p in frames)
        return full

    assert cam.wait_for(ring_newer_than(0), WAIT)
    # The disk is full for the first alarm (its commit and every retry) until let in.
    first: dict[str, int] = {}
    let_in = threading.Event()

    def refuse(doc: dict[str, Any]) -> bool:
        if doc["type"] != "alarm" or let_in.is_set():
            return False
        first.setdefault("mono_ns", doc["mono_ns"])
        return doc["mono_ns"] == first["mono_ns"]

    box.refuse = refuse
    gw.panel.press("gate-panic")
    with box.refused:
        assert box.refused.wait_for(lambda: box.refusals, WAIT)
    gw.panel.release("gate-panic")
    # The ring has moved on: only pictures taken after the first press.
    assert cam.wait_for(ring_newer_than(first["mono_ns"]), WAIT)
    gw.panel.press("gate-panic")
    assert console.wait_for(lambda c: len(c.events_of("alarm", "gate-panic")) == 1, WAIT)
    let_in.set()
    engine.call(lambda: None).result(WAIT)  # the held alarm is retried after it
    assert console.wait_for(lambda c: len(c.events_of("alarm", "gate-panic")) == 2, WAIT)
    assert console.wait_for(lambda c: len(c.snapshots) == 2 * (PRE + 1), WAIT), \
        f"{len(console.snapshots)} snapshots, failures {console.snapshot_failures}"

    one, two = sorted(console.events_of("alarm", "gate-panic"), key=lambda e: e["mono_ns"])
    assert one["mono_ns"] == first["mono_ns"]
    assert two["seq"] < one["seq"]  # the second press was committed first
    assert one["snapshots"] == two["snapshots"] == [
        {"camera": "gate-cam", "name": "gate-cam camera", "pre": PRE, "post": 1}]
    for alarm, after in ((one, 0), (two, one["mono_ns"])):
        pre = [s for s in console.snapshots_of(alarm["id"], "gate-cam") if s.phase == "pre"]
        taken = sorted(int(s.user["mono_ns"]) for s in pre)
        assert len(taken) == PRE, alarm
        # Its own ring: taken before its press, and after the press before it.
        assert all(after < t < alarm["mono_ns"] for t in taken), (alarm["seq"], taken,
                                                                   after, alarm["mono_ns"])

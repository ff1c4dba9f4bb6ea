"""The engine's meaning of changes: faults once per failure, plain inputs, snapshot plans."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.clock import Clock, mono_ns
from gateway.drivers import FaultChange, InputChange
from gateway.engine import Committed, Engine
from gateway.events import Point
from gateway.store import Outbox
from gateway.uplink.protocol import load_schema

POINTS = [
    Point("gate-panic", "南门", "South gate", "panic", "gpio:17"),
    Point("door", "门磁", "Door", "input", "gpio:5"),
]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Engine, Outbox, list[Committed]]]:
    box = Outbox(tmp_path / "o.sqlite3")
    box.open()
    committed: list[Committed] = []

    def plan(point_id: str, etype: str, *, event_id: str) -> list[dict[str, Any]]:
        return [{"camera": "gate-cam", "shots": 3}] if etype == "alarm" else []

    engine = Engine("s", "g", POINTS, outbox=box, clock=Clock("assume-synced"),
                    on_committed=committed.append, plan_snapshots=plan)
    engine.start()
    try:
        yield engine, box, committed
    finally:
        engine.stop()
        box.close()


def docs(box: Outbox) -> list[dict[str, Any]]:
    return [json.loads(r.payload) for r in box.take(100)]


def fault(active: bool, reason: str = "") -> FaultChange:
    return FaultChange("rs485-unit3", "Modbus unit 3 on bus rs485", "modbus:rs485/3", active,
                       reason, mono_ns(), detail={"timeouts": 3} if active else {})


def test_one_fault_event_per_failure_and_one_clear_per_recovery(
        rig: tuple[Engine, Outbox, list[Committed]]) -> None:
    engine, box, _ = rig
    engine.door(fault(True, "no reply in 3 polls; check wiring and unit id"))
    engine.door(fault(True, "still no reply"))
    assert engine.call(engine.open_faults).result(5)[0]["device"] == "rs485-unit3"
    engine.door(fault(False))
    engine.door(fault(False))
    assert engine.call(engine.open_faults).result(5) == []
    events = docs(box)
    assert [e["type"] for e in events] == ["fault", "fault_cleared"]
    f = events[0]
    assert f["point"] == {"id": "rs485-unit3", "name": "Modbus unit 3 on bus rs485",
                          "location": "", "kind": "device"}
    assert f["source"] == "modbus:rs485/3"
    assert f["detail"] == {"reason": "no reply in 3 polls; check wiring and unit id",
                           "timeouts": 3}
    for e in events:
        jsonschema.validate(e, load_schema("event"))


def test_plain_input_changes_state_without_an_event(
        rig: tuple[Engine, Outbox, list[Committed]]) -> None:
    engine, box, committed = rig
    engine.door(InputChange("door", True, mono_ns()))
    points = engine.call(engine.points_status).result(5)
    assert next(p for p in points if p["id"] == "door")["active"] is True
    assert committed == [] and docs(box) == []


def test_alarm_lists_the_snapshots_that_will_follow(
        rig: tuple[Engine, Outbox, list[Committed]]) -> None:
    engine, box, committed = rig
    engine.door(InputChange("gate-panic", True, mono_ns()))
    engine.door(InputChange("gate-panic", False, mono_ns()))
    engine.call(lambda: None).result(5)
    alarm, restore = docs(box)
    assert alarm["snapshots"] == [{"camera": "gate-cam", "shots": 3}]
    assert restore["snapshots"] == []
    assert [c.type for c in committed] == ["alarm", "restore"]
    assert committed[0].event_id == alarm["id"]


def test_unknown_point_is_ignored_not_fatal(
        rig: tuple[Engine, Outbox, list[Committed]]) -> None:
    engine, box, _ = rig
    engine.door(InputChange("nope", True, mono_ns()))
    engine.door(InputChange("gate-panic", True, mono_ns()))
    engine.call(lambda: None).result(5)
    assert [d["point"]["id"] for d in docs(box)] == ["gate-panic"]


def test_a_fault_open_at_a_restart_is_cleared_when_its_device_is_not_faulty_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import engine as engine_mod

    path = tmp_path / "o.sqlite3"

    def run(changes: list[FaultChange], grace_s: float) -> list[dict[str, Any]]:
        monkeypatch.setattr(engine_mod, "RESTORED_FAULT_GRACE_S", grace_s)
        box = Outbox(path)
        box.open()
        cleared = threading.Event()

        def seen(c: Committed) -> None:
            if c.type == "fault_cleared":
                cleared.set()

        eng = Engine("s", "g", POINTS, outbox=box, clock=Clock("assume-synced"),
                     on_committed=seen)
        eng.start()
        try:
            for ch in changes:
                eng.door(ch)
            eng.call(lambda: None).result(5)
            if grace_s < 1:
                assert cleared.wait(5)
                eng.call(lambda: None).result(5)  # every clear of that pass is committed
            rows = box.take(100)
            box.ack([r.rowid for r in rows])  # delivered: the next run sees only its own
            return [json.loads(r.payload) for r in rows]
        finally:
            eng.stop()
            box.close()

    def cam(active: bool) -> FaultChange:
        return FaultChange("gate-cam", "南门摄像机", "camera:gate-cam", active,
                           "no picture" if active else "", mono_ns())

    # Two faults open, then the process goes without their fault_cleared.
    assert [e["type"] for e in run([fault(True, "silent"), cam(True)], 600)] == [
        "fault", "fault"]
    # Restarted: the camera is reported faulty again (the same failure: no new event).
    assert run([cam(True)], 600) == []
    # Restarted again: nobody reports either within the grace: both are cleared, once.
    events = run([], 0.3)
    assert sorted((e["type"], e["point"]["id"]) for e in events) == [
        ("fault_cleared", "gate-cam"), ("fault_cleared", "rs485-unit3")]
    assert all(e["detail"]["cleared"].startswith("not reported faulty again") for e in events)
    # And they stay cleared: nothing is restored at the next start.
    box = Outbox(path)
    box.open()
    try:
        assert box.open_faults() == []
    finally:
        box.close()

"""A commit that fails and is retried keeps what the first attempt carried.

The store is the real one (SQLite on disk); the only stand-in is the failure itself: a
subclass of `Outbox` that refuses the commits a test picks, from inside the transaction (which
rolls back), with the error a full disk gives. The engine holds the event in memory and
retries it; the fault bookkeeping that lets a restart send the `fault_cleared` (the
`open_faults` table) must be written by the commit that finally succeeds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from refusing_store import RefusingOutbox

from gateway import engine as engine_mod
from gateway.clock import Clock, mono_ns
from gateway.drivers import FaultChange
from gateway.engine import Committed, Engine
from gateway.events import Point
from gateway.store import Outbox

WAIT = 10.0
POINTS = [Point("gate-panic", "南门", "South gate", "panic", "gpio:17")]
DEVICE = "rs485-unit3"


def once(etype: str) -> Callable[[dict[str, Any]], bool]:
    """Refuse the first commit of an event of type `etype`, and nothing after it."""
    done = False

    def refuse(doc: dict[str, Any]) -> bool:
        nonlocal done
        if done or doc["type"] != etype:
            return False
        done = True
        return True

    return refuse


def fault(active: bool) -> FaultChange:
    return FaultChange(DEVICE, "Modbus unit 3 on bus rs485", "modbus:rs485/3", active,
                       "no reply in 3 polls" if active else "", mono_ns())


class Run:
    """One life of the service: the store opened, an engine on it, what it committed."""

    def __init__(self, box: Outbox, engine: Engine, committed: list[Committed],
                 cond: threading.Condition) -> None:
        self.box = box
        self.engine = engine
        self.committed = committed
        self._cond = cond

    def wait_committed(self, etype: str, count: int = 1) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(c.type == etype for c in self.committed) >= count, WAIT)

    def settle(self) -> None:
        """Everything handed in so far is handled (and its retry made)."""
        self.engine.call(lambda: None).result(WAIT)

    def delivered(self) -> list[dict[str, Any]]:
        """Take what waits, as the uplink would, and count it delivered."""
        rows = self.box.take(100)
        self.box.ack([r.rowid for r in rows])
        return [json.loads(r.payload) for r in rows]


@contextmanager
def life(path: Path, box: Outbox | None = None) -> Iterator[Run]:
    box = box if box is not None else Outbox(path)
    box.open()
    committed: list[Committed] = []
    cond = threading.Condition()

    def seen(c: Committed) -> None:
        with cond:
            committed.append(c)
            cond.notify_all()

    engine = Engine("s", "g", POINTS, outbox=box, clock=Clock("assume-synced"),
                    on_committed=seen)
    engine.start()
    try:
        yield Run(box, engine, committed, cond)
    finally:
        engine.stop()
        box.close()


def test_a_fault_whose_commit_was_retried_gets_its_fault_cleared_after_a_restart(
        tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = RefusingOutbox(path)
    box.refuse = once("fault")
    with life(path, box) as run:
        run.engine.door(fault(True))
        assert run.wait_committed("fault")  # refused once, held in memory, retried
        assert [d["type"] for d in box.refusals] == ["fault"]
        assert run.engine.stats()["commit_failures"] == 1
        assert [d["type"] for d in run.delivered()] == ["fault"]
    # Restarted (the grace is long: nothing is cleared for silence), and the device is
    # reported working again by its driver: the platform must hear that the fault is over.
    with life(path) as run:
        run.engine.door(fault(False))
        run.settle()
        assert [(d["type"], d["point"]["id"]) for d in run.delivered()] == [
            ("fault_cleared", DEVICE)]
        assert run.box.open_faults() == []


def test_a_fault_cleared_whose_commit_was_retried_stays_cleared_after_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "o.sqlite3"
    box = RefusingOutbox(path)
    box.refuse = once("fault_cleared")
    with life(path, box) as run:
        run.engine.door(fault(True))
        run.engine.door(fault(False))
        assert run.wait_committed("fault_cleared")
        assert [d["type"] for d in box.refusals] == ["fault_cleared"]
        assert [d["type"] for d in run.delivered()] == ["fault", "fault_cleared"]
        # The store knows the fault is over: a restart has nothing to restore.
        assert box.open_faults() == []
    monkeypatch.setattr(engine_mod, "RESTORED_FAULT_GRACE_S", 0.2)
    with life(path) as run:
        assert run.engine.call(run.engine.open_faults).result(WAIT) == []
        run.settle()
        assert run.delivered() == []  # no second fault_cleared for a fault long over


def test_an_event_held_in_memory_is_committed_before_the_next_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk has room again between a failed retry and the next change: the held event
    still goes first, so a fault's clear never overtakes the fault, in seq or in the
    store's open faults (the timer's retry is kept out of the way)."""
    monkeypatch.setattr(engine_mod, "_RETRY_S", 600.0)
    path = tmp_path / "o.sqlite3"
    box = RefusingOutbox(path)
    disk = {"full": True, "room_after_next_refusal": False}

    def refuse(doc: dict[str, Any]) -> bool:
        if not disk["full"]:
            return False
        if disk["room_after_next_refusal"]:
            disk["full"] = False
        return True

    box.refuse = refuse
    in_call, go = threading.Event(), threading.Event()

    def hold() -> None:
        in_call.set()
        go.wait(WAIT)

    with life(path, box) as run:
        run.engine.door(fault(True))
        run.engine.call(hold)
        assert in_call.wait(WAIT)  # the fault was refused, and so was its retry
        assert {d["type"] for d in box.refusals} == {"fault"}
        # The retry after this call is refused too; then the disk has room, and the
        # device's recovery is the next thing the engine handles.
        disk["room_after_next_refusal"] = True
        run.engine.door(fault(False))
        go.set()
        assert run.wait_committed("fault_cleared")
        assert [(d["seq"], d["type"]) for d in run.delivered()] == [
            (1, "fault"), (2, "fault_cleared")]
        assert box.open_faults() == []

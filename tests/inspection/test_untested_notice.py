"""The maintenance record: a point not proven for more than inspection.max_untested_days
gets one `notice` event when it crosses that age, never a second one, not even after a
restart; a point proven again starts its age afresh. Real store and engine; the clock is
injected (it runs 31 days fast when the test says so)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gw import write_config

from gateway.clock import Clock
from gateway.config import Config, load_config
from gateway.engine import Committed, Engine
from gateway.events import InputChange, Point
from gateway.inspection import Inspections
from gateway.service import store_path
from gateway.store import Outbox

DAY_NS = 86_400 * 10**9


class FastClock(Clock):
    """The real clock, `ahead_ns` ahead on both the wall and the boot clock (one boot)."""

    def __init__(self) -> None:
        super().__init__("assume-synced")
        self.ahead_ns = 0

    def now(self) -> tuple[int, int]:
        wall, mono = super().now()
        return wall + self.ahead_ns, mono + self.ahead_ns


@contextmanager
def running(cfg: Config, clock: FastClock) -> Iterator[tuple[Inspections, Outbox]]:
    """The store, the engine and the inspections of one run of the service (no drivers,
    no uplink: the test hands in the presses and the PUBACKs)."""
    outbox = Outbox(store_path(cfg), boot_id=clock.boot_id)
    outbox.open()
    points = [Point(i.id, i.name, i.location, i.kind, i.source) for i in cfg.inputs]
    hooks: list[Callable[[Committed], None]] = []

    def committed(c: Committed) -> None:
        for fn in hooks:
            fn(c)

    engine = Engine("s", "g", points, outbox=outbox, clock=clock, on_committed=committed)
    engine.start()
    insp = Inspections(cfg, engine=engine, outbox=outbox, clock=clock, tick_s=3600.0)
    hooks.append(insp.on_committed)
    insp.start()
    try:
        yield insp, outbox
    finally:
        insp.stop()
        engine.stop()
        outbox.close()


def notices(insp: Inspections, outbox: Outbox) -> list[dict[str, Any]]:
    """The notice events in the store (once the engine has committed what it was given)."""
    insp.engine.call(lambda: None).result(5.0)
    db = outbox._db
    assert db is not None
    with outbox._lock:
        rows = db.execute("SELECT payload FROM outbox WHERE event_type='notice'"
                          " ORDER BY seq").fetchall()
    return [json.loads(r[0]) for r in rows]


def config(tmp_path: Path, inputs: list[dict[str, Any]] | None = None) -> Config:
    path = write_config(tmp_path / "gw", broker_port=1, inputs=inputs)
    with path.open("a", encoding="utf-8") as f:
        f.write("\n[inspection]\nmax_untested_days = 30\n")
    return load_config(path)


def test_the_untested_notice_fires_once_per_point_and_not_again_after_a_restart(
        tmp_path: Path) -> None:
    cfg = config(tmp_path)
    clock = FastClock()
    with running(cfg, clock) as (insp, outbox):
        assert insp.tick() == [] and insp.untested() == []
        clock.ahead_ns = 29 * DAY_NS
        assert insp.tick() == []
        clock.ahead_ns = 31 * DAY_NS
        assert insp.tick() == ["gate-panic", "office-panic", "box-tamper"]
        sent = notices(insp, outbox)
        assert [(n["point"]["id"], n["detail"]["notice"]) for n in sent] == [
            ("gate-panic", "untested"), ("office-panic", "untested"),
            ("box-tamper", "untested")]
        assert sent[0]["detail"]["days"] >= 31 and sent[0]["detail"]["proven_at"] is None
        assert "alarmgw inspect start --points gate-panic" in sent[0]["detail"]["text"]
        assert [u["point"] for u in insp.status()["untested"]] == [
            "gate-panic", "office-panic", "box-tamper"]
        assert insp.tick() == []  # crossed once, noticed once
    clock.ahead_ns = 45 * DAY_NS
    with running(cfg, clock) as (insp, outbox):
        assert len(insp.untested()) == 3  # still untested: shown...
        assert insp.tick() == []  # ...but a restart does not send the notices again
        assert len(notices(insp, outbox)) == 3


def test_a_point_proven_by_an_inspection_starts_its_age_afresh(tmp_path: Path) -> None:
    cfg = config(tmp_path, inputs=[
        {"id": "gate-panic", "name": "南门一键报警", "location": "South gate", "kind": "panic",
         "gpio": 17, "contact": "NO", "pull": "up"}])
    clock = FastClock()
    with running(cfg, clock) as (insp, outbox):
        clock.ahead_ns = 40 * DAY_NS
        assert insp.tick() == ["gate-panic"]
        # An inspection proves it: pressed, restored, and its test event PUBACKed.
        insp.open(["gate-panic"], minutes=5, by="张工")
        engine = insp.engine
        engine.door(InputChange("gate-panic", True, clock.now()[1]))
        engine.door(InputChange("gate-panic", False, clock.now()[1]))
        engine.call(lambda: None).result(5.0)
        rows = outbox.take(10)
        assert [r.event_type for r in rows] == ["inspection_started", "test", "notice",
                                                "restore"]
        insp.on_delivery("puback", rows)
        report = insp.close(by="张工")
        assert [e["point"] for e in report["passed"]] == ["gate-panic"]
        assert insp.untested() == []
        clock.ahead_ns = 69 * DAY_NS
        assert insp.tick() == []
        clock.ahead_ns = 71 * DAY_NS  # 31 days after the proof
        assert insp.tick() == ["gate-panic"]
        sent = notices(insp, outbox)
        assert [n["detail"]["proven_at"] is not None for n in sent] == [False, True]
        assert sent[1]["detail"]["by"] == "张工"
    with running(cfg, clock) as (insp, outbox):
        assert insp.tick() == []
        assert len(notices(insp, outbox)) == 2

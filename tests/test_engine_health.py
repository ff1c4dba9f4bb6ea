"""The heartbeat sees the engine's state as the engine left it after some change, never mid-way.

`Service.health_doc` runs in the uplink thread while the engine thread opens and clears
faults and follows inputs. Here the test's thread plays the uplink and builds heartbeats
as fast as it can while drivers' changes churn through the engine's door: none may fail
(a dict that changed size while it was read), and each must show a state the engine was
in between two changes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gw import InProcessGateway, write_config

from gateway.clock import mono_ns
from gateway.drivers import FaultChange, InputChange
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

WAIT = 60.0
#: Faults that stay open all along: a heartbeat copies every one of them.
STEADY = 150
#: Faults opened and cleared one after the other while heartbeats are built.
CHURN = 300
#: Detail of each fault, so that copying one takes a while.
DETAIL = {f"register_{i}": i for i in range(40)}


def device_fault(device: str, active: bool) -> FaultChange:
    return FaultChange(device, f"Modbus unit {device}", f"modbus:rs485/{device}", active,
                       "no reply" if active else "", mono_ns(), detail=dict(DETAIL))


@pytest.fixture
def switch_often() -> Iterator[None]:
    """Threads take turns far more often than every 5 ms: a race shows in every run."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_heartbeats_built_while_faults_churn_are_whole_and_consistent(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole,
        switch_often: None) -> None:
    # The uplink's own heartbeat is far away: this thread builds them. (The platform
    # console takes the office button's alarms.)
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                       health_interval_s=3600)
    with InProcessGateway(cfg) as gw:
        svc, engine = gw.service, gw.service.engine
        assert engine is not None
        steady = {f"steady-{i}" for i in range(STEADY)}
        for device in sorted(steady):
            engine.door(device_fault(device, True))
        engine.call(lambda: None).result(WAIT)
        # Faults open and clear one at a time, the office button goes up and down.
        for i in range(CHURN):
            engine.door(device_fault(f"churn-{i}", True))
            engine.door(InputChange("office-panic", i % 2 == 0, mono_ns()))
            engine.door(device_fault(f"churn-{i}", False))
        done = engine.call(lambda: None)

        built, skipped = 0, []
        seen_churn = set()
        while not done.done():
            try:
                doc: dict[str, Any] = svc.health_doc()
            except RuntimeError as exc:  # what the uplink thread logs, skipping the heartbeat
                skipped.append(repr(exc))
                continue
            built += 1
            devices = [f["device"] for f in doc["faults"]]
            assert len(devices) == len(set(devices)), "a fault listed twice"
            churn = set(devices) - steady
            # Between two changes at most one churning fault is open, and every steady one.
            assert steady <= set(devices), f"steady faults missing: {steady - set(devices)}"
            assert len(churn) <= 1, churn
            seen_churn |= churn
            assert {i["id"] for i in doc["inputs"]} == {"gate-panic", "office-panic",
                                                        "box-tamper"}
        done.result(WAIT)
        assert skipped == [], f"{len(skipped)} of {built + len(skipped)} heartbeats skipped:" \
                              f" {skipped[0]}"
        assert built > 10
        assert seen_churn, "no heartbeat was built while the faults churned"
        final = svc.health_doc()
        assert {f["device"] for f in final["faults"]} == steady

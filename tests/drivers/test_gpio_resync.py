"""A lost GPIO edge: the driver re-reads every input's level and finds the change anyway.

The kernel (or a glitch) can lose an edge: the level changes and the pin's callback never
runs. Before the re-read, the debounced state then stayed wrong until the next edge, and a
latched panic button never alarmed. The simulator's `set_active(..., edge=False)` changes a
contact's level without its edge reaching the driver.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gw import InProcessGateway, write_config

from gateway.cli.status import input_lines
from gateway.config import Config, load_config
from gateway.drivers import InputChange, gpio
from gateway.drivers.gpio import GpioInputs
from hw_sim.broker import Mosquitto
from hw_sim.gpio import SimPanel, make_sim_factory
from hw_sim.platform import PlatformConsole

#: Upper bound for anything the driver does within a re-read period or two, in seconds.
WAIT = 10.0


@dataclass
class Driver:
    config: Config
    panel: SimPanel
    inputs: GpioInputs
    changes: queue.SimpleQueue[InputChange]

    def next_change(self) -> InputChange:
        return self.changes.get(timeout=WAIT)

    def status_of(self, point_id: str) -> dict[str, Any]:
        return next(s for s in self.inputs.status() if s["id"] == point_id)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    """The GPIO driver alone on the simulator's pins (the three default inputs, 30 ms
    debounce), its initial readings taken off the queue."""
    cfg = load_config(write_config(tmp_path / "gw", broker_port=1))
    factory = make_sim_factory()
    panel = SimPanel(factory, cfg.inputs)
    changes: queue.SimpleQueue[InputChange] = queue.SimpleQueue()
    inputs = GpioInputs(cfg.inputs, factory, changes.put)
    inputs.start()
    try:
        initial = [changes.get_nowait() for _ in cfg.inputs]
        assert all(c.initial and not c.active for c in initial)
        yield Driver(cfg, panel, inputs, changes)
    finally:
        inputs.stop()
        factory.close()


def test_the_re_read_runs_often_enough() -> None:
    assert 1.0 <= gpio.RESYNC_S <= 2.0


def test_a_press_whose_edge_was_lost_is_found_by_the_re_read(driver: Driver) -> None:
    # A normally-closed button latched open, and its edge never reached the driver.
    driver.panel.set_active("office-panic", True, edge=False)
    change = driver.next_change()
    assert (change.point_id, change.active, change.initial) == ("office-panic", True, False)
    st = driver.status_of("office-panic")
    assert st["active"] is True and st["level"] == "high"
    assert (st["missed_edges"], st["changes"], st["glitches"]) == (1, 1, 0)
    # The others were not touched, and nothing else was reported.
    assert [s["missed_edges"] for s in driver.inputs.status() if s["id"] != "office-panic"] \
        == [0, 0]
    assert driver.changes.empty()
    # The release comes with its edge: an ordinary change, not a missed one.
    driver.panel.release("office-panic")
    change = driver.next_change()
    assert (change.point_id, change.active) == ("office-panic", False)
    assert driver.status_of("office-panic")["missed_edges"] == 1
    assert driver.status_of("office-panic")["changes"] == 2


def test_a_lost_release_edge_is_found_too(driver: Driver) -> None:
    driver.panel.press("gate-panic")
    assert driver.next_change().active is True
    assert driver.status_of("gate-panic")["missed_edges"] == 0  # its edge came
    driver.panel.set_active("gate-panic", False, edge=False)
    change = driver.next_change()
    assert (change.point_id, change.active) == ("gate-panic", False)
    assert driver.status_of("gate-panic")["missed_edges"] == 1


def test_inputs_with_their_edges_count_no_missed_edge(driver: Driver) -> None:
    for point in ("gate-panic", "office-panic", "box-tamper"):
        driver.panel.press(point)
        assert driver.next_change().point_id == point
        driver.panel.release(point)
        assert driver.next_change().point_id == point
    assert [s["missed_edges"] for s in driver.inputs.status()] == [0, 0, 0]


# -- end to end: the alarm reaches the platform, and status/inputs say why -----------------------

def test_a_latched_button_with_a_lost_edge_alarms_and_status_counts_it(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port)
    with InProcessGateway(cfg) as gw:
        assert isinstance(gw.panel, SimPanel)
        gw.panel.set_active("office-panic", True, edge=False)
        assert console.wait_for(lambda c: len(c.events_of("alarm", "office-panic")) == 1, WAIT)
        inputs = {p["id"]: p for p in gw.service.handle_control({"cmd": "inputs"})}
        assert inputs["office-panic"]["active"] is True
        assert inputs["office-panic"]["wire"]["missed_edges"] == 1
        assert inputs["gate-panic"]["wire"]["missed_edges"] == 0
        line = next(ln for ln in input_lines(list(inputs.values())) if "office-panic" in ln)
        assert "missed edges 1" in line, line
        other = next(ln for ln in input_lines(list(inputs.values())) if "gate-panic" in ln)
        assert "missed" not in other, other
    alarm = console.events_of("alarm", "office-panic")[0]
    assert alarm["detected_at_startup"] is False
    assert [e["type"] for e in console.events] == ["alarm"]

"""An inspection window against the clock and `kill -9`: it ends at its deadline with
`inspection_ended` (timeout); killed and restarted before its deadline it goes on; killed
and restarted after it, it has ended and its report says which points were not tested."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from gw import GatewayProcess, write_config

from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

WAIT = 15.0


@pytest.fixture
def gateway(tmp_path: Path, broker: Mosquitto) -> Iterator[GatewayProcess]:
    """`alarmgw run` as a child process, with test presses sounding their links."""
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
    with cfg.open("a", encoding="utf-8") as f:
        f.write('\n[[outputs]]\nid = "strobe"\nname = "南门警灯"\ngpio = 26\n'
                '\n[[links]]\ninputs = ["gate-panic"]\noutputs = ["strobe"]\nfor_s = 60\n'
                "\n[inspection]\nsounder = true\n")
    gw = GatewayProcess(cfg)
    try:
        yield gw.start()
    finally:
        gw.stop()


def presses_of(c: PlatformConsole, point: str, iid: str) -> list[dict[str, Any]]:
    return [e for e in c.events_of("test", point) if e["detail"]["inspection"] == iid]


def proven(gw: GatewayProcess, point: str) -> bool:
    window = gw.control({"cmd": "inspect-status"})["window"]
    assert window is not None, f"the window ended before {point} was proven"
    return point in window["so_far"]["passed"]


def wait_proven(gw: GatewayProcess, point: str) -> None:
    """Until the window has seen `point` proven (its test's PUBACK is in)."""
    deadline = time.monotonic() + WAIT
    while not proven(gw, point):
        assert time.monotonic() < deadline, f"{point} not proven"
        time.sleep(0.02)  # the PUBACK is the broker's: no message tells the test


def wait_output_on(gw: GatewayProcess, output: str) -> None:
    """Until `output` is on: the linkage thread sets it after the commit, on its own time."""
    deadline = time.monotonic() + WAIT
    while not next(o for o in gw.control({"cmd": "outputs"}) if o["id"] == output)["on"]:
        assert time.monotonic() < deadline, f"{output} was not switched on"
        time.sleep(0.02)  # the output's state is only seen by asking


def test_the_window_ends_at_its_deadline_and_a_sigkill_only_before_it_is_survived(
        gateway: GatewayProcess, console: PlatformConsole) -> None:
    gw = gateway
    # 1. A window of 6 s ends by itself, reason timeout; a test press sounds its link.
    w = gw.control({"cmd": "inspect-start", "points": ["gate-panic"], "minutes": 0.1,
                    "by": "王工"})
    gw.press("gate-panic")
    assert console.wait_for(lambda c: len(presses_of(c, "gate-panic", w["id"])) == 1, WAIT)
    wait_output_on(gw, "strobe")  # inspection.sounder = true
    gw.release("gate-panic")
    assert console.wait_for(lambda c: any(e["detail"]["inspection"] == w["id"]
                                          for e in c.events_of("inspection_ended")), WAIT)
    (ended,) = console.events_of("inspection_ended")
    assert ended["detail"]["reason"] == "timeout"
    assert "ended_while_down" not in ended["detail"]
    gw.press("gate-panic")  # live again
    assert console.wait_for(lambda c: len(c.events_of("alarm", "gate-panic")) == 1, WAIT)
    gw.release("gate-panic")

    # 2. SIGKILL during a window, restart before its deadline: the window goes on.
    w = gw.control({"cmd": "inspect-start", "points": ["gate-panic", "office-panic"],
                    "minutes": 5, "by": "王工"})
    gw.press("gate-panic")
    gw.release("gate-panic")
    wait_proven(gw, "gate-panic")
    gw.kill()
    gw.start()
    window = gw.control({"cmd": "inspect-status"})["window"]
    assert window["id"] == w["id"] and window["so_far"]["passed"] == ["gate-panic"]
    gw.press("office-panic")
    assert console.wait_for(lambda c: len(presses_of(c, "office-panic", w["id"])) == 1, WAIT)
    gw.release("office-panic")
    wait_proven(gw, "office-panic")
    report = gw.control({"cmd": "inspect-stop", "by": "王工"})
    assert [e["point"] for e in report["passed"]] == ["gate-panic", "office-panic"]

    # 3. SIGKILL, restart after the deadline: it has ended; box-tamper was not tested.
    w = gw.control({"cmd": "inspect-start", "points": ["gate-panic", "box-tamper"],
                    "minutes": 0.1, "by": "王工"})
    gw.press("gate-panic")
    gw.release("gate-panic")
    wait_proven(gw, "gate-panic")
    gw.kill()
    deadline = datetime.fromisoformat(w["deadline_at"].replace("Z", "+00:00")).timestamp()
    # Restart only once the window's deadline has passed (the condition under test).
    time.sleep(max(0.0, deadline - time.time() + 0.2))
    gw.start()
    assert console.wait_for(lambda c: any(e["detail"]["inspection"] == w["id"]
                                          for e in c.events_of("inspection_report")), WAIT)
    ended = next(e for e in console.events_of("inspection_ended")
                 if e["detail"]["inspection"] == w["id"])
    assert ended["detail"]["reason"] == "timeout" and ended["detail"]["ended_while_down"]
    report = next(e for e in console.events_of("inspection_report")
                  if e["detail"]["inspection"] == w["id"])["detail"]
    assert [e["point"] for e in report["passed"]] == ["gate-panic"]
    assert [e["point"] for e in report["not_tested"]] == ["box-tamper"]
    assert gw.control({"cmd": "inspect-status"})["window"] is None
    gw.press("box-tamper")  # NC contact opened: live again, a tamper
    assert console.wait_for(lambda c: len(c.events_of("tamper", "box-tamper")) == 1, WAIT)
    # Every test press came after its window's start, in seq and in arrival.
    order = [e["id"] for e in console.events]
    for t in console.events_of("test"):
        start = next(e for e in console.events_of("inspection_started")
                     if e["detail"]["inspection"] == t["detail"]["inspection"])
        assert start["seq"] < t["seq"] and order.index(start["id"]) < order.index(t["id"])
    assert console.gaps() == {}

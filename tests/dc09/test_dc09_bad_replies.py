"""A receiver that answers junk, a wrong CRC or half a frame: the DC-09 path counts the
bad reply, keeps the event and retries; the MQTT path never waits for it, and the event
reaches the centre once the receiver answers properly again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gw import InProcessGateway
from test_dc09_path import dc09_config

from hw_sim.arc import ArcReceiver, Mode
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

WAIT = 15.0



# Which of the path's bad-reply counters each spoilt answer must raise.
SPOILT: list[tuple[Mode, set[str]]] = [
    ("garbage", {"junk_bytes", "malformed", "crc", "length"}),
    ("bad_crc", {"crc"}),
    ("truncated", {"truncated"}),
]


@pytest.mark.parametrize(("mode", "counters"), SPOILT, ids=[m for m, _ in SPOILT])
def test_spoilt_replies_are_counted_and_retried_and_never_block_mqtt(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, arc: ArcReceiver,
        *, mode: Mode, counters: set[str]) -> None:
    with InProcessGateway(dc09_config(tmp_path, broker.port, arc.port, key=True)) as gw:
        assert gw.panel is not None
        arc.mode = mode
        for _ in range(2):
            gw.panel.press("gate-panic")
            gw.panel.release("gate-panic")
        # The platform has every event while the receiver's answers are unusable.
        assert console.wait_for(lambda c: len(c.events_of("restore", "gate-panic")) == 2, WAIT)
        arc.wait_for(lambda e: e.get("answer") == mode and e.get("event_type") == "120", WAIT)
        # Counted once the link has read it (half a frame: when no rest comes in time).
        st = wait_path(gw, lambda st: bool(set(st["bad_replies"]) & counters), "the bad reply")
        assert st["queue"]["waiting"] == 4  # nothing taken for delivered
        # Retried, not given up: the same message again, still spoilt.
        arc.wait_for(lambda _: sum(e.get("answer") == mode for e in arc.events) >= 2, WAIT)
        arc.mode = "normal"
        arc.wait_for(lambda _: accepted(arc).count("3120 007") == 2, WAIT)
        # The receiver recorded the last ACK before the gateway read it: wait for the row.
        wait_path(gw, lambda st: st["queue"]["waiting"] == 0, "the queue drained")
    assert accepted(arc)[:4] == ["1120 007", "1120 007", "3120 007", "3120 007"]
    # The platform had each once (alarms may overtake restores on MQTT).
    assert sorted(e["type"] for e in console.events if e["point"]["id"] == "gate-panic") == [
        "alarm", "alarm", "restore", "restore"]


def wait_path(gw: InProcessGateway, predicate: Callable[[dict[str, Any]], bool],
              what: str) -> dict[str, Any]:
    """The DC-09 path's status once `predicate` holds (the path thread updates it)."""
    deadline = time.monotonic() + WAIT
    while True:
        st: dict[str, Any] = gw.service.status()["paths"]["dc09"]
        if predicate(st):
            return st
        assert time.monotonic() < deadline, f"the DC-09 path never showed {what}: {st}"
        time.sleep(0.02)


def accepted(arc: ArcReceiver) -> list[str]:
    """The Contact ID events the receiver answered normally, as 'QEEE ZZZ', in order,
    each sequence once."""
    seen: set[str] = set()
    out = []
    for e in arc.events:
        if (e["message_type"] == "ADM-CID" and e.get("answer") == "normal"
                and e["sequence"] not in seen):
            seen.add(e["sequence"])
            out.append(f"{e['event_qualifier']}{e['event_type']} {e['ri']}")
    return out

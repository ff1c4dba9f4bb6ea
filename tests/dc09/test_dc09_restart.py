"""Both paths down, the gateway killed with SIGKILL, then everything back: every alarm the
gateway committed reaches the platform and the receiving centre, each once.

The DC-09 queue rows are committed with the event (gateway.store.paths), and an event's
DC-09 sequence number is chosen once and kept on disk, so a message resent after a
restart is the same message to the receiver; the platform de-duplicates by event id."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gw import GatewayProcess
from test_dc09_path import GW, dc09_config

from hw_sim.arc import ArcReceiver
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

WAIT = 20.0



def wait_status(gw: GatewayProcess, predicate: Callable[[dict[str, Any]], bool],
                what: str) -> dict[str, Any]:
    """Ask the running gateway's status until `predicate` holds (the control socket is the
    only window into a child process)."""
    deadline = time.monotonic() + WAIT
    while True:
        st: dict[str, Any] = gw.control({"cmd": "status"})
        if predicate(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"gateway status never showed {what}: {st.get('paths')}")
        time.sleep(0.05)


def dc09_waiting(st: dict[str, Any]) -> int:
    return int(st["paths"]["dc09"]["queue"]["waiting"])


def new_alarms(arc: ArcReceiver) -> dict[str, str]:
    """Contact ID new panic events the receiver accepted and answered: {sequence: zone}."""
    return {e["sequence"]: e["ri"] for e in arc.events
            if e["message_type"] == "ADM-CID" and e.get("answer") == "normal"
            and e["event_qualifier"] == "1" and e["event_type"] in ("120", "122")}


def test_sigkill_with_both_paths_down_then_both_back_every_alarm_on_both(
        tmp_path: Path, persistent: tuple[Mosquitto, PlatformConsole],
        arc: ArcReceiver) -> None:
    broker, console = persistent
    cfg = dc09_config(tmp_path, broker.port, arc.port, key=True)
    gw = GatewayProcess(cfg).start()
    try:
        assert console.wait_for(lambda c: c.status.get(GW, {}).get("state") == "online", WAIT)
        broker.kill()
        arc.mode = "down"
        presses = ["gate-panic", "office-panic", "gate-panic", "gate-panic", "office-panic"]
        for n, point in enumerate(presses, 1):
            gw.press(point)
            gw.release(point)
            # Committed (and queued for DC-09) before the next press: each is one alarm
            # and one restore on the DC-09 queue.
            wait_status(gw, lambda st, n=n: dc09_waiting(st) >= 2 * n,  # type: ignore[misc]
                        f"{2 * n} events queued for DC-09")
        gw.kill()  # both paths down: nothing of this has left the gateway

        gw.start()  # restarted, both still down: the queue survived
        st = wait_status(gw, lambda st: dc09_waiting(st) >= 2 * len(presses),
                         "the DC-09 queue after the restart")
        assert st["paths"]["dc09"]["queue"]["oldest_event_id"] is not None
        gw.press("gate-panic")  # one more while both paths are down, after the restart
        presses.append("gate-panic")
        wait_status(gw, lambda st: dc09_waiting(st) >= 2 * len(presses) - 1,
                    "the alarm pressed after the restart")

        broker.start()
        arc.mode = "normal"
        arc.wait_for(lambda _: len(new_alarms(arc)) >= len(presses), WAIT)
        assert console.wait_for(lambda c: len(c.events_of("alarm")) >= len(presses), WAIT)
        wait_status(gw, lambda st: dc09_waiting(st) == 0, "the DC-09 queue drained")
    finally:
        gw.stop()

    alarms = console.events_of("alarm")
    ids = [e["id"] for e in alarms]
    assert len(ids) == len(set(ids)) == len(presses), "an alarm reached the platform twice"
    assert sorted(e["point"]["id"] for e in alarms) == sorted(presses)
    # At the centre: every alarm once after de-duplication by sequence, with its zone.
    zones = sorted(new_alarms(arc).values())
    assert zones == sorted("007" if p == "gate-panic" else "008" for p in presses)
    restores = {e["sequence"] for e in arc.events if e["message_type"] == "ADM-CID"
                and e.get("answer") == "normal" and e["event_qualifier"] == "3"
                and e["ri"] in ("007", "008")}
    assert len(restores) == len(presses) - 1  # the last press was never released

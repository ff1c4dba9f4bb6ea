"""Inspection (巡检): a press of a point under inspection is a `test`, never an alarm, and
reaches the platform after the window's start; every other point stays live; the window
ends at its deadline or by command, with a report; forged and replayed commands change
nothing; a Modbus point whose module falls silent fails with the fault."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from gw import ESCALATION_KEY as KEY
from gw import InProcessGateway, escalation_config
from modbus_cfg import device, modbus_input, tcp_bus, write_modbus_config

from gateway.uplink.commands import sign
from gateway.uplink.protocol import load_schema
from hw_sim.broker import Mosquitto
from hw_sim.modbus import SimModbus
from hw_sim.modem import SimModem
from hw_sim.platform import PlatformConsole

SITE, GWID = "test-school", "gw-test"
WAIT = 15.0


def validate(doc: object) -> None:
    jsonschema.validate(doc, load_schema("event"),
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def wait_until(pred: Callable[[], bool], timeout: float = WAIT) -> bool:
    """For state no message announces (an output's switchings): look again every 20 ms."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def result_of(console: PlatformConsole, cid: str) -> dict[str, Any]:
    assert console.wait_for(lambda c: cid in c.results, WAIT), f"no result for {cid}"
    return console.results[cid]


def events(console: PlatformConsole, etype: str) -> list[dict[str, Any]]:
    return console.events_of(etype)


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[SimModem]:
    with SimModem(tmp_path / "modem") as m:
        yield m


@pytest.fixture
def police(tmp_path: Path, broker: Mosquitto, modem: SimModem
           ) -> Iterator[tuple[InProcessGateway, PlatformConsole]]:
    """Signed commands, an ack lamp, a strobe linked to both panic buttons, escalation of an
    alarm nobody acknowledges within 1 s; a platform that acknowledges nothing."""
    cfg = escalation_config(tmp_path, broker.port, modem.port, uplink_down_s=60.0)
    text = cfg.read_text(encoding="utf-8")
    text = text.replace("\n[commands]\n", '\n[commands]\nack_lamp = "ack-lamp"\n', 1)
    text += ('\n[[outputs]]\nid = "ack-lamp"\nname = "接警确认灯"\ngpio = 25\n'
             '\n[[outputs]]\nid = "strobe"\nname = "南门警灯"\ngpio = 26\n'
             '\n[[links]]\ninputs = ["gate-panic", "office-panic"]\noutputs = ["strobe"]\n'
             'for_s = 60\n')
    cfg.write_text(text, encoding="utf-8")
    with PlatformConsole(broker.host, broker.port, persistent=False,
                         command_key=KEY) as console, InProcessGateway(cfg) as gw:
        assert console.wait_for(
            lambda c: c.status.get(f"{SITE}/{GWID}", {}).get("state") == "online", WAIT)
        yield gw, console


def test_a_press_under_inspection_is_a_test_and_a_live_point_still_alarms_and_escalates(
        police: tuple[InProcessGateway, PlatformConsole]) -> None:
    gw, console = police
    assert gw.panel is not None and gw.service.outputs is not None
    outputs = gw.service.outputs
    start = sign({"v": 1, "id": "c-inspect-1", "op": "inspect_start",
                  "issued_at": _now(), "args": {"points": ["gate-panic"], "minutes": 5,
                                                "operator": "李工"}}, KEY)
    console.send_raw(SITE, GWID, json.dumps(start, ensure_ascii=False).encode("utf-8"))
    res = result_of(console, "c-inspect-1")
    assert res["ok"] is True, res
    iid = res["result"]["id"]
    assert res["result"]["points"] == ["gate-panic"]

    lamp = outputs.status_of("ack-lamp")["switchings"]
    strobe = outputs.status_of("strobe")["switchings"]
    gw.panel.press("gate-panic")
    assert console.wait_for(lambda c: len(c.events_of("test", "gate-panic")) == 1, WAIT)
    # The platform's broker has it: the ack lamp blinks once (on, then off again).
    assert wait_until(lambda: outputs.status_of("ack-lamp")["switchings"] >= lamp + 2)
    assert outputs.status_of("ack-lamp")["on"] is False
    gw.panel.release("gate-panic")
    assert console.wait_for(lambda c: len(c.events_of("restore", "gate-panic")) == 1, WAIT)
    # No sounder for a test (inspection.sounder is false): the linked strobe stays off.
    assert outputs.status_of("strobe")["switchings"] == strobe

    # A real emergency during the window: one press on a live point.
    gw.panel.press("office-panic")
    assert console.wait_for(lambda c: len(c.events_of("alarm", "office-panic")) == 1, WAIT)
    assert console.wait_for(lambda c: any(e["detail"]["step"] == "sounder_on"
                                          for e in c.events_of("escalation")), WAIT)
    assert outputs.status_of("strobe")["on"] is True
    gw.panel.release("office-panic")

    stop = console.send_command(SITE, GWID, "inspect_stop", {"operator": "李工"})
    report = result_of(console, stop)["result"]
    assert console.wait_for(lambda c: len(c.events_of("inspection_report")) == 1, WAIT)

    started = events(console, "inspection_started")
    (test,) = events(console, "test")
    (alarm,) = events(console, "alarm")
    (ended,) = events(console, "inspection_ended")
    assert [e["detail"]["inspection"] for e in started] == [iid]
    assert test["detail"]["inspection"] == iid and test["detail"]["press"] == 1
    assert events(console, "restore")[0]["detail"]["inspection"] == iid
    assert console.events_of("alarm", "gate-panic") == []
    # In order: the window's start reached the platform before its first test press.
    order = [e["id"] for e in console.events]
    assert order.index(started[0]["id"]) < order.index(test["id"])
    assert started[0]["seq"] < test["seq"] < ended["seq"]
    assert started[0]["detail"]["by"] == "platform:李工"
    # Only the live point's alarm escalated.
    assert {e["detail"]["for_event"] for e in events(console, "escalation")} == {alarm["id"]}
    assert ended["detail"]["reason"] == "stopped"
    assert [e["point"] for e in report["passed"]] == ["gate-panic"]
    assert report["failed"] == report["not_tested"] == []
    assert events(console, "inspection_report")[0]["detail"] == report
    for doc in console.events:
        validate(doc)

    # Replayed, forged and unsigned commands are refused, and change nothing.
    console.send_raw(SITE, GWID, json.dumps(start, ensure_ascii=False).encode("utf-8"))
    forged = sign({"v": 1, "id": "c-forged", "op": "inspect_start", "issued_at": _now(),
                   "args": {"operator": "mallory"}}, bytes(32))
    console.send_raw(SITE, GWID, json.dumps(forged).encode("utf-8"))
    unsigned = console.send_command(SITE, GWID, "inspect_start", {"operator": "x"},
                                    sign_it=False)
    bad = console.send_command(SITE, GWID, "inspect_start",
                               {"operator": "x", "points": ["no-such-point"]})
    assert console.wait_for(lambda c: sum(1 for r in c.results.values()
                                          if r.get("op") == "inspect_start") == 4, WAIT)
    codes = {cid: console.results[cid]["code"]
             for cid in ("c-forged", unsigned, bad)}
    assert codes == {"c-forged": "bad_signature", unsigned: "unsigned", bad: "bad_args"}
    assert "no-such-point" in console.results[bad]["reason"]
    replayed = [r for r in console.raw if r.topic.endswith("/cmd/result")
                and json.loads(r.payload).get("code") == "replayed"]
    assert len(replayed) == 1
    assert gw.service.handle_control({"cmd": "inspect-status"})["window"] is None
    assert len(events(console, "inspection_started")) == 1


def test_a_modbus_point_whose_module_falls_silent_fails_with_the_fault(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, buses=[tcp_bus()],
        devices=[device("io1", 1, bus="lan")],
        inputs=[modbus_input("hall-panic", "io1", 0)],
        gpio_inputs=[{"id": "gate-panic", "name": "南门一键报警", "location": "South gate",
                      "kind": "panic", "gpio": 17, "contact": "NO", "pull": "up"},
                     {"id": "box-tamper", "name": "报警箱防拆", "location": "Guard room",
                      "kind": "tamper", "gpio": 22, "contact": "NC", "pull": "up"}],
        debounce_ms=0)
    with InProcessGateway(cfg) as gw:
        assert gw.service.modbus is not None and gw.service.modbus.wait_first_cycle(WAIT)
        sim = gw.service.modbus_sim
        assert isinstance(sim, SimModbus) and gw.panel is not None
        window = gw.service.handle_control({"cmd": "inspect-start", "minutes": 5,
                                            "by": "张工"})
        assert window["points"] == ["gate-panic", "box-tamper", "hall-panic"]
        # hall-panic is pressed and restored, then its module falls silent.
        sim.press("hall-panic")
        assert console.wait_for(lambda c: len(c.events_of("test", "hall-panic")) == 1, WAIT)
        sim.release("hall-panic")
        assert console.wait_for(lambda c: len(c.events_of("restore", "hall-panic")) == 1,
                                WAIT)
        gw.panel.press("gate-panic")
        gw.panel.press("gate-panic")  # already pressed: no second event
        assert console.wait_for(lambda c: len(c.events_of("test", "gate-panic")) == 1, WAIT)
        gw.panel.release("gate-panic")
        gw.panel.press("gate-panic")  # a second press within the window
        assert console.wait_for(lambda c: len(c.events_of("test", "gate-panic")) == 2, WAIT)
        gw.panel.release("gate-panic")
        assert console.wait_for(lambda c: len(c.events_of("restore", "gate-panic")) == 2,
                                WAIT)
        sim.set_fault("io1", "silent")
        assert console.wait_for(lambda c: len(c.events_of("fault", "io1")) == 1, WAIT)
        assert wait_until(lambda: gw.service.handle_control(
            {"cmd": "inspect-status"})["window"]["so_far"]["passed"] == ["gate-panic"])
        report = gw.service.handle_control({"cmd": "inspect-stop", "by": "张工"})
        assert console.wait_for(lambda c: len(c.events_of("inspection_report")) == 1, WAIT)
        sim.set_fault("io1", "ok")
    assert [(e["point"], e["presses"]) for e in report["passed"]] == [("gate-panic", 2)]
    assert "pressed 2 times" in report["passed"][0]["note"]
    (failed,) = report["failed"]
    assert failed["point"] == "hall-panic"
    assert failed["fault"]["device"] == "io1" and "does not answer" in failed["fault"]["reason"]
    assert "in fault" in failed["reason"]
    assert [e["point"] for e in report["not_tested"]] == ["box-tamper"]
    presses = console.events_of("test", "gate-panic")
    assert [e["detail"]["press"] for e in presses] == [1, 2]
    assert console.events_of("alarm") == []
    for doc in console.events:
        validate(doc)


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"

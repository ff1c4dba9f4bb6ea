"""The DC-09 path in the running service, against the ARC simulator (pysiaalarm) and a real
Mosquitto: a press reaches both the receiving centre and the platform; either path down,
the other still delivers, the failed one becomes a fault carried by the other, and its
backlog follows when it returns, in order, each event once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from gw import ARC_KEY, InProcessGateway, write_config

from gateway.dc09 import path as path_module
from gateway.dc09.path import PATH
from gateway.uplink.protocol import load_schema
from hw_sim.arc import ArcReceiver, write_key_file
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

WAIT = 15.0
KEY = ARC_KEY
GW = "test-school/gw-test"


def dc09_config(tmp_path: Path, broker_port: int, arc_port: int, *, key: bool = False,
                path_fail_s: float = 5.0, extra: str = "") -> Path:
    cfg = write_config(tmp_path / "gw", broker_port=broker_port, debounce_ms=0)
    lines = ["", "[paths]", f"path_fail_s = {path_fail_s}", "", "[paths.dc09]",
             'host = "127.0.0.1"', f"port = {arc_port}", 'account = "1234"', 'receiver = "1"',
             'line = "2"', "ack_timeout_s = 0.5", "retry_max_s = 1", "supervision_s = 3600",
             'zones = { gate-panic = 7, office-panic = 8, box-tamper = 9 }',
             'silent = ["office-panic"]']
    if key:
        key_file = write_key_file(tmp_path / "dc09.key", KEY)
        lines.append(f'key_file = "{key_file}"')
    with cfg.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n" + extra)
    return cfg



def cid(e: dict[str, Any]) -> str:
    return f"{e['event_qualifier']}{e['event_type']} {e['partition']} {e['ri']}"


def received(arc: ArcReceiver) -> list[str]:
    return [cid(e) for e in arc.events if e["message_type"] == "ADM-CID"
            and e.get("answer", "normal") == "normal"]


def test_a_press_reaches_the_receiving_centre_encrypted_and_the_platform(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, arc: ArcReceiver) -> None:
    with InProcessGateway(dc09_config(tmp_path, broker.port, arc.port, key=True)) as gw:
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        alarm = arc.wait_for(lambda e: e.get("event_type") == "120", WAIT)
        assert (alarm["account"], alarm["event_qualifier"], alarm["ri"], alarm["partition"],
                alarm["encrypted"], alarm["receiver"], alarm["line"]) == (
            "1234", "1", "007", "01", True, "R1", "L2")
        assert console.wait_for(lambda c: len(c.events_of("alarm", "gate-panic")) == 1, WAIT)
        gw.panel.release("gate-panic")
        arc.wait_for(lambda e: e.get("event_qualifier") == "3" and e["ri"] == "007", WAIT)
        gw.panel.press("office-panic")  # silent panic
        arc.wait_for(lambda e: e.get("event_type") == "122" and e["ri"] == "008", WAIT)
        assert console.wait_for(lambda c: len(c.events_of("restore", "gate-panic")) == 1, WAIT)
        st = gw.service.status()["paths"]["dc09"]
        assert st["acked"] >= 3 and st["last_ack_at"] is not None and st["rtt_ms"] is not None
        assert st["queue"]["waiting"] == 0 and st["encrypted"] is True
        # Every event the path carried is off its queue; sequences were distinct.
        seqs = [e["sequence"] for e in arc.events if e["message_type"] == "ADM-CID"]
        assert len(seqs) == len(set(seqs)) == 3
    assert received(arc) == ["1120 01 007", "3120 01 007", "1122 01 008"]


def test_broker_down_alarms_reach_the_centre_with_a_path_fault_then_the_platform_gets_all(
        tmp_path: Path, persistent: tuple[Mosquitto, PlatformConsole], arc: ArcReceiver) -> None:
    broker, console = persistent
    with InProcessGateway(dc09_config(tmp_path, broker.port, arc.port)) as gw:
        assert gw.panel is not None
        assert console.wait_for(lambda c: c.status.get(GW, {}).get("state") == "online", WAIT)
        broker.kill()  # the platform's session stays in the broker's database
        gw.panel.press("gate-panic")
        arc.wait_for(lambda e: e.get("event_type") == "120", WAIT)
        # The MQTT path has not delivered for path_fail_s: a fault, on the DC-09 path.
        arc.wait_for(lambda e: e.get("event_type") == "354" and e["event_qualifier"] == "1",
                     WAIT)
        assert gw.service.status()["paths"]["faults"]["mqtt"] is True
        gw.panel.release("gate-panic")
        arc.wait_for(lambda e: e.get("event_qualifier") == "3" and e["ri"] == "007", WAIT)
        broker.start()
        arc.wait_for(lambda e: e.get("event_type") == "354" and e["event_qualifier"] == "3",
                     WAIT)
        assert console.wait_for(
            lambda c: [e["type"] for e in c.ordered(GW)][:1] == ["alarm"]
            and {"restore", "fault", "fault_cleared"} <= {e["type"] for e in c.ordered(GW)},
            WAIT)
        ids = [e["id"] for e in console.events]
        assert len(ids) == len(set(ids)), "an event reached the platform twice"
        assert console.gaps() == {}
        faults = [e for e in console.events_of("fault") if e["point"]["id"] == "path-mqtt"]
        assert len(faults) == 1
        cleared = [e for e in console.events_of("fault_cleared")
                   if e["point"]["id"] == "path-mqtt"]
        for doc in faults + cleared:  # the platform's contract holds for path faults too
            jsonschema.validate(doc, load_schema("event"),
                                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_receiver_down_the_platform_still_gets_alarms_and_the_backlog_follows_in_order(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, arc: ArcReceiver) -> None:
    with InProcessGateway(dc09_config(tmp_path, broker.port, arc.port)) as gw:
        assert gw.panel is not None
        arc.mode = "down"
        for _ in range(3):
            gw.panel.press("gate-panic")
            gw.panel.release("gate-panic")
        assert console.wait_for(lambda c: len(c.events_of("restore", "gate-panic")) == 3, WAIT)
        # The DC-09 path has failed: a fault, on the MQTT path.
        assert console.wait_for(
            lambda c: any(e["point"]["id"] == "path-dc09" for e in c.events_of("fault")), WAIT)
        assert gw.service.outbox.path_stats(PATH).waiting >= 6
        arc.mode = "nak"  # answering, but refusing: still failing, nothing delivered
        arc.wait_answered("NAK", 2, WAIT)
        arc.mode = "normal"
        arc.wait_for(lambda e: e.get("event_type") == "354" and e["event_qualifier"] == "1",
                     WAIT)
        assert console.wait_for(
            lambda c: any(e["point"]["id"] == "path-dc09" for e in c.events_of("fault_cleared")),
            WAIT)
        arc.wait_for(lambda _: received(arc).count("3120 01 007") == 3, WAIT)
    got = [c for c in received(arc) if c.endswith(" 007")]
    # Alarms first (they overtake restores, as on MQTT), each once, in commit order within
    # a kind; the fault of the DC-09 path itself went to the platform, and to the centre.
    assert got == ["1120 01 007"] * 3 + ["3120 01 007"] * 3
    seqs = [e["sequence"] for e in arc.events if e["message_type"] == "ADM-CID"
            and e.get("answer", "normal") == "normal"]
    assert len(seqs) == len(set(seqs))


def test_test_alarm_on_the_dc09_path_alone(tmp_path: Path, broker: Mosquitto,
                                           console: PlatformConsole, arc: ArcReceiver) -> None:
    with InProcessGateway(dc09_config(tmp_path, broker.port, arc.port)) as gw:
        res = gw.service.handle_control({"cmd": "test-alarm", "point": "box-tamper",
                                         "path": "dc09"})
        assert res["ok"] is True and res["outcome"] == "ack" and res["zone"] == 9
        event = arc.wait_for(lambda e: e.get("event_type") == "601", WAIT)
        assert event["ri"] == "009" and event["event_qualifier"] == "1"
        arc.mode = "silent"
        res = gw.service.handle_control({"cmd": "test-alarm", "point": "box-tamper",
                                         "path": "dc09"})
        assert res["ok"] is False and res["outcome"] == "timeout"
    assert console.events_of("test") == []  # the path test is not an event


def test_an_unexpected_error_on_the_path_is_a_failure_retried_not_a_dead_thread(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, arc: ArcReceiver,
        *, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real = path_module.for_event
    calls: list[str] = []

    def broken_once(doc: dict[str, Any], s: Any) -> Any:
        calls.append(doc["type"])
        if len(calls) == 1:
            raise RuntimeError("a bug in the mapping")
        return real(doc, s)

    monkeypatch.setattr(path_module, "for_event", broken_once)
    with InProcessGateway(dc09_config(tmp_path, broker.port, arc.port)) as gw:
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        # A thread that died of it would never send the alarm; this one backs off, retries.
        arc.wait_for(lambda e: e.get("event_type") == "120", WAIT)
    assert calls[:2] == ["alarm", "alarm"]  # the same alarm, taken again after the error
    assert "DC-09 path: unexpected error; retrying" in caplog.text
    assert "works again" in caplog.text  # it counted as failing meanwhile

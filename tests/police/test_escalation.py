"""Escalation: an alarm nobody acknowledges sends an SMS (and sounds the sounder) by itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gw import DUTY_NUMBER as DUTY
from gw import ESCALATION_KEY as KEY
from gw import InProcessGateway
from gw import escalation_config as config

from hw_sim.broker import Mosquitto
from hw_sim.modem import SimModem
from hw_sim.netfault import NetFault
from hw_sim.platform import PlatformConsole


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[SimModem]:
    with SimModem(tmp_path / "modem") as m:
        yield m


def escalations(c: PlatformConsole) -> list[dict[str, Any]]:
    return [e for e in c.events_of("escalation")]


def test_no_ack_sends_an_sms_with_the_point_name_and_records_it(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, modem: SimModem) -> None:
    with InProcessGateway(config(tmp_path, broker.port, modem.port)) as gw:
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        (sms,) = modem.wait_for_messages(1, timeout=15)
        assert console.wait_for(lambda c: len(escalations(c)) == 2, 10)
        sounder = gw.service.outputs.status_of("sounder") if gw.service.outputs else {}
    assert sounder["on"] is True
    assert sms.number == DUTY
    assert "南门门卫室一键报警" in sms.text and "平台未确认接警" in sms.text
    alarm = console.events_of("alarm")[0]
    sounder_on, step = escalations(console)
    assert sounder_on["detail"]["step"] == "sounder_on"
    assert sounder_on["detail"]["output"] == "sounder"
    assert step["detail"]["step"] == "sms_sent"
    assert step["detail"]["reason"] == "no_ack"
    assert step["detail"]["for_event"] == alarm["id"]
    assert step["detail"]["to"].endswith("8000") and DUTY not in json.dumps(step)
    assert step["point"]["id"] == "gate-panic"


def test_an_ack_in_time_stops_the_escalation(
        tmp_path: Path, broker: Mosquitto, modem: SimModem) -> None:
    with PlatformConsole(broker.host, broker.port, persistent=False, command_key=KEY,
                         auto_ack_s=0.0) as console, \
            InProcessGateway(config(tmp_path, broker.port, modem.port,
                                    ack_timeout_s=3.0)) as gw:
        assert console.wait_for(lambda c: bool(c.status), 10)
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        assert console.wait_for(lambda c: any(r.get("op") == "ack" and r.get("ok")
                                              for r in c.results.values()), 10)
        esc = gw.service.escalation
        assert esc is not None
        assert esc.pending() == []
        # Then a drill, which is not an alarm: never escalated either.
        gw.service.handle_control({"cmd": "test-alarm", "point": "gate-panic", "drill": True})
        assert console.wait_for(lambda c: len(c.events_of("drill")) == 1, 10)
    assert modem.messages == []
    assert escalations(console) == []


def test_an_alarm_the_operator_leaves_unanswered_escalates_and_the_others_do_not(
        tmp_path: Path, broker: Mosquitto, modem: SimModem) -> None:
    with PlatformConsole(broker.host, broker.port, persistent=False, command_key=KEY,
                         auto_ack_s=0.0,
                         answer=lambda doc: doc["point"]["id"] != "gate-panic") as console, \
            InProcessGateway(config(tmp_path, broker.port, modem.port,
                                    ack_timeout_s=2.0, uplink_down_s=30.0)) as gw:
        assert console.wait_for(lambda c: bool(c.status), 10)
        assert gw.panel is not None
        gw.panel.press("office-panic")
        gw.panel.press("gate-panic")
        (sms,) = modem.wait_for_messages(1, timeout=15)
        assert console.wait_for(lambda c: len(escalations(c)) == 2, 10)
    assert "平台未确认接警" in sms.text
    gate, = console.events_of("alarm", "gate-panic")
    office, = console.events_of("alarm", "office-panic")
    assert console.unanswered == [gate["id"]]
    assert set(console.acks_sent) == {office["id"]}
    assert {e["detail"]["for_event"] for e in escalations(console)} == {gate["id"]}
    assert {e["detail"]["reason"] for e in escalations(console)} == {"no_ack"}


def test_uplink_down_while_an_alarm_waits_escalates(
        tmp_path: Path, broker: Mosquitto, modem: SimModem) -> None:
    with InProcessGateway(config(tmp_path, broker.port, modem.port, ack_timeout_s=600.0)) as gw:
        assert gw.panel is not None and gw.service.uplink is not None
        assert gw.service.uplink.wait_for_drained(10)
        broker.kill()
        gw.panel.press("gate-panic")
        (sms,) = modem.wait_for_messages(1, timeout=15)
        assert "报警网关与平台断开" in sms.text
        assert gw.service.escalation is not None
        (pending,) = gw.service.escalation.pending()
        assert pending["escalated"] and not pending["delivered"]


def test_an_alarm_on_a_half_open_link_escalates_before_the_link_is_declared_dead(
        tmp_path: Path, persistent: tuple[Mosquitto, PlatformConsole],
        modem: SimModem) -> None:
    """The link black-holes: the connection looks up, the alarm is published and no PUBACK
    comes. With a 60 s keepalive the gateway would declare the link dead only after 90 s;
    the escalation counts the alarm's own wait and sends the SMS after uplink_down_s."""
    broker, console = persistent
    with NetFault(broker.host, broker.port) as proxy, InProcessGateway(config(
            tmp_path, proxy.port, modem.port, broker={"keepalive_s": 60},
            ack_timeout_s=600.0, uplink_down_s=1.0)) as gw:
        assert gw.panel is not None and gw.service.uplink is not None
        uplink = gw.service.uplink
        assert uplink.wait_for_drained(10)
        proxy.blackhole()
        gw.panel.press("gate-panic")
        (sms,) = modem.wait_for_messages(1, timeout=15)
        assert "报警网关与平台断开" in sms.text
        assert uplink.state()["connected"]  # the gateway has not noticed the link yet
        # The half-open connection is reset and the path returns: the alarm and every
        # step of the escalation reach the platform.
        proxy.cut()
        proxy.pass_()
        assert console.wait_for(lambda c: {"sounder_on", "sms_sent"} <= {
            e["detail"]["step"] for e in escalations(c)}, 30)
        alarm = console.events_of("alarm")[0]
        assert all(e["detail"]["reason"] == "uplink_down" and e["detail"]["for_event"]
                   == alarm["id"] for e in escalations(console))


def test_a_failing_modem_is_a_fault_not_a_crash(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, modem: SimModem) -> None:
    modem.set_fault("silent")
    with InProcessGateway(config(tmp_path, broker.port, modem.port)) as gw:
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        assert console.wait_for(lambda c: any(f["point"]["id"] == "modem"
                                              for f in c.events_of("fault")), 30)
        assert console.wait_for(lambda c: len(escalations(c)) == 2, 10)
        status = gw.service.status()
    steps = [e["detail"]["step"] for e in escalations(console)]
    # The sounder went on first, and stays on though the SMS failed.
    assert steps == ["sounder_on", "sms_failed"]
    assert [o["on"] for o in status["outputs"] if o["id"] == "sounder"] == [True]
    fault = next(f for f in console.events_of("fault") if f["point"]["id"] == "modem")
    assert fault["point"]["id"] == "modem" and "SMS" in fault["detail"]["reason"]
    assert "modem" in [f["device"] for f in status["faults"]]
    assert status["police"]["escalation"]["modem_faulty"] is True
    assert status["police"]["escalation"]["escalated_total"] == 1


def test_the_modem_is_supervised_without_any_alarm(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, modem: SimModem) -> None:
    modem.set_fault("no_sim")
    cfg = config(tmp_path, broker.port, modem.port)
    cfg.write_text(cfg.read_text().replace("sms_timeout_s = 5", "sms_timeout_s = 5\n"
                                           "check_interval_s = 5"))
    with InProcessGateway(cfg):
        assert console.wait_for(lambda c: any(f["point"]["id"] == "modem"
                                              for f in c.events_of("fault")), 20)
        fault = next(f for f in console.events_of("fault") if f["point"]["id"] == "modem")
        assert "SIM" in fault["detail"]["reason"]
        modem.set_fault("none")
        assert console.wait_for(lambda c: any(f["point"]["id"] == "modem"
                                              for f in c.events_of("fault_cleared")), 20)
    assert console.events_of("alarm") == [] and modem.messages == []


def test_a_restart_keeps_watching_the_alarms_that_wait(
        tmp_path: Path, broker: Mosquitto, modem: SimModem) -> None:
    """An alarm committed while the uplink is down, then the gateway restarts (a power
    blip, a crash): the new process escalates it as the old one would have."""
    cfg = config(tmp_path, broker.port, modem.port, ack_timeout_s=600.0, uplink_down_s=600.0)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None and gw.service.uplink is not None
        assert gw.service.uplink.wait_for_drained(10)
        broker.kill()
        gw.panel.press("gate-panic")
        engine = gw.service.engine
        assert engine is not None
        engine.call(lambda: None).result(10)
        assert modem.messages == []  # 600 s: nothing escalates in this process
    # Restarted with the escalation's timer shorter: it counts from the alarm's commit.
    cfg = config(tmp_path, broker.port, modem.port, ack_timeout_s=600.0, uplink_down_s=1.0)
    with InProcessGateway(cfg) as gw:
        assert gw.service.escalation is not None
        (pending,) = gw.service.escalation.pending()
        assert not pending["delivered"] and pending["point"] == "gate-panic"
        (sms,) = modem.wait_for_messages(1, timeout=15)
        assert "报警网关与平台断开" in sms.text


def test_a_restart_does_not_watch_alarms_already_acknowledged_or_escalated(
        tmp_path: Path, persistent: tuple[Mosquitto, PlatformConsole],
        modem: SimModem) -> None:
    broker, console = persistent
    cfg = config(tmp_path, broker.port, modem.port, ack_timeout_s=1.0, uplink_down_s=600.0)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None
        gw.panel.press("gate-panic")  # nobody acknowledges: it escalates (no_ack)
        modem.wait_for_messages(1, timeout=15)
        assert console.wait_for(lambda c: any(e["detail"]["step"] == "sms_sent"
                                              for e in escalations(c)), 15)
    with InProcessGateway(cfg) as gw:
        assert gw.service.escalation is not None
        assert gw.service.escalation.pending() == []


def test_a_restart_keeps_watching_a_delivered_alarm_nobody_answered(
        tmp_path: Path, broker: Mosquitto, modem: SimModem, console: PlatformConsole) -> None:
    """Delivered rows are pruned beyond store.keep_acked, but not an alarm the platform has
    not acknowledged: after a restart it is found and still escalates for want of an ack."""
    store = {"keep_acked": 0}
    with InProcessGateway(config(tmp_path, broker.port, modem.port, store=store,
                                 ack_timeout_s=600.0)) as gw:
        assert gw.panel is not None and gw.service.uplink is not None
        gw.panel.press("gate-panic")
        gw.panel.release("gate-panic")
        gw.panel.press("office-panic")
        gw.panel.release("office-panic")
        engine = gw.service.engine
        assert engine is not None
        engine.call(lambda: None).result(10)
        assert gw.service.uplink.wait_for_drained(10)
        # Both restores are gone; both alarms, unanswered, are kept.
        assert gw.service.outbox.stats().acked_kept == 2
        assert modem.messages == []
    with InProcessGateway(config(tmp_path, broker.port, modem.port, store=store,
                                 ack_timeout_s=5.0)) as gw:
        assert gw.service.escalation is not None
        pending = gw.service.escalation.pending()
        assert sorted(p["point"] for p in pending) == ["gate-panic", "office-panic"]
        assert all(p["delivered"] for p in pending)
        sms = modem.wait_for_messages(2, timeout=20)
        assert len(sms) == 2

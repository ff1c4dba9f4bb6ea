"""The platform's `ack` stops an escalation at once: neither the lamp it lights nor another
command in progress delays it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gw import DEFAULT_INPUTS, DUTY_NUMBER, InProcessGateway
from gw import ESCALATION_KEY as KEY
from modbus_cfg import device, rtu_bus, write_modbus_config

from gateway.clock import mono_ns
from hw_sim.broker import Mosquitto
from hw_sim.modbus import SimModbus
from hw_sim.modem import SimModem
from hw_sim.platform import PlatformConsole

SITE, GWID = "test-school", "gw-test"
#: Upper bound for anything that takes milliseconds on loopback, in seconds.
WAIT = 20.0
ACK_TIMEOUT_S = 2.0
#: The police answer half a second before the gateway would escalate.
ACK_AFTER_S = ACK_TIMEOUT_S - 0.5
#: The lamp's Modbus module answers this late (a slow relay module on a long RS-485 line).
LAMP_DELAY_S = 1.5
#: The camera's timeout: a snapshot of a camera that does not answer takes this long.
CAMERA_TIMEOUT_S = 4.0


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[SimModem]:
    with SimModem(tmp_path / "modem") as m:
        yield m


def config(tmp_path: Path, broker_port: int, modem_port: str) -> Path:
    """A GPIO sounder, the acknowledgement lamp on a coil of a Modbus relay module, a
    camera, signed commands and escalation by sounder and SMS."""
    key_file = tmp_path / "k"
    key_file.write_text(KEY.hex())
    key_file.chmod(0o600)
    cam = {"id": "gate-cam", "name": "南门摄像机", "driver": "sim", "username": "admin",
           "password": "sim-pass", "width": 160, "height": 90,
           "timeout_s": CAMERA_TIMEOUT_S}
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker_port, debounce_ms=0, gpio_inputs=DEFAULT_INPUTS,
        # The module's late replies are replies, not time-outs.
        buses=[rtu_bus(timeout_ms=3000)], devices=[device("lamps", 2)], inputs=[],
        outputs=[{"id": "sounder", "name": "门卫室警号", "gpio": 24},
                 {"id": "ack-lamp", "name": "接警确认灯",
                  "modbus": {"device": "lamps", "address": 0}}],
        cameras=[cam])
    lines = ["", "[commands]", f'key_file = "{key_file}"', 'ack_lamp = "ack-lamp"',
             "", "[escalation]", f"ack_timeout_s = {ACK_TIMEOUT_S}", "uplink_down_s = 30.0",
             'sounder = "sounder"', f"sms_to = {json.dumps([DUTY_NUMBER])}",
             "", "[escalation.modem]", f'port = "{modem_port}"', "sms_timeout_s = 5"]
    with cfg.open("a") as f:
        f.write("\n".join(lines) + "\n")
    return cfg


def escalations(c: PlatformConsole) -> list[dict[str, Any]]:
    return c.events_of("escalation")


def test_an_ack_just_before_the_timeout_stops_the_escalation_behind_a_slow_lamp_and_command(
        tmp_path: Path, broker: Mosquitto, modem: SimModem) -> None:
    """The police acknowledge 0.5 s before ack_timeout_s. The lamp the ack lights is on a
    slow Modbus module, and a snapshot of a camera that does not answer was sent just
    before the ack: the alarm is not escalated (no sounder, no SMS), and the lamp lights."""
    with PlatformConsole(broker.host, broker.port, persistent=False, command_key=KEY,
                         auto_ack_s=ACK_AFTER_S) as console, \
            InProcessGateway(config(tmp_path, broker.port, modem.port)) as gw:
        assert console.wait_for(
            lambda c: c.status.get(f"{SITE}/{GWID}", {}).get("state") == "online", WAIT)
        assert gw.panel is not None and gw.service.cameras is not None
        modbus, outputs, esc = gw.service.modbus_sim, gw.service.outputs, gw.service.escalation
        assert isinstance(modbus, SimModbus) and outputs is not None and esc is not None
        modbus.set_fault("lamps", "slow", delay_s=LAMP_DELAY_S)
        gw.service.cameras.sims["gate-cam"].set_latency(60.0)

        gw.panel.press("gate-panic")
        assert console.wait_for(lambda c: len(c.events_of("alarm")) == 1, WAIT)
        (alarm,) = console.events_of("alarm")
        # Queued ahead of the ack, which the console sends ACK_AFTER_S after the alarm came.
        snap = console.send_command(SITE, GWID, "snapshot", {"camera": "gate-cam"})
        assert console.wait_for(lambda c: snap in c.results and any(
            r.get("op") == "ack" and r.get("result", {}).get("event_id") == alarm["id"]
            for r in c.results.values()), WAIT)
        # The escalation's time has passed: the snapshot took CAMERA_TIMEOUT_S.
        assert (mono_ns() - alarm["mono_ns"]) / 1e9 > ACK_TIMEOUT_S + 1.0
        sounder_on = outputs.status_of("sounder")["on"]
        escalated, pending = esc.escalated_total, esc.pending()
        # The lamp lights all the same, once its slow module has it.
        assert outputs.wait_applied("ack-lamp", WAIT)
        assert outputs.status_of("ack-lamp")["on"] is True
        assert modbus.coil("lamps", 0) is True
    assert console.results[snap]["ok"] is False  # the camera never answered
    assert (escalated, pending, sounder_on) == (0, [], False)
    assert not any(c.upper().startswith("AT+CMGS") for c in modem.commands)
    assert modem.messages == []
    assert escalations(console) == []

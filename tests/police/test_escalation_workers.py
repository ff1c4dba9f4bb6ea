"""Escalation's steps run apart: an alarm's sounder never waits for another alarm's SMS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gw import InProcessGateway
from gw import escalation_config as config

from hw_sim.broker import Mosquitto
from hw_sim.modem import SimModem
from hw_sim.platform import PlatformConsole

WAIT = 30.0
ACK_TIMEOUT_S = 1.5
#: escalation_config's escalation.modem.sms_timeout_s.
SMS_TIMEOUT_S = 5.0


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[SimModem]:
    with SimModem(tmp_path / "modem") as m:
        yield m


def step_of(c: PlatformConsole, alarm: dict[str, Any], *steps: str) -> dict[str, Any] | None:
    return next((e for e in c.events_of("escalation") if e["detail"]["for_event"] == alarm["id"]
                 and e["detail"]["step"] in steps), None)


def test_a_second_alarms_sounder_does_not_wait_for_the_first_alarms_sms(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, modem: SimModem) -> None:
    """The network never takes alarm 1's SMS: the driver waits sms_timeout_s for it. Alarm 2
    escalates meanwhile: its sounder goes on at its own ack_timeout_s, before alarm 1's SMS
    has even failed."""
    with InProcessGateway(config(tmp_path, broker.port, modem.port,
                                 ack_timeout_s=ACK_TIMEOUT_S, uplink_down_s=30.0)) as gw:
        assert gw.panel is not None
        modem.sms_delay_s = SMS_TIMEOUT_S + 2.0  # the modem takes the text, then nothing
        gw.panel.press("gate-panic")
        modem.wait_for_command("AT+CMGS", WAIT)  # alarm 1's SMS: from now on it hangs
        gw.panel.press("office-panic")
        assert console.wait_for(lambda c: len(c.events_of("alarm")) == 2, WAIT)
        first = console.events_of("alarm", "gate-panic")[0]
        second = console.events_of("alarm", "office-panic")[0]
        assert console.wait_for(
            lambda c: step_of(c, second, "sounder_on") is not None
            and step_of(c, first, "sms_sent", "sms_failed") is not None, WAIT)
        modem.sms_delay_s = 0.0
        # Alarm 2's own SMS comes after alarm 1's (one modem): let it end before stopping.
        assert console.wait_for(
            lambda c: step_of(c, second, "sms_sent", "sms_failed") is not None, WAIT)
    sounder = step_of(console, second, "sounder_on")
    first_sms = step_of(console, first, "sms_sent", "sms_failed")
    assert sounder is not None and first_sms is not None
    assert first_sms["detail"]["step"] == "sms_failed"
    delay_s = (sounder["mono_ns"] - second["mono_ns"]) / 1e9
    print(f"alarm 2's sounder went on {delay_s:.2f} s after its commit"
          f" (ack_timeout_s {ACK_TIMEOUT_S})")
    assert sounder["mono_ns"] < first_sms["mono_ns"], \
        f"alarm 2's sounder waited for alarm 1's SMS: on after {delay_s:.2f} s"
    assert ACK_TIMEOUT_S <= delay_s < ACK_TIMEOUT_S + 1.0

"""An escalation restored after a restart texts the alarm's own time, and says when the clock
that gave it was not synced."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from gw import InProcessGateway
from gw import escalation_config as config

from hw_sim.broker import Mosquitto
from hw_sim.modem import SimModem

WAIT = 15.0


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[SimModem]:
    with SimModem(tmp_path / "modem") as m:
        yield m


def gateway_config(tmp_path: Path, broker: Mosquitto, modem: SimModem, *, synced: bool,
                   uplink_down_s: float) -> Path:
    cfg = config(tmp_path, broker.port, modem.port, ack_timeout_s=600.0,
                 uplink_down_s=uplink_down_s)
    if not synced:
        text = cfg.read_text()
        assert 'sync_source = "assume-synced"' in text
        cfg.write_text(text.replace('sync_source = "assume-synced"',
                                    'sync_source = "assume-unsynced"'))
    return cfg


@pytest.mark.parametrize("synced", [True, False], ids=["synced", "unsynced"])
def test_a_restored_escalation_texts_the_alarms_own_time(
        tmp_path: Path, broker: Mosquitto, modem: SimModem, synced: bool) -> None:
    """The uplink is down; an alarm is committed and the gateway stops before escalating it.
    After the restart its escalation is rebuilt from the store: the SMS gives the time the
    alarm happened (not 1970's 08:00:00), and "clock not synced" when it was not."""
    cfg = gateway_config(tmp_path, broker, modem, synced=synced, uplink_down_s=600.0)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None and gw.service.uplink is not None
        assert gw.service.uplink.wait_for_drained(10)
        broker.kill()
        gw.panel.press("gate-panic")
        engine = gw.service.engine
        assert engine is not None
        engine.call(lambda: None).result(10)
        (doc, delivered), = gw.service.outbox.unanswered_events(frozenset({"alarm"}),
                                                                frozenset())
        assert modem.messages == []  # 600 s: nothing escalates in this process
    assert not delivered and doc["time_synced"] is synced
    occurred = datetime.fromisoformat(doc["occurred_at"]).timestamp()
    when = time.strftime("%H:%M:%S", time.localtime(occurred))

    cfg = gateway_config(tmp_path, broker, modem, synced=synced, uplink_down_s=1.0)
    with InProcessGateway(cfg) as gw:
        assert gw.service.escalation is not None
        (pending,) = gw.service.escalation.pending()
        assert pending["event_id"] == doc["id"]
        (sms,) = modem.wait_for_messages(1, timeout=WAIT)
    assert "报警网关与平台断开" in sms.text
    assert f" {when} " in sms.text, sms.text
    assert sms.text.count(when) == 2, sms.text  # in the Chinese text and the English one
    if synced:
        assert "时钟未同步" not in sms.text and "clock not synced" not in sms.text
    else:
        assert "时钟未同步" in sms.text and "clock not synced" in sms.text, sms.text


def test_a_live_alarm_on_an_unsynced_clock_says_so_too(
        tmp_path: Path, broker: Mosquitto, modem: SimModem) -> None:
    cfg = gateway_config(tmp_path, broker, modem, synced=False, uplink_down_s=1.0)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None and gw.service.uplink is not None
        assert gw.service.uplink.wait_for_drained(10)
        broker.kill()
        gw.panel.press("gate-panic")
        (sms,) = modem.wait_for_messages(1, timeout=WAIT)
    assert "时钟未同步" in sms.text and "clock not synced" in sms.text, sms.text

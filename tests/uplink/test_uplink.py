"""The uplink's delivery rules, against brokers that misbehave and a real one under backlog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakebroker import FakeBroker, Publish
from gw import InProcessGateway, write_config

from gateway.uplink.mqtt import (
    BULK_AHEAD_S,
    BULK_BYTES_IN_FLIGHT,
    BULK_BYTES_UNMEASURED,
    LinkRate,
)
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole


def events(fb: FakeBroker) -> list[Publish]:
    return [p for p in fb.publishes if p.topic.endswith("/event")]


def drained(gw: InProcessGateway, timeout: float = 10.0) -> bool:
    assert gw.service.uplink is not None
    return gw.service.uplink.wait_for_drained(timeout)


def fast_config(tmp_path: Path, port: int, **broker: object) -> Path:
    return write_config(tmp_path / "gw", broker_port=port, debounce_ms=0,
                        broker={"keepalive_s": 2, **broker})


def test_row_stays_until_puback_and_a_black_holed_link_is_redone(tmp_path: Path) -> None:
    # Connection 0 swallows everything (a black hole after CONNACK); connection 1 works.
    def policy(p: Publish) -> int | None:
        return None if p.connection == 0 else 0

    with FakeBroker(policy, answer_pings=False) as fb, \
            InProcessGateway(fast_config(tmp_path, fb.port)) as gw:
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        assert fb.wait_for(lambda f: len(events(f)) == 1, 10)
        # Published, no PUBACK: still on disk, in flight.
        assert gw.service.outbox.stats().lanes["alarm"].in_flight == 1
        # The gateway notices the silence (1.5 x keepalive) and sends it again.
        assert fb.wait_for(lambda f: len(events(f)) == 2, 15)
        assert drained(gw)
        first, second = events(fb)
        state = gw.service.uplink.state() if gw.service.uplink else {}
    assert (first.connection, second.connection) == (0, 1)
    # The retry is the same event byte for byte: same id, same seq.
    assert first.payload == second.payload
    assert json.loads(first.payload)["type"] == "alarm"
    assert state["connects"] == 2


def types(fb: FakeBroker) -> list[str]:
    return [json.loads(p.payload)["type"] for p in events(fb)]


def test_no_matching_subscribers_puback_counts_as_delivered_outside_the_alarm_lane(
        tmp_path: Path) -> None:
    # 0x10 for everything but the alarm's second attempt. An alarm nobody received is sent
    # again (tests/uplink/test_refusals.py); a restore or a fault nobody received is not.
    def policy(p: Publish) -> int:
        alarm = p.topic.endswith("/event") and b'"type":"alarm"' in p.payload
        return 0 if alarm and types(fb).count("alarm") > 1 else 0x10

    with FakeBroker(policy) as fb, \
            InProcessGateway(fast_config(tmp_path, fb.port)) as gw:
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        assert fb.wait_for(lambda f: "fault_cleared" in types(f), 10)
        assert drained(gw)
        gw.panel.release("gate-panic")
        assert fb.wait_for(lambda f: "restore" in types(f), 10)
        assert drained(gw)
    alarms = [p.payload for p in events(fb) if json.loads(p.payload)["type"] == "alarm"]
    assert len(alarms) == 2 and alarms[0] == alarms[1]
    # Everything else went out once: nothing was re-sent.
    assert sorted(t for t in types(fb) if t != "alarm") == ["fault", "fault_cleared", "restore"]


def test_refused_puback_keeps_the_event_and_retries_it(tmp_path: Path) -> None:
    # The broker's ACL refuses the first attempt (0x87 Not authorized), then accepts.
    seen: list[int] = []

    def policy(p: Publish) -> int | None:
        if not p.topic.endswith("/event"):
            return 0
        seen.append(p.packet_id)
        return 0x87 if len(seen) == 1 else 0

    with FakeBroker(policy) as fb, InProcessGateway(fast_config(tmp_path, fb.port)) as gw:
        assert gw.panel is not None and gw.service.uplink is not None
        gw.panel.press("gate-panic")
        assert fb.wait_for(lambda f: len(events(f)) == 1, 10)
        assert fb.wait_for(lambda f: gw.service.uplink is not None
                           and gw.service.uplink.state()["refused"] == 1, 10)
        state = gw.service.uplink.state()
        assert "refused" in state["last_error"] and "ACL" in state["last_error"]
        # Still on disk while refused (held in flight until its retry).
        alarm = gw.service.outbox.stats().lanes["alarm"]
        assert alarm.ready + alarm.in_flight == 1
        assert fb.wait_for(lambda f: len(events(f)) == 2, 10)
        assert drained(gw)
    assert events(fb)[0].payload == events(fb)[1].payload


def test_in_flight_never_exceeds_the_brokers_receive_maximum(tmp_path: Path) -> None:
    # Receive Maximum 3: one slot stays free for the status message, so 2 events at most.
    with FakeBroker(lambda p: None if p.topic.endswith("/event") else 0,
                    receive_maximum=3) as fb, \
            InProcessGateway(fast_config(tmp_path, fb.port)) as gw:
        assert gw.panel is not None
        for _ in range(5):
            gw.panel.press("gate-panic")
            gw.panel.release("gate-panic")
        assert fb.wait_for(lambda f: len(events(f)) == 2, 10)
        # The outbox marks rows in flight before they are published: had the uplink
        # taken more than the window, the store would show it now.
        engine = gw.service.engine
        assert engine is not None
        engine.call(lambda: None).result(10)
        lanes = gw.service.outbox.stats().lanes
        assert sum(lane.in_flight for lane in lanes.values()) == 2
        assert gw.service.outbox.stats().waiting == 10


def test_new_alarm_overtakes_a_backlog(tmp_path: Path,
                                       persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    broker, console = persistent
    cfg = fast_config(tmp_path, broker.port)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None
        broker.kill()
        box = gw.service.outbox
        for i in range(300):
            box.put_bulk(f"snapshot/backlog/cam{i}", b"\xff\xd8" + b"j" * 500 + b"\xff\xd9")
        for _ in range(100):
            gw.panel.press("box-tamper")     # tamper: alarm lane
            gw.panel.release("box-tamper")   # tamper_cleared: event lane
        engine = gw.service.engine
        assert engine is not None
        engine.call(lambda: None).result(10)
        # Now the backlog is 300 bulk rows, 100 event rows and 100 tamper alarms;
        # then the panic button is pressed.
        gw.panel.press("gate-panic")
        engine.call(lambda: None).result(10)
        broker.start()
        assert console.wait_for(lambda c: len(c.events_of("alarm", "gate-panic")) == 1, 30)
        assert drained(gw, 30)
    assert console.wait_for(lambda c: sum(
        1 for r in c.raw if r.topic.endswith("/event") or "/snapshot/" in r.topic) == 501, 30)
    kinds = [json.loads(r.payload)["type"] if r.topic.endswith("/event") else "snapshot"
             for r in console.raw if r.topic.endswith("/event") or "/snapshot/" in r.topic]
    # The panic alarm, committed after everything else, overtook every lower-lane row:
    # only alarm-lane rows committed before it (the tamper alarms) went first.
    assert kinds == ["tamper"] * 100 + ["alarm"] + ["tamper_cleared"] * 100 + ["snapshot"] * 300


def test_a_half_open_link_is_noticed_without_any_message_in_flight(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The broker accepts, then never says another word (not even PINGRESP): a
    # half-open link. Nothing is published, so only the silence can tell.
    with FakeBroker(lambda p: 0, answer_pings=False) as fb, \
            InProcessGateway(fast_config(tmp_path, fb.port)) as gw:
        assert fb.wait_for(lambda f: f.connections >= 2, 15)
        assert gw.service.outbox.stats().waiting == 0
    silences = [r.getMessage() for r in caplog.records if "silent for" in r.getMessage()]
    # Noticed by the gateway's own 1.5 x keepalive check, not paho's 2 x keepalive.
    assert silences and "keepalive 2 s" in silences[0]


def test_the_link_rate_bounds_the_pictures_in_flight_in_time() -> None:
    """Pictures in flight are what the link carries in BULK_AHEAD_S: an alarm published
    behind them waits that long at most, on a LAN or on a 20 kB/s mobile link."""
    rate = LinkRate()
    assert rate.bytes_per_s() is None and rate.bulk_cap() == BULK_BYTES_UNMEASURED
    # A slow link: ten 10 kB pictures published at once, acknowledged one every 0.5 s.
    for i in range(1, 11):
        rate.acked(100.0 + 0.5 * i, [(10_000, 100.0)])
    assert rate.bytes_per_s() == pytest.approx(20_000)
    assert rate.bulk_cap() == int(20_000 * BULK_AHEAD_S)
    # A fast link: the cap is the byte bound, whatever the rate.
    fast = LinkRate()
    for i in range(1, 11):
        fast.acked(200.0 + 0.001 * i, [(50_000, 200.0)])
    assert fast.bulk_cap() == BULK_BYTES_IN_FLIGHT
    # The link gets faster: within a few batches the estimate follows.
    for i in range(1, 11):
        rate.acked(110.0 + 0.01 * i, [(10_000, 110.0)])
    assert rate.bytes_per_s() is not None and rate.bytes_per_s() > 200_000
    # A lone row counts its round trip too (errs on the slow side); a new connection
    # does not measure from the old one's last PUBACK.
    lone = LinkRate()
    lone.acked(10.0, [(1_000, 8.0)])
    assert lone.bytes_per_s() == pytest.approx(500)
    lone.new_connection()
    lone.acked(60.0, [(1_000, 59.0)])
    assert lone.bytes_per_s() == pytest.approx((0.7 * 1_000 + 1_000) / (0.7 * 2.0 + 1.0))

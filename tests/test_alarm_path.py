"""The alarm path end to end: simulated button -> outbox -> real Mosquitto -> platform console."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import jsonschema
from gw import GatewayProcess, InProcessGateway, write_config

from gateway.config import load_config
from gateway.service import Service
from gateway.uplink.protocol import load_schema
from hw_sim.broker import Mosquitto
from hw_sim.gpio import SimPanel, make_sim_factory
from hw_sim.platform import PlatformConsole

GW = "test-school/gw-test"
FORMAT_CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER


def validate(doc: object, schema: str) -> None:
    jsonschema.validate(doc, load_schema(schema), format_checker=FORMAT_CHECKER)


def barrier(gw: InProcessGateway) -> None:
    """Return once the engine has handled everything handed in before this call."""
    engine = gw.service.engine
    assert engine is not None
    engine.call(lambda: None).result(10.0)


def test_press_arrives_as_one_alarm_with_every_field_and_release_as_restore(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, health_interval_s=1.0)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        assert console.wait_for(lambda c: len(c.events_of("alarm", "gate-panic")) == 1, 10)
        gw.panel.release("gate-panic")
        assert console.wait_for(lambda c: len(c.events_of("restore", "gate-panic")) == 1, 10)
        assert console.wait_for(lambda c: len(c.health) >= 1 and GW in c.status, 10)

    alarm = console.events_of("alarm", "gate-panic")[0]
    restore = console.events_of("restore", "gate-panic")[0]
    for doc in (alarm, restore):
        validate(doc, "event")
    assert alarm["point"] == {"id": "gate-panic", "name": "南门门卫室一键报警",
                              "location": "South gate", "kind": "panic"}
    assert alarm["source"] == "gpio:17"
    assert alarm["site"] == "test-school" and alarm["gateway"] == "gw-test"
    assert alarm["detected_at_startup"] is False
    assert alarm["time_synced"] is True  # the test config says assume-synced
    assert restore["seq"] == alarm["seq"] + 1
    assert restore["mono_ns"] > alarm["mono_ns"]
    assert alarm["boot_id"] == restore["boot_id"] == Path(
        "/proc/sys/kernel/random/boot_id").read_text().strip()
    # Exactly these two events, nothing raised by the other (normally-closed) inputs.
    assert [e["type"] for e in console.events] == ["alarm", "restore"]
    for h in console.health:
        validate(h, "health")
    # Retained status: online on connect, then offline (clean shutdown) replaces it.
    assert console.wait_for(lambda c: c.status.get(GW, {}).get("state") == "offline", 10)
    validate(console.status[GW], "status")
    assert console.status[GW]["reason"] == "shutdown"
    # The raw message carries MQTT 5 properties and QoS 1 was used on the wire.
    raw = next(r for r in console.raw if r.topic.endswith("/event"))
    assert raw.topic == "alarmgw/v1/test-school/gw-test/event"
    assert raw.properties.get("ContentType") == "application/json"


def test_unsynced_clock_is_reported_honestly(tmp_path: Path, broker: Mosquitto,
                                              console: PlatformConsole) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port,
                       sync_source="assume-unsynced")
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        assert console.wait_for(lambda c: len(c.events_of("alarm")) == 1, 10)
    assert console.events_of("alarm")[0]["time_synced"] is False


def test_status_online_is_retained_and_will_says_offline(tmp_path: Path, broker: Mosquitto
                                                         ) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port,
                       broker={"keepalive_s": 2})
    gw = GatewayProcess(cfg).start()
    try:
        # A console that subscribes later still gets the retained 'online'.
        with PlatformConsole(broker.host, broker.port, persistent=False,
                             client_id="late") as late:
            assert late.wait_for(lambda c: c.status.get(GW, {}).get("state") == "online", 10)
            validate(late.status[GW], "status")
            gw.kill()  # no clean DISCONNECT: the broker must publish the Will
            assert late.wait_for(lambda c: c.status.get(GW, {}).get("state") == "offline", 10)
            assert late.status[GW]["reason"] == "connection lost"
    finally:
        gw.kill()


def test_panic_input_active_at_start_raises_alarm_marked_at_startup(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = load_config(write_config(tmp_path / "gw", broker_port=broker.port))
    factory = make_sim_factory()
    panel = SimPanel(factory, cfg.inputs)
    panel.press("office-panic")  # a latched normally-closed button: its loop is open
    service = Service(cfg, pin_factory=factory, sim=panel)
    service.start()
    try:
        assert console.wait_for(lambda c: len(c.events_of("alarm", "office-panic")) == 1, 10)
    finally:
        service.stop()
        factory.close()
    alarm = console.events_of("alarm", "office-panic")[0]
    assert alarm["detected_at_startup"] is True
    validate(alarm, "event")
    # Only the latched input raised anything.
    assert [e["point"]["id"] for e in console.events] == ["office-panic"]


def test_bounce_shorter_than_debounce_raises_nothing_and_counts_glitches(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    # 200 ms debounce against 2 ms bounces: a margin of 100 so a busy CI machine
    # cannot stretch a bounce into a press.
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=200)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None and gw.service.gpio is not None
        gw.panel.bounce("gate-panic", edges=3, interval_s=0.002)
        glitches = {s["id"]: s["glitches"] for s in gw.service.gpio.status()}
        assert glitches["gate-panic"] == 3
        assert glitches["office-panic"] == 0
        # A test event goes through the same engine queue after the bounce: once it
        # has arrived, anything the bounce raised would have arrived before it.
        gw.service.handle_control({"cmd": "test-alarm", "point": "gate-panic"})
        assert console.wait_for(lambda c: len(c.events_of("test")) == 1, 10)
        status = gw.service.status()
    assert [e["type"] for e in console.events] == ["test"]
    point = next(p for p in status["inputs"] if p["id"] == "gate-panic")
    assert point["wire"]["glitches"] == 3
    assert point["active"] is False


def test_press_held_past_debounce_is_an_alarm_timed_from_its_first_edge(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=50)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None
        before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        gw.panel.press("gate-panic")
        after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        assert console.wait_for(lambda c: len(c.events_of("alarm")) == 1, 10)
    alarm = console.events_of("alarm")[0]
    # mono_ns is when the level changed, not when the debounce confirmed it 50 ms later.
    assert before <= alarm["mono_ns"] <= after


def test_tamper_contact_is_its_own_event_type(tmp_path: Path, broker: Mosquitto,
                                              console: PlatformConsole) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None
        gw.panel.press("box-tamper")
        gw.panel.release("box-tamper")
        assert console.wait_for(lambda c: len(c.events) == 2, 10)
    assert [e["type"] for e in console.ordered(GW)] == ["tamper", "tamper_cleared"]
    assert console.events_of("tamper")[0]["point"]["kind"] == "tamper"


def test_broker_down_for_50_presses_all_arrive_once_in_gapless_order(
        tmp_path: Path, persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    broker, console = persistent
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None and gw.service.uplink is not None
        gw.panel.press("gate-panic")  # one press delivered before the outage
        gw.panel.release("gate-panic")
        assert console.wait_for(lambda c: len(c.events) == 2, 10)

        broker.kill()
        for _ in range(50):
            gw.panel.press("gate-panic")
            gw.panel.release("gate-panic")
        barrier(gw)
        stats = gw.service.outbox.stats()
        assert stats.next_seq == 2 + 100 + 1
        # Everything since the outage is on disk, none of it acknowledged.
        assert stats.waiting == 100

        broker.start()
        assert console.wait_for(lambda c: len(c.events) == 102, 30), (
            f"got {len(console.events)} events; gaps {console.gaps()}")
        assert gw.service.uplink is not None and gw.service.uplink.wait_for_drained(10)

    ordered = console.ordered(GW)
    assert [e["seq"] for e in ordered] == list(range(1, 103))
    assert len({e["id"] for e in ordered}) == 102
    assert [e["type"] for e in ordered] == ["alarm", "restore"] * 51
    assert console.gaps() == {}


def test_sigkill_in_a_burst_loses_no_committed_press(
        tmp_path: Path, persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    broker, console = persistent
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
    gw = GatewayProcess(cfg).start()
    presses = 0
    stop = threading.Event()

    def burst() -> None:
        nonlocal presses
        while not stop.is_set():
            try:
                gw.press("gate-panic")
                gw.release("gate-panic")
            except Exception:
                return  # the process was killed under us
            presses += 1

    t = threading.Thread(target=burst)
    try:
        t.start()
        # Kill once a good part of the burst is committed and some is in flight.
        assert console.wait_for(lambda c: len(c.events) >= 40, 30)
        gw.kill()
        stop.set()
        t.join()
        gw2 = GatewayProcess(cfg).start()
        try:
            queue = gw2.control({"cmd": "queue"})
            committed = queue["stats"]["next_seq"] - 1
            assert committed >= 40
            assert console.wait_for(lambda c: len(c.events) >= committed, 30), (
                f"committed {committed}, platform has {len(console.events)};"
                f" gaps {console.gaps()}")
        finally:
            gw2.stop()
    finally:
        stop.set()
        t.join()
        gw.kill()
    ordered = console.ordered(GW)
    assert [e["seq"] for e in ordered] == list(range(1, committed + 1))
    assert len({e["id"] for e in ordered}) == committed
    assert console.gaps() == {}

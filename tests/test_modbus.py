"""Modbus alarm modules end to end: simulated modules -> driver -> engine -> real Mosquitto.

The modules are hw_sim's: a real pymodbus server speaking RTU over a socat pty pair (the
driver opens its end with pyserial, as on a Pi) or TCP on loopback. Events are checked where
the police platform sees them, at a PlatformConsole.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from gw import InProcessGateway, write_config
from modbus_cfg import device, modbus_input, rtu_bus, tcp_bus, write_modbus_config

from gateway.clock import mono_ns
from gateway.config.modbus import cycle_wire_s, plan_reads
from gateway.service import Service
from gateway.uplink.protocol import load_schema
from hw_sim.broker import Mosquitto
from hw_sim.modbus import DEFAULT_TURNAROUND_S, SimModbus, SimRtuBus, SimTcpBus, SimUnit
from hw_sim.platform import PlatformConsole

#: Upper bound for anything that takes milliseconds, in seconds.
WAIT = 10.0
GW = "test-school/gw-test"


def validate(doc: object) -> None:
    jsonschema.validate(doc, load_schema("event"),
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def barrier(gw: InProcessGateway) -> None:
    """Return once the engine has handled everything handed in before this call."""
    engine = gw.service.engine
    assert engine is not None
    engine.call(lambda: None).result(WAIT)


def sim_of(gw: InProcessGateway) -> SimModbus:
    sim = gw.service.modbus_sim
    assert isinstance(sim, SimModbus)
    return sim


def started(gw: InProcessGateway) -> InProcessGateway:
    """`gw`, once every module has been read once (the inputs' first readings are in)."""
    modbus = gw.service.modbus
    assert modbus is not None and modbus.wait_first_cycle(WAIT)
    return gw


def bus_status(gw: InProcessGateway, bus_id: str) -> dict[str, Any]:
    return next(b for b in gw.service.modbus_status() if b["id"] == bus_id)


@pytest.fixture
def two_units(tmp_path: Path, broker: Mosquitto) -> Iterator[InProcessGateway]:
    """Units 3 and 4 on an RTU bus at 115200 baud, a panic button on each."""
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus()],
        devices=[device("io3", 3), device("io4", 4)],
        inputs=[modbus_input("p3", "io3", 2), modbus_input("p4", "io4", 0, contact="NC")])
    with InProcessGateway(cfg) as gw:
        yield started(gw)


# -- presses ------------------------------------------------------------------------------

@pytest.mark.parametrize("bus", [rtu_bus(baud=9600, timeout_ms=100, poll_interval_ms=50),
                                 tcp_bus(bus_id="rs485")], ids=["rtu-9600", "tcp"])
def test_press_is_an_alarm_with_its_modbus_source_and_release_a_restore(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, bus: dict[str, Any]
        ) -> None:
    cfg = write_modbus_config(tmp_path / "gw", broker_port=broker.port, buses=[bus],
                              devices=[device("io3", 3)],
                              inputs=[modbus_input("hall-panic", "io3", 2)])
    with InProcessGateway(cfg) as gw:
        sim = sim_of(started(gw))
        sim.press("hall-panic")
        assert console.wait_for(lambda c: len(c.events_of("alarm", "hall-panic")) == 1, WAIT)
        sim.release("hall-panic")
        assert console.wait_for(lambda c: len(c.events_of("restore", "hall-panic")) == 1, WAIT)
        status = gw.service.status()
    alarm, restore = console.events_of("alarm")[0], console.events_of("restore")[0]
    for doc in (alarm, restore):
        validate(doc)
        assert doc["source"] == "modbus:rs485/3/di2"
    assert alarm["point"] == {"id": "hall-panic", "name": "按钮 hall-panic",
                              "location": "Corridor hall-panic", "kind": "panic"}
    assert alarm["detected_at_startup"] is False
    assert restore["seq"] == alarm["seq"] + 1
    assert [e["type"] for e in console.events] == ["alarm", "restore"]
    wire = next(p for p in status["inputs"] if p["id"] == "hall-panic")["wire"]
    assert (wire["device"], wire["device_state"], wire["bit"]) == ("io3", "ok", 0)
    counters = status["modbus"][0]["counters"]
    assert counters["requests"] > 0
    assert counters["timeouts"] == counters["crc_errors"] == counters["exceptions"] == 0


def test_register_bit_and_normally_closed_contacts(tmp_path: Path, broker: Mosquitto,
                                                   console: PlatformConsole) -> None:
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus()],
        devices=[device("io1", 1)],
        inputs=[modbus_input("loop-panic", "io1", 5, contact="NC"),
                modbus_input("reg-panic", "io1", 3, table="ir", bit=9),
                modbus_input("lid", "io1", 4, table="hr", bit=0, kind="tamper", contact="NC")])
    with InProcessGateway(cfg) as gw:
        sim = sim_of(started(gw))
        bus = sim.buses["rs485"]
        # Normal state: the NC loop reads 1, the NO register bit 0.
        assert bus.get_bit(1, "di", 5) is True
        assert bus.get_bit(1, "ir", 3, bit=9) is False
        sim.press("loop-panic")
        sim.press("reg-panic")
        sim.press("lid")
        assert bus.get_bit(1, "di", 5) is False
        assert bus.unit(1).tables["ir"][3] == 1 << 9
        assert console.wait_for(lambda c: len(c.events) == 3, WAIT)
    assert {(e["type"], e["point"]["id"], e["source"]) for e in console.events} == {
        ("alarm", "loop-panic", "modbus:rs485/1/di5"),
        ("alarm", "reg-panic", "modbus:rs485/1/ir3.9"),
        ("tamper", "lid", "modbus:rs485/1/hr4.0"),
    }


def test_points_of_a_module_are_read_in_one_request(tmp_path: Path, broker: Mosquitto,
                                                    console: PlatformConsole) -> None:
    points = [modbus_input(f"p{a}", "io1", a) for a in (0, 1, 2, 5, 7)]
    cfg = write_modbus_config(tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus()],
                              devices=[device("io1", 1)], inputs=points)
    with InProcessGateway(cfg) as gw:
        sim = sim_of(started(gw))
        sim.press("p7")
        assert console.wait_for(lambda c: bool(c.events_of("alarm", "p7")), WAIT)
        st = bus_status(gw, "rs485")
    assert st["devices"][0]["reads"] == ["di 0-7"]
    # Every request the bus made is the one read of di 0-7 (unit 1, FC02, address 0, count 8).
    txs = [f["hex"] for f in st["frames"] if f["dir"] == "tx"]
    assert txs and set(txs) == {"01 02 00 00 00 08 79 cc"}
    assert [e["point"]["id"] for e in console.events] == ["p7"]


def test_latched_button_at_start_raises_its_alarm(tmp_path: Path, broker: Mosquitto,
                                                  console: PlatformConsole) -> None:
    path = write_modbus_config(tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus()],
                               devices=[device("io1", 1)],
                               inputs=[modbus_input("latched", "io1", 0, contact="NC")])
    from gateway.config import load_config

    cfg = load_config(path)
    with SimModbus(cfg.modbus) as sim:
        sim.press("latched")  # pressed before the service starts
        service = Service(cfg, modbus_sim=sim)
        service.start()
        try:
            assert console.wait_for(lambda c: bool(c.events_of("alarm", "latched")), WAIT)
        finally:
            service.stop()
    alarm = console.events_of("alarm", "latched")[0]
    assert alarm["detected_at_startup"] is True
    assert [e["type"] for e in console.events] == ["alarm"]


# -- supervision ---------------------------------------------------------------------------

def test_silent_unit_is_one_fault_neighbours_keep_their_bound_and_recovery_reads_latched(
        two_units: InProcessGateway, console: PlatformConsole) -> None:
    gw = two_units
    sim = sim_of(gw)
    cfg = gw.config
    bus_cfg = cfg.modbus.bus("rs485")
    blocks = plan_reads(cfg.modbus.points, cfg.modbus.devices)
    # The worst case for a neighbour while a unit is dead: a cycle with the dead unit's
    # timeout in it (at most one per probe interval). 50 ms for a loaded CI machine.
    bound_s = (bus_cfg.poll_interval_ms / 1000 + cycle_wire_s(bus_cfg, blocks,
                                                              DEFAULT_TURNAROUND_S)
               + bus_cfg.timeout_ms / 1000 + 0.05)
    assert console.wait_for(lambda c: bus_status(gw, "rs485")["counters"]["cycles"] > 2, WAIT)

    sim.set_fault("io4", "silent")
    assert console.wait_for(lambda c: len(c.events_of("fault", "io4")) == 1, WAIT)
    fault = console.events_of("fault", "io4")[0]
    validate(fault)
    assert fault["source"] == "modbus:rs485/4"
    assert fault["point"]["kind"] == "device"
    reason = fault["detail"]["reason"]
    assert "unit 4" in reason and "rs485" in reason and "does not answer" in reason
    assert fault["detail"]["error"] == "timeout"
    assert fault["detail"]["unit"] == 4 and fault["detail"]["bus"] == "rs485"
    assert any(f["dir"] == "tx" and f["unit"] == 4 for f in fault["detail"]["last_frames"])

    # The neighbour, pressed at several points of the cycle, is read within its bound.
    for i in range(4):
        time.sleep(0.013 * i)  # spread the presses over the cycle
        before = mono_ns()
        sim.press("p3")
        assert console.wait_for(lambda c, n=i + 1: len(c.events_of("alarm", "p3")) == n, WAIT)
        alarm = console.events_of("alarm", "p3")[-1]
        assert alarm["mono_ns"] - before <= bound_s * 1e9, (
            f"press {i}: read after {(alarm['mono_ns'] - before) / 1e6:.0f} ms,"
            f" bound {bound_s * 1000:.0f} ms")
        sim.release("p3")
        assert console.wait_for(lambda c, n=i + 1: len(c.events_of("restore", "p3")) == n,
                                WAIT)

    # A latching button on the dead unit is pressed during the outage.
    sim.press("p4")
    probes = sim.bus_of("io4").requests_to(4)
    assert sim.bus_of("io4").wait_for(lambda: sim.bus_of("io4").requests_to(4) >= probes + 3,
                                      WAIT), "the dead unit is not probed"
    barrier(gw)
    assert len(console.events_of("fault", "io4")) == 1, "one fault per failure"
    assert not console.events_of("alarm", "p4")
    st = bus_status(gw, "rs485")
    io3, io4 = st["devices"]
    assert io4["state"] == "faulty"
    # Probed every 0.2 s, not polled every cycle like its neighbour.
    assert io3["requests"] > 3 * io4["requests"] / 2

    sim.set_fault("io4", "ok")
    assert console.wait_for(lambda c: len(c.events_of("fault_cleared", "io4")) == 1, WAIT)
    assert console.wait_for(lambda c: len(c.events_of("alarm", "p4")) == 1, WAIT)
    types = [e["type"] for e in console.ordered(GW) if e["point"]["id"] in ("io4", "p4")]
    assert types == ["fault", "fault_cleared", "alarm"]


@pytest.mark.parametrize("case", [
    ("bad-crc", "crc", "crc_errors", "bad CRC"),
    ("exception", "exception", "exceptions", "exception 4"),
    ("wrong-unit", "wrong_unit", "wrong_unit", "reply came from unit 4"),
], ids=["bad-crc", "exception", "wrong-unit"])
def test_bad_replies_are_counted_reported_and_never_read_as_inputs(
        two_units: InProcessGateway, console: PlatformConsole,
        case: tuple[str, str, str, str]) -> None:
    mode, kind, counter, words = case
    gw = two_units
    sim = sim_of(gw)
    bus = sim.bus_of("io3")
    # Pressed while every reply of unit 3 is bad: corrupted or misaddressed replies carry
    # the pressed bit, and must not be taken for it.
    sim.set_fault("io3", mode)
    sim.press("p3")
    assert console.wait_for(lambda c: len(c.events_of("fault", "io3")) == 1, WAIT)
    seen = bus.requests_to(3)
    assert bus.wait_for(lambda: bus.requests_to(3) >= seen + 3, WAIT)
    barrier(gw)
    assert not console.events_of("alarm", "p3")
    fault = console.events_of("fault", "io3")[0]
    assert fault["detail"]["error"] == kind
    assert words in fault["detail"]["reason"], fault["detail"]["reason"]
    assert "unit 3" in fault["detail"]["reason"]
    st = bus_status(gw, "rs485")
    assert st["counters"][counter] >= 3
    assert st["devices"][0]["state"] == "faulty"
    assert st["devices"][1]["state"] == "ok"  # the neighbour is not blamed
    assert gw.service.engine is not None and gw.service.modbus is not None
    assert all(b._thread is not None and b._thread.is_alive() for b in gw.service.modbus.buses)

    sim.set_fault("io3", "ok")
    assert console.wait_for(lambda c: len(c.events_of("fault_cleared", "io3")) == 1, WAIT)
    assert console.wait_for(lambda c: len(c.events_of("alarm", "p3")) == 1, WAIT)
    assert not console.events_of("fault", "io4")


def test_a_slow_units_late_reply_is_not_taken_for_its_neighbours(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus(timeout_ms=60)],
        devices=[device("io3", 3), device("io4", 4)],
        inputs=[modbus_input("p3", "io3", 2), modbus_input("p4", "io4", 0)])
    with InProcessGateway(cfg) as gw:
        sim = sim_of(started(gw))
        bus = sim.bus_of("io3")
        # Timeout 60 ms. Unit 4 answers after about 26 ms; unit 3 after about 76 ms, too
        # late: its reply lands about 14 ms into the wait for unit 4's, and must not be
        # taken for it.
        sim.set_fault("io4", "slow", delay_s=0.020)
        sim.set_fault("io3", "slow", delay_s=0.070)
        assert console.wait_for(lambda c: len(c.events_of("fault", "io3")) == 1, WAIT)
        seen = bus.requests_to(4)
        assert bus.wait_for(lambda: bus.requests_to(4) >= seen + 10, WAIT)
        barrier(gw)
        fault = console.events_of("fault", "io3")[0]
        io4 = bus_status(gw, "rs485")["devices"][1]
    assert fault["detail"]["error"] == "timeout"
    assert any("while unit 4 was asked: not taken" in f["note"]
               for f in fault["detail"]["last_frames"]), fault["detail"]["last_frames"]
    assert (io4["state"], io4["failures"]) == ("ok", 0), io4["last_error"]
    assert not console.events_of("fault", "io4")


def test_flapping_unit_makes_one_fault_per_outage(two_units: InProcessGateway,
                                                  console: PlatformConsole) -> None:
    gw = two_units
    sim = sim_of(gw)
    sim.set_fault("io4", "flap", period_s=1.0)
    assert console.wait_for(lambda c: len(c.events_of("fault_cleared", "io4")) >= 2, WAIT)
    sim.set_fault("io4", "ok")
    barrier(gw)
    types = [e["type"] for e in console.ordered(GW) if e["point"]["id"] == "io4"]
    # Strictly alternating: never two faults without a clear between them.
    assert types[:4] == ["fault", "fault_cleared", "fault", "fault_cleared"]
    assert all(a != b for a, b in itertools.pairwise(types))


# -- a bus that is not there -----------------------------------------------------------------

def test_service_starts_without_its_serial_port_and_picks_the_bus_up(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    port = tmp_path / "dev" / "ttyUSB0"  # not there yet: the adapter is unplugged
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, modbus={"simulator": False},
        buses=[rtu_bus(port=str(port))], devices=[device("io1", 1)],
        inputs=[modbus_input("p1", "io1", 0)])
    with InProcessGateway(cfg) as gw:
        assert console.wait_for(lambda c: len(c.events_of("fault", "rs485")) == 1, WAIT)
        fault = console.events_of("fault", "rs485")[0]
        validate(fault)
        assert fault["source"] == "modbus:rs485"
        assert str(port) in fault["detail"]["reason"]
        assert "plugged in" in fault["detail"]["reason"]
        st = gw.service.status()  # the service runs and says why the bus is down
        assert st["modbus"][0]["link"] == "down"
        assert any(f["device"] == "rs485" for f in st["faults"])

        unit = SimUnit(1)
        with SimRtuBus(port, [unit], baud=115200) as sim:
            sim.set_bit(1, "di", 0, True)  # a latched button, pressed while unplugged
            assert console.wait_for(lambda c: len(c.events_of("fault_cleared", "rs485")) == 1,
                                    WAIT)
            assert console.wait_for(lambda c: len(c.events_of("alarm", "p1")) == 1, WAIT)
            # Unplugged again while running: the bus fault comes back, once.
        assert console.wait_for(lambda c: len(c.events_of("fault", "rs485")) == 2, WAIT)
    assert not console.events_of("fault", "io1")


def test_service_starts_with_the_tcp_module_down_and_picks_it_up(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    probe = SimTcpBus([1])
    probe.start()
    port = probe.port  # a port that was free a moment ago, and will be the module's
    probe.stop()
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, modbus={"simulator": False},
        buses=[tcp_bus(port=port)], devices=[device("gym", 1, bus="lan")],
        inputs=[modbus_input("gym-panic", "gym", 3)])
    with InProcessGateway(cfg) as gw:
        assert console.wait_for(lambda c: len(c.events_of("fault", "lan")) == 1, WAIT)
        reason = console.events_of("fault", "lan")[0]["detail"]["reason"]
        assert f"127.0.0.1:{port}" in reason and "cannot connect" in reason
        module = SimTcpBus([1], port=port)
        module.start()
        try:
            assert console.wait_for(lambda c: len(c.events_of("fault_cleared", "lan")) == 1,
                                    WAIT)
            module.set_bit(1, "di", 3, True)
            assert console.wait_for(lambda c: len(c.events_of("alarm", "gym-panic")) == 1,
                                    WAIT)
            assert console.events_of("alarm")[0]["source"] == "modbus:lan/1/di3"
        finally:
            module.stop()
        # The module goes away while running: a fault of the link, not a crash.
        assert console.wait_for(lambda c: len(c.events_of("fault", "lan")) == 2, WAIT)
        assert bus_status(gw, "lan")["link"] == "down"


# -- outputs ------------------------------------------------------------------------------------

def test_sounder_coil_and_gpio_strobe_follow_their_link(tmp_path: Path, broker: Mosquitto,
                                                        console: PlatformConsole) -> None:
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus()],
        devices=[device("io1", 1), device("relays", 2)],
        inputs=[modbus_input("p1", "io1", 0)],
        gpio_inputs=[{"id": "gate-panic", "kind": "panic", "gpio": 17, "contact": "NO",
                      "pull": "up"}],
        outputs=[{"id": "sounder", "name": "警号", "modbus": {"device": "relays",
                                                           "address": 3}},
                 {"id": "strobe", "name": "警灯", "gpio": 23, "active_level": "low"}],
        links=[{"inputs": ["p1", "gate-panic"], "outputs": ["sounder"], "until": "restore"},
               {"inputs": ["p1"], "outputs": ["strobe"], "for_s": 0.5}])
    with InProcessGateway(cfg) as gw:
        sim = sim_of(started(gw))
        assert gw.service.outputs is not None and gw.panel is not None
        strobe_pin = gw.service.pin_factory.pin(23)
        assert gw.service.outputs.wait_applied("strobe", WAIT)
        assert strobe_pin.state == 1  # active low: off is high
        sim.press("p1")
        assert sim.wait_for_coil("relays", 3, True, WAIT)
        assert gw.service.outputs.wait_applied("strobe", WAIT)
        assert strobe_pin.state == 0
        # for_s = 0.5: the strobe goes off by itself; until restore: the sounder stays.
        deadline = time.monotonic() + WAIT
        while strobe_pin.state == 0 and time.monotonic() < deadline:
            gw.service.outputs.wait_applied("strobe", 0.05)
        assert strobe_pin.state == 1
        assert sim.coil("relays", 3) is True
        # A GPIO button holds the sounder too; it goes off when the last one restores.
        gw.panel.press("gate-panic")
        assert console.wait_for(lambda c: bool(c.events_of("alarm", "gate-panic")), WAIT)
        sim.release("p1")
        assert console.wait_for(lambda c: bool(c.events_of("restore", "p1")), WAIT)
        barrier(gw)
        assert gw.service.outputs.wait_applied("sounder", WAIT)
        assert sim.coil("relays", 3) is True
        gw.panel.release("gate-panic")
        assert sim.wait_for_coil("relays", 3, False, WAIT)
        writes = sim.bus_of("relays").unit(2).writes
    assert writes[0] == ("coil", 3, False)  # switched off at start: it may have been on
    assert ("coil", 3, True) in writes
    alarm = console.events_of("alarm", "p1")[0]
    assert alarm["seq"] == 1


def test_failed_coil_write_is_retried_reported_and_never_delays_the_alarm(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus()],
        devices=[device("io1", 1), device("relays", 2)],
        inputs=[modbus_input("p1", "io1", 0)],
        outputs=[{"id": "sounder", "name": "警号", "location": "Guard room",
                  "modbus": {"device": "relays", "address": 0}}],
        links=[{"inputs": ["p1"], "outputs": ["sounder"], "until": "reset"}])
    with InProcessGateway(cfg) as gw:
        sim = sim_of(started(gw))
        outputs = gw.service.outputs
        assert outputs is not None
        assert outputs.wait_applied("sounder", WAIT)
        sim.set_fault("relays", "silent")  # the relay module dies (it is only written to)
        sim.press("p1")
        assert console.wait_for(lambda c: len(c.events_of("alarm", "p1")) == 1, WAIT)
        assert console.wait_for(lambda c: len(c.events_of("fault", "sounder")) == 1, WAIT)
        fault = console.events_of("fault", "sounder")[0]
        validate(fault)
        assert fault["source"] == "modbus:rs485/2/coil0"
        assert "cannot be switched on" in fault["detail"]["reason"]
        assert fault["detail"]["attempts"] == 4
        assert fault["detail"]["module"] == "relays"
        # The alarm was committed before the first write was even tried.
        assert console.events_of("alarm", "p1")[0]["seq"] < fault["seq"]
        assert outputs.status_of("sounder")["state"] == "faulty"
        requests = sim.bus_of("relays").requests_to(2)
        assert requests >= 4  # retried

        sim.set_fault("relays", "ok")
        assert console.wait_for(lambda c: len(c.events_of("fault_cleared", "sounder")) == 1,
                                WAIT)
        assert sim.coil("relays", 0) is True
        # until = "reset": it stays on after the restore, until switched off by hand.
        sim.release("p1")
        assert console.wait_for(lambda c: bool(c.events_of("restore", "p1")), WAIT)
        barrier(gw)
        assert sim.coil("relays", 0) is True
        gw.service.handle_control({"cmd": "output", "output": "sounder", "action": "off"})
        assert sim.coil("relays", 0) is False
    assert len(console.events_of("fault", "sounder")) == 1


def test_outputs_go_off_on_a_clean_stop(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus()],
        devices=[device("relays", 2)], inputs=[modbus_input("p1", "relays", 0)],
        outputs=[{"id": "lamp", "modbus": {"device": "relays", "address": 1}}])
    from gateway.config import load_config

    config = load_config(cfg)
    with SimModbus(config.modbus, config.outputs) as sim:
        service = Service(config, modbus_sim=sim)
        service.start()
        try:
            service.handle_control({"cmd": "output", "output": "lamp", "action": "on"})
            assert sim.coil("relays", 1) is True
        finally:
            service.stop()
        assert sim.coil("relays", 1) is False


def test_gpio_only_config_is_untouched(tmp_path: Path, broker: Mosquitto,
                                       console: PlatformConsole) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port)
    with InProcessGateway(cfg) as gw:
        assert gw.service.modbus is None and gw.service.outputs is None
        st = gw.service.status()
        assert st["modbus"] == [] and st["outputs"] == []

"""The Modbus driver's bus, without the rest of the gateway: probes, writes, stop, parsing.

Each test runs a `ModbusBus` against hw_sim's modules on a socat pty pair and collects what it
hands to the door.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.modbus import BusSettings, DeviceSettings, ModbusPointSettings
from gateway.drivers import FaultChange, InputChange
from gateway.drivers.modbus import (
    ModbusBus,
    decode_read,
    parse_units,
    read_pdu,
    rtu_adu,
    rtu_crc_ok,
)
from gateway.errors import ModbusExceptionReplyError, ModbusLinkError, ModbusTimeoutError
from hw_sim.modbus import SimRtuBus

WAIT = 10.0


class Door:
    """Collects what a driver hands in; waits on a Condition."""

    def __init__(self) -> None:
        self.changes: list[InputChange | FaultChange] = []
        self._cond = threading.Condition()

    def __call__(self, change: InputChange | FaultChange) -> None:
        with self._cond:
            self.changes.append(change)
            self._cond.notify_all()

    def wait_for(self, pred: object, timeout: float = WAIT) -> bool:
        assert callable(pred)
        with self._cond:
            return self._cond.wait_for(lambda: pred(self.changes), timeout)


def bus_settings(port: Path, timeout_ms: int = 200) -> BusSettings:
    return BusSettings(id="rs485", type="rtu", port=str(port), baud=115200, parity="N",
                       stopbits=1, host="", tcp_port=0, timeout_ms=timeout_ms,
                       poll_interval_ms=10)


DEVICES = [DeviceSettings("io1", "rs485", 1, "IO 1", ""),
           DeviceSettings("io2", "rs485", 2, "IO 2", "")]
POINTS = [ModbusPointSettings("p1", "P1", "", "panic", "io1", "rs485", 1, "di", 0, None, "NO", 0),
          ModbusPointSettings("p2", "P2", "", "panic", "io2", "rs485", 2, "di", 0, None, "NO",
                              0)]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimRtuBus]:
    with SimRtuBus(tmp_path / "ttyUSB0", [1, 2], baud=115200) as s:
        yield s


def test_a_faulty_modules_probes_wait_less_than_a_full_timeout(tmp_path: Path,
                                                               sim: SimRtuBus) -> None:
    door = Door()
    bus = ModbusBus(bus_settings(sim.port), DEVICES, POINTS, door, fail_after=2,
                    probe_interval_s=0.05)
    bus.start()
    notes: list[str] = []
    try:
        assert bus.first_cycle.wait(WAIT)
        sim.set_fault(2, "silent")
        assert door.wait_for(lambda ch: any(isinstance(c, FaultChange) for c in ch))
        seen = sim.requests_to(2)
        deadline = time.monotonic() + WAIT
        while sim.requests_to(2) < seen + 8 and time.monotonic() < deadline:
            notes += [f["note"] for f in bus.ring.last(64, unit=2) if f["dir"] == "--"]
            time.sleep(0.02)
    finally:
        bus.stop()
    waits = {int(m.group(1)) for n in notes if (m := re.match(r"no reply within (\d+) ms", n))}
    # Full timeouts before the fault and on every fourth probe; capped ones in between.
    assert 200 in waits
    assert any(w < 50 for w in waits), waits


def test_coil_writes_go_between_polls_and_fail_fast_when_the_bus_is_down(
        tmp_path: Path, sim: SimRtuBus) -> None:
    door = Door()
    bus = ModbusBus(bus_settings(sim.port), DEVICES, POINTS, door)
    bus.start()
    try:
        assert bus.first_cycle.wait(WAIT)
        bus.write_coil("io2", 5, True).result(WAIT)
        assert sim.get_bit(2, "coil", 5) is True
        sim.set_fault(2, "exception", code=2)
        with pytest.raises(ModbusExceptionReplyError) as info:
            bus.write_coil("io2", 5, False).result(WAIT)
        assert info.value.code == 2
        sim.set_fault(2, "silent")
        with pytest.raises(ModbusTimeoutError):
            bus.write_coil("io2", 5, False).result(WAIT)
        assert bus.counters_dict()["write_failures"] == 2
    finally:
        bus.stop()
    # Stopped: a write fails at once, it is never left hanging.
    with pytest.raises(ModbusLinkError):
        bus.write_coil("io1", 0, True).result(1.0)


def test_stop_is_prompt_even_in_a_long_wait(tmp_path: Path, sim: SimRtuBus) -> None:
    door = Door()
    bus = ModbusBus(bus_settings(sim.port, timeout_ms=5000), DEVICES, POINTS, door)
    sim.set_fault(1, "silent")
    bus.start()
    time.sleep(0.05)  # let it enter the 5 s wait for unit 1
    t0 = time.monotonic()
    bus.stop()
    assert time.monotonic() - t0 < 1.0
    # Stopping is not a fault of the module.
    assert not [c for c in door.changes if isinstance(c, FaultChange)]


def test_frames_and_decoding() -> None:
    pdu = read_pdu(2, 0, 8)
    assert rtu_adu(1, pdu).hex(" ") == "01 02 00 00 00 08 79 cc"
    assert rtu_crc_ok(bytes.fromhex("01020105618b"))
    assert not rtu_crc_ok(bytes.fromhex("01020105618a"))
    assert decode_read("di", 3, bytes.fromhex("020105")) == [True, False, True]
    assert decode_read("ir", 2, bytes.fromhex("040400010200")) == [1, 0x200]
    with pytest.raises(ValueError, match="data bytes"):
        decode_read("di", 9, bytes.fromhex("020105"))  # 9 bits need 2 bytes


@pytest.mark.parametrize(("text", "units"), [("1-4", [1, 2, 3, 4]), ("1,3,5-6", [1, 3, 5, 6]),
                                              ("247", [247])])
def test_parse_units(text: str, units: list[int]) -> None:
    assert parse_units(text) == units


@pytest.mark.parametrize("text", ["", "a-b", "5-2", "1-300"])
def test_parse_units_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_units(text)

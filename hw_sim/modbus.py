"""Simulated Modbus alarm I/O modules: a real pymodbus server, RTU over a pty pair, TCP on loopback.

`SimRtuBus` starts `socat` with a pseudo-terminal pair: pymodbus'
`ModbusSerialServer` serves one end, and the gateway's driver opens the
other (the configured port path, a symlink socat makes) with pyserial,
exactly as it opens /dev/ttyUSB0 on a Pi. `SimTcpBus` is pymodbus'
`ModbusTcpServer` on 127.0.0.1. Every unit id on a bus is a `SimDevice`
with discrete inputs, coils, input and holding registers.

A pty carries bytes at once; a real RS-485 line does not. Each reply is
held back as long as the line would take: the request's frame, the 3.5
character silence that ends it, the module's turnaround, and the reply's
frame, all at the configured baud rate and character format. A unit id
that no module has stays silent, as on a real bus.

Faults are injected per unit (`set_fault`): no reply (`silent`), a reply
with a corrupted CRC (`bad-crc`; on TCP, which has no CRC, a frame with a
broken header), an exception code (`exception`), a reply claiming another
unit id (`wrong-unit`), silent and answering in turn (`flap`), or a slow
turnaround (`slow`); for the next N requests or until cleared (`ok`).

Buttons are pressed through `SimModbus` (by the config's input ids), which
the service owns on the simulator as it owns the GPIO MockFactory, so
`alarmgw sim press` drives Modbus buttons like GPIO ones.

This module reaches into pymodbus' request handler (pinned to 3.16.x) to
delay and corrupt replies: the hooks pymodbus offers for it (trace_packet,
the SimDevice action) run synchronously or before the request is checked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusBaseServer, ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.config.modbus import (
    BusSettings,
    DeviceSettings,
    ModbusPointSettings,
    ModbusSettings,
    Table,
    rtu_char_s,
    rtu_gap_s,
)
from gateway.config.outputs import OutputSettings
from gateway.drivers.modbus import rtu_adu
from hw_sim.lifeline import die_with_parent

log = logging.getLogger(__name__)

FAULT_MODES = ("ok", "silent", "bad-crc", "exception", "wrong-unit", "flap", "slow")
#: A module's default time from the end of a request to the start of its reply, in seconds.
DEFAULT_TURNAROUND_S = 0.002
#: How long socat and the servers get to come up, in seconds.
_START_TIMEOUT_S = 10.0


@dataclass
class Fault:
    """What a unit does wrong."""

    mode: str = "ok"
    code: int = 4
    """The exception code of mode 'exception' (4: server device failure)."""
    count: int | None = None
    """Requests it applies to; None: until cleared."""
    period_s: float = 2.0
    """Mode 'flap': silent for the first half of each period, answering for the second."""
    delay_s: float = 0.5
    """Mode 'slow': extra turnaround, in seconds."""
    since: float = field(default_factory=time.monotonic)

    def effective_mode(self, now: float) -> str:
        if self.mode != "flap":
            return self.mode
        phase = (now - self.since) % self.period_s
        return "silent" if phase < self.period_s / 2 else "ok"


class SimUnit:
    """One simulated I/O module: its four tables and its fault. Guarded by its bus's lock."""

    def __init__(self, unit: int, bits: int = 32, registers: int = 16) -> None:
        self.unit = unit
        bits = max(16, (bits + 15) // 16 * 16)
        registers = max(1, registers)
        self.tables: dict[str, list[Any]] = {
            "di": [False] * bits, "coil": [False] * bits,
            "ir": [0] * registers, "hr": [0] * registers,
        }
        self.fault = Fault()
        self.requests = 0
        self.replies = 0
        self.writes: list[tuple[str, int, Any]] = []
        """Every write received: (table, address, value)."""

    def device(self, bus: SimBus) -> SimDevice:
        nbits = len(self.tables["di"])
        nregs = len(self.tables["ir"])

        async def action(function_code: int, start_address: int,  # noqa: PLR0917 (pymodbus')
                         address: int, count: int,
                         registers: list[int], set_values: list[int] | list[bool] | None
                         ) -> None:
            bus._sync(self, function_code, address, registers, set_values)

        return SimDevice(
            id=self.unit,
            simdata=(
                [SimData(0, values=[False] * nbits, datatype=DataType.BITS)],
                [SimData(0, values=[False] * nbits, datatype=DataType.BITS)],
                [SimData(0, count=nregs, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=nregs, values=0, datatype=DataType.REGISTERS)],
            ),
            action=action,
        )


_FC_TABLE = {1: "coil", 5: "coil", 15: "coil", 2: "di", 3: "hr", 6: "hr", 16: "hr", 4: "ir"}


def _bits_to_registers(bits: list[bool]) -> list[int]:
    regs = []
    for i in range(0, len(bits), 16):
        reg = 0
        for j, b in enumerate(bits[i:i + 16]):
            if b:
                reg |= 1 << j
        regs.append(reg)
    return regs


@dataclass
class _Fate:
    mode: str
    code: int
    extra_s: float


class _Handler(ServerRequestHandler):
    """pymodbus' request handler, with a line's timing and the unit's faults."""

    sim: SimBus

    def __init__(self, owner: Any, sim: SimBus) -> None:
        super().__init__(owner, None, None, None)  # type: ignore[no-untyped-call]
        self.sim = sim
        self._rx_at = 0.0
        self._req_len = 0
        self._fate = _Fate("ok", 0, 0.0)

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        rx_at = self.loop.time()
        used: int = super().callback_data(data, addr)
        if self.last_pdu is not None:
            self._rx_at = rx_at
            self._req_len = used or len(data)
        return used

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if pdu is None:
            return
        fate = self.sim._fate(pdu.dev_id)
        if fate is None or fate.mode == "silent":
            return
        self._fate = fate
        if fate.mode == "exception":
            # The module refuses: nothing is read or written.
            resp = ExceptionResponse(pdu.function_code, fate.code, device_id=pdu.dev_id,
                                     transaction=pdu.transaction_id)
            self.server_send(resp, self.last_addr)
            return
        await super().handle_request()  # type: ignore[no-untyped-call]

    def server_send(self, pdu: ModbusPDU | None, addr: Any) -> None:
        if pdu is None:
            return
        packet = self.framer.buildFrame(pdu)
        fate = self._fate
        rtu = self.sim.is_rtu
        if fate.mode == "bad-crc":
            if rtu:
                packet = packet[:-1] + bytes([packet[-1] ^ 0x5A])
            else:
                packet = packet[:2] + b"\x00\x07" + packet[4:]  # protocol id must be 0
        elif fate.mode == "wrong-unit":
            other = pdu.dev_id % 247 + 1
            if rtu:
                packet = rtu_adu(other, packet[1:-2])
            else:
                packet = packet[:6] + bytes([other]) + packet[7:]
        delay = self.sim.reply_delay_s(self._req_len, len(packet)) + fate.extra_s
        self.loop.call_at(self._rx_at + delay, self._send_now, packet, addr)

    def _send_now(self, packet: bytes, addr: Any) -> None:
        if self.transport is None:
            return
        self.sim._count_reply()
        self.send(packet, addr)


class _SerialServer(ModbusSerialServer):
    sim: SimBus

    def callback_new_connection(self) -> _Handler:
        return _Handler(self, self.sim)


class _TcpServer(ModbusTcpServer):
    sim: SimBus

    def callback_new_connection(self) -> _Handler:
        return _Handler(self, self.sim)


class SimBus:
    """Simulated modules on one bus, served by pymodbus on an event loop in its own thread."""

    is_rtu = False

    def __init__(self, units: Iterable[int | SimUnit], *, baud: int = 9600, parity: str = "N",
                 stopbits: int = 1, turnaround_s: float = DEFAULT_TURNAROUND_S,
                 name: str = "sim") -> None:
        """`units`: unit ids (or SimUnits) on the bus; `baud`, `parity`, `stopbits`: the line
        whose timing replies follow; `turnaround_s`: a module's time to start answering."""
        self.units: dict[int, SimUnit] = {}
        for u in units:
            su = u if isinstance(u, SimUnit) else SimUnit(u)
            self.units[su.unit] = su
        self.baud = baud
        self.parity = parity
        self.stopbits = stopbits
        self.turnaround_s = turnaround_s
        self.name = name
        self._lock = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: _SerialServer | _TcpServer | None = None
        self.ignored = 0
        """Requests to unit ids no module has."""
        self.replies = 0

    # -- the line --------------------------------------------------------------------

    def reply_delay_s(self, request_len: int, reply_len: int) -> float:
        """When the whole reply would have arrived, counted from when the request did."""
        if not self.is_rtu:
            return self.turnaround_s
        char = rtu_char_s(self.baud, self.parity, self.stopbits)
        return ((request_len + reply_len) * char + rtu_gap_s(self.baud, self.parity,
                                                             self.stopbits)
                + self.turnaround_s)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"sim-modbus-{self.name}",
                                        daemon=True)
        self._thread.start()
        try:
            self._before_serve()
            fut = asyncio.run_coroutine_threadsafe(self._serve(), loop)
            self._server = fut.result(_START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise

    def _before_serve(self) -> None:
        """Prepare what the server needs (socat for RTU)."""

    async def _make_server(self) -> _SerialServer | _TcpServer:
        raise NotImplementedError

    async def _serve(self) -> _SerialServer | _TcpServer:
        server = await self._make_server()
        server.sim = self
        await server.serve_forever(background=True)
        return server

    def stop(self) -> None:
        loop = self._loop
        if loop is not None:
            server, self._server = self._server, None
            if server is not None and loop.is_running():
                async def shutdown() -> None:
                    await server.shutdown()  # type: ignore[no-untyped-call]
                    for task in asyncio.all_tasks():
                        if task is not asyncio.current_task():
                            task.cancel()

                try:
                    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(_START_TIMEOUT_S)
                except Exception:
                    log.exception("simulated Modbus bus %s: shutdown failed", self.name)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(_START_TIMEOUT_S)
                self._thread = None
            loop.close()
            self._loop = None
            if ModbusBaseServer.active_server is server:
                ModbusBaseServer.active_server = None  # pymodbus keeps the last one
        self._after_stop()

    def _after_stop(self) -> None:
        """Release what _before_serve made."""

    def __enter__(self) -> SimBus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the modules' state --------------------------------------------------------------

    def unit(self, unit: int) -> SimUnit:
        try:
            return self.units[unit]
        except KeyError:
            known = ", ".join(map(str, sorted(self.units)))
            raise KeyError(f"no simulated unit {unit} on bus {self.name} (units: {known})"
                           ) from None

    def set_bit(self, unit: int, table: Table, address: int, value: bool,
                bit: int | None = None) -> None:
        """Set a discrete input or coil, or bit `bit` of a register."""
        with self._lock:
            t = self.unit(unit).tables[table]
            if bit is None:
                t[address] = bool(value)
            else:
                t[address] = (t[address] & ~(1 << bit)) | (int(bool(value)) << bit)
            self._lock.notify_all()

    def get_bit(self, unit: int, table: Table, address: int, bit: int | None = None) -> bool:
        with self._lock:
            v = self.unit(unit).tables[table][address]
        return bool(v) if bit is None else bool((int(v) >> bit) & 1)

    def set_fault(self, unit: int, mode: str, *, code: int = 4, count: int | None = None,
                  period_s: float = 2.0, delay_s: float = 0.5) -> None:
        """Make `unit` misbehave (see the module docstring); mode 'ok' clears."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r} (modes: {', '.join(FAULT_MODES)})")
        with self._lock:
            self.unit(unit).fault = Fault(mode=mode, code=code, count=count, period_s=period_s,
                                          delay_s=delay_s)
            self._lock.notify_all()

    def fault(self, unit: int) -> Fault:
        with self._lock:
            return replace(self.unit(unit).fault)

    def requests_to(self, unit: int) -> int:
        with self._lock:
            return self.unit(unit).requests

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds; it is checked whenever a module's state changes."""
        with self._lock:
            return self._lock.wait_for(predicate, timeout)

    # -- called by the server, in its loop -------------------------------------------------

    def _fate(self, unit: int) -> _Fate | None:
        with self._lock:
            su = self.units.get(unit)
            if su is None:
                self.ignored += 1
                return None
            su.requests += 1
            f = su.fault
            mode = f.effective_mode(time.monotonic())
            if f.count is not None:
                f.count -= 1
                if f.count <= 0:
                    su.fault = Fault()
            self._lock.notify_all()
            return _Fate(mode, f.code, f.delay_s if mode == "slow" else 0.0)

    def _count_reply(self) -> None:
        with self._lock:
            self.replies += 1

    def _sync(self, su: SimUnit, function_code: int, address: int, registers: list[int],
              set_values: list[int] | list[bool] | None) -> None:
        """Mirror the model into pymodbus' registers before a read; record a write."""
        table = _FC_TABLE.get(function_code)
        if table is None:
            return
        with self._lock:
            values = su.tables[table]
            if set_values:
                for i, v in enumerate(set_values):
                    values[address + i] = bool(v) if table in ("di", "coil") else int(v)
                    su.writes.append((table, address + i, values[address + i]))
                self._lock.notify_all()
            regs = _bits_to_registers(values) if table in ("di", "coil") else list(values)
            registers[: len(regs)] = regs


class SimRtuBus(SimBus):
    """Modules on an RS-485 bus: socat's pty pair, pymodbus' serial server on one end."""

    is_rtu = True

    def __init__(self, port: Path | str, units: Iterable[int | SimUnit], **kwargs: Any) -> None:
        """`port`: the path the driver opens (a symlink socat makes; it must not exist, or be
        a stale symlink)."""
        super().__init__(units, **kwargs)
        self.port = Path(port)
        self._tmp: Path | None = None
        self._socat: subprocess.Popen[bytes] | None = None
        self._drain: threading.Thread | None = None

    def _before_serve(self) -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is not installed: sudo apt-get install socat (or run"
                               " scripts/setup)")
        for path in (self.port,):
            if path.is_symlink():
                path.unlink()  # left by a simulator that was killed
            elif path.exists():
                raise FileExistsError(f"{path} exists and is not a simulator's pty link;"
                                      " refusing to replace it")
        self.port.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix="alarmgw-sim-rtu-"))
        server_end = self._tmp / "module-side"
        proc = subprocess.Popen(
            [socat, "-d", "-d", f"pty,raw,echo=0,link={self.port}",
             f"pty,raw,echo=0,link={server_end}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=die_with_parent)  # noqa: PLW1509 (hw_sim.lifeline)
        self._socat = proc
        assert proc.stderr is not None
        # socat says "starting data transfer loop" once both ptys and their links exist.
        lines = _read_until(proc.stderr, b"starting data transfer loop", _START_TIMEOUT_S)
        if lines is None:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"socat did not make its pty pair for {self.port}")
        self._server_end = server_end
        self._drain = threading.Thread(target=_drain_lines, args=(proc.stderr, self.name),
                                       name=f"sim-socat-{self.name}", daemon=True)
        self._drain.start()

    async def _make_server(self) -> _SerialServer:
        return _SerialServer([u.device(self) for u in self.units.values()],
                             port=str(self._server_end), baudrate=self.baud,
                             parity=self.parity, stopbits=self.stopbits)

    def _after_stop(self) -> None:
        proc, self._socat = self._socat, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(_START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._drain is not None:
            self._drain.join(_START_TIMEOUT_S)
            self._drain = None
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self.port.is_symlink():
            self.port.unlink()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class SimTcpBus(SimBus):
    """A Modbus TCP module (or a TCP gateway with several units) on loopback."""

    def __init__(self, units: Iterable[int | SimUnit], *, host: str = "127.0.0.1",
                 port: int = 0, **kwargs: Any) -> None:
        """`port` 0: the OS picks one (read `port` after start)."""
        kwargs.setdefault("turnaround_s", 0.001)
        super().__init__(units, **kwargs)
        self.host = host
        self.port = port

    async def _make_server(self) -> _TcpServer:
        return _TcpServer([u.device(self) for u in self.units.values()],
                          address=(self.host, self.port))

    async def _serve(self) -> _TcpServer:
        server = await super()._serve()
        assert isinstance(server, _TcpServer)
        listener: Any = server.transport
        self.port = int(listener.sockets[0].getsockname()[1])
        return server


def _read_until(stream: Any, marker: bytes, timeout: float) -> list[bytes] | None:
    """Read lines from a pipe until one contains `marker` (None on EOF or timeout)."""
    lines: list[bytes] = []
    buf = b""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            buf += chunk
            *done, buf = buf.split(b"\n")
            for line in done:
                lines.append(line)
                if marker in line:
                    return lines


def _drain_lines(stream: Any, name: str) -> None:
    """Keep reading socat's log so it never blocks on a full pipe; ends when socat exits."""
    try:
        for line in iter(stream.readline, b""):
            log.debug("socat %s: %s", name, line.decode(errors="replace").rstrip())
    except (OSError, ValueError):
        pass


# -- the simulated modules of a config -----------------------------------------------------

class SimModbus:
    """The simulated modules of a config: buttons by input id, faults by module id.

    One `SimRtuBus` per RTU bus (at the configured port path) and one `SimTcpBus` per TCP
    bus (on a free loopback port: see `endpoints()`). Every input starts in its normal
    state: a normally-closed contact's bit reads 1, a normally-open one's 0.
    """

    def __init__(self, settings: ModbusSettings, outputs: Iterable[OutputSettings] = (),
                 *, turnaround_s: float = DEFAULT_TURNAROUND_S) -> None:
        self.settings = settings
        self.points = {p.id: p for p in settings.points}
        self.devices = {d.id: d for d in settings.devices}
        outputs = list(outputs)
        self.buses: dict[str, SimBus] = {}
        for bus in settings.buses:
            units = [self._unit_for(d.id, outputs) for d in settings.devices if d.bus == bus.id]
            self.buses[bus.id] = _make_bus(bus, units, turnaround_s)
        for p in settings.points:
            self.set_active(p.id, False)

    def _unit_for(self, device_id: str, outputs: list[OutputSettings]) -> SimUnit:
        dev = self.devices[device_id]
        bits, regs = 16, 16
        for p in self.points.values():
            if p.device != device_id:
                continue
            if p.table in ("di", "coil"):
                bits = max(bits, p.address + 1)
            else:
                regs = max(regs, p.address + 1)
        for o in outputs:
            if o.device == device_id:
                bits = max(bits, o.address + 1)
        return SimUnit(dev.unit, bits=bits, registers=regs)

    def start(self) -> None:
        started: list[SimBus] = []
        try:
            for bus in self.buses.values():
                bus.start()
                started.append(bus)
        except BaseException:
            for bus in started:
                bus.stop()
            raise

    def stop(self) -> None:
        for bus in self.buses.values():
            bus.stop()

    def __enter__(self) -> SimModbus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def endpoints(self) -> dict[str, str | tuple[str, int]]:
        """Where the driver finds each bus (after start)."""
        out: dict[str, str | tuple[str, int]] = {}
        for bus_id, bus in self.buses.items():
            if isinstance(bus, SimRtuBus):
                out[bus_id] = str(bus.port)
            elif isinstance(bus, SimTcpBus):
                out[bus_id] = (bus.host, bus.port)
        return out

    # -- buttons ---------------------------------------------------------------------------

    def handles(self, req: dict[str, Any]) -> bool:
        """A `sim` request is for the modules when it names one of their points or asks
        for a module's fault (gateway.drivers.backends.Simulated)."""
        return req.get("action") == "modbus-fault" or self.has_point(str(req.get("input")))

    def control(self, req: dict[str, Any]) -> dict[str, Any]:
        """`alarmgw sim press|release POINT` and `alarmgw sim modbus-fault MODULE MODE`."""
        action = req.get("action")
        if action == "modbus-fault":
            device = str(req.get("device", ""))
            mode = str(req.get("mode", ""))
            opts: dict[str, Any] = {}
            for key, conv in (("code", int), ("count", int), ("period_s", float),
                              ("delay_s", float)):
                if req.get(key) is not None:
                    opts[key] = conv(req[key])
            self.set_fault(device, mode, **opts)
            f = self.fault(device)
            return {"device": device, "mode": f.mode, "count": f.count}
        point = str(req.get("input", ""))
        if action == "press":
            self.press(point)
        elif action == "release":
            self.release(point)
        else:
            raise ValueError(f"sim action {action!r} is not for Modbus inputs (press, release)")
        return {"input": point, "active": self.is_active(point)}

    def has_point(self, point_id: str) -> bool:
        return point_id in self.points

    def set_active(self, point_id: str, active: bool) -> None:
        """Put the input's contact in its active (pressed) or normal state."""
        p = self._point(point_id)
        value = p.active_value if active else not p.active_value
        self.buses[p.bus].set_bit(p.unit, p.table, p.address, value, p.bit)

    def press(self, point_id: str) -> None:
        self.set_active(point_id, True)

    def release(self, point_id: str) -> None:
        self.set_active(point_id, False)

    def is_active(self, point_id: str) -> bool:
        p = self._point(point_id)
        return self.buses[p.bus].get_bit(p.unit, p.table, p.address, p.bit) == p.active_value

    def _point(self, point_id: str) -> ModbusPointSettings:
        try:
            return self.points[point_id]
        except KeyError:
            known = ", ".join(sorted(self.points))
            raise KeyError(f"no Modbus input {point_id!r} (Modbus inputs: {known})") from None

    # -- modules ------------------------------------------------------------------------------

    def bus_of(self, device_id: str) -> SimBus:
        return self.buses[self._device(device_id).bus]

    def _device(self, device_id: str) -> DeviceSettings:
        try:
            return self.devices[device_id]
        except KeyError:
            known = ", ".join(sorted(self.devices))
            raise KeyError(f"no Modbus module {device_id!r} (modules: {known})") from None

    def set_fault(self, device_id: str, mode: str, **kwargs: Any) -> None:
        dev = self._device(device_id)
        self.buses[dev.bus].set_fault(dev.unit, mode, **kwargs)

    def fault(self, device_id: str) -> Fault:
        dev = self._device(device_id)
        return self.buses[dev.bus].fault(dev.unit)

    def coil(self, device_id: str, address: int) -> bool:
        dev = self._device(device_id)
        return self.buses[dev.bus].get_bit(dev.unit, "coil", address)

    def wait_for_coil(self, device_id: str, address: int, value: bool, timeout: float) -> bool:
        dev = self._device(device_id)
        bus = self.buses[dev.bus]
        return bool(bus.wait_for(lambda: bus.get_bit(dev.unit, "coil", address) == value,
                                 timeout))


def _make_bus(bus: BusSettings, units: list[SimUnit], turnaround_s: float) -> SimBus:
    if bus.type == "rtu":
        return SimRtuBus(bus.port, units, baud=bus.baud, parity=bus.parity,
                         stopbits=bus.stopbits, turnaround_s=turnaround_s, name=bus.id)
    return SimTcpBus(units, host="127.0.0.1", port=0, name=bus.id)

"""Modbus alarm I/O modules on RS-485 (RTU) and Modbus TCP: polled, supervised, at bus speed.

Layers, bottom up:

- A *link* carries one request and its reply: `RtuLink` on a serial port
  (pyserial, exactly as on a Pi with a USB RS-485 adapter), `TcpLink` on a
  socket. pymodbus builds and parses the PDUs and computes the CRC. The
  link reads the reply itself, by its length, because it must tell a
  timeout from a bad CRC, an exception reply and a reply from the wrong
  unit; must not wait a moment longer than the reply needs (pymodbus' sync
  client polls the port every four character times and waits out its whole
  timeout after a frame it drops); and keeps every frame in the bus's ring
  buffer for `alarmgw status` and fault reports.
- A `ModbusBus` owns one link and one thread. RS-485 is half duplex: one
  request at a time. A poll cycle reads every configured point with the
  requests `config_modbus.plan_reads` plans (points close together on a
  module in one request); a cycle starts every `poll_interval_ms`, or at
  once when the previous one took longer: no idle time beyond the
  interval. Coil writes for outputs go between two requests.
- Supervision: a module that fails `fail_after` requests in a row (timeout,
  bad CRC, exception code, reply from another unit) is reported faulty
  once, naming the bus, the unit and the reason, with its last frames; it
  is then probed once every `probe_interval_s`, at most one faulty module
  per cycle, with its timeout capped to three times the longest round trip
  it ever had (every fourth probe waits the full timeout, in case it came
  back slower): a dead module costs the others a few milliseconds now and
  then, never a timeout every cycle. When it answers again, its fault
  clears and its points are read: a latched panic button pressed during the
  outage raises its alarm. A serial port that is missing or a TCP module that cannot be reached is a
  fault of the bus, tried again every `probe_interval_s`.
- `ModbusInputs`: every bus of the config; hands `InputChange`s and
  `FaultChange`s to the engine's door, never waits on the engine.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import serial
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
)

from gateway.clock import mono_ns
from gateway.config.modbus import (
    TIMEOUT_MARGIN_S,
    BusSettings,
    DeviceSettings,
    ModbusPointSettings,
    ModbusSettings,
    ReadBlock,
    plan_reads,
    rtu_char_s,
    rtu_gap_s,
)
from gateway.drivers import FaultChange, InputChange
from gateway.errors import (
    ModbusError,
    ModbusExceptionReplyError,
    ModbusFrameError,
    ModbusLinkError,
    ModbusTimeoutError,
)

log = logging.getLogger(__name__)

#: Frames kept per bus for `alarmgw status` and fault reports.
FRAME_RING = 64
#: Frames of the failing unit put in its fault event.
FRAMES_IN_FAULT = 8
#: Longest a stray reply is drained after a bad frame, in seconds.
_DRAIN_MAX_S = 0.25

Door = Callable[[InputChange | FaultChange], None]
Endpoint = str | tuple[str, int]
"""Where a bus really is when the config is overridden: a serial path, or (host, port)."""

_EXCEPTION_NAMES = {int(c): c.name.lower().replace("_", " ") for c in ExcCodes}
_READ_PDU: dict[int, type[ModbusPDU]] = {
    1: ReadCoilsRequest, 2: ReadDiscreteInputsRequest,
    3: ReadHoldingRegistersRequest, 4: ReadInputRegistersRequest,
}
_DECODER = DecodePDU(False)


def exception_name(code: int) -> str:
    return _EXCEPTION_NAMES.get(code, "unknown")


def read_pdu(function_code: int, address: int, count: int) -> bytes:
    """The PDU (function code and data) of a read request, built by pymodbus."""
    req = _READ_PDU[function_code](address=address, count=count)
    return bytes([req.function_code]) + req.encode()


def write_coil_pdu(address: int, on: bool) -> bytes:
    req = WriteSingleCoilRequest(address=address, bits=[on])
    return bytes([req.function_code]) + req.encode()


def rtu_adu(unit: int, pdu: bytes) -> bytes:
    """An RTU frame: unit, PDU, CRC (low byte first)."""
    frame = bytes([unit]) + pdu
    return frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")


def rtu_crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and FramerRTU.check_CRC(frame[:-2],
                                                  int.from_bytes(frame[-2:], "big"))


def _rtu_reply_length(head: bytes) -> int | None:
    """Total length of an RTU reply from its first three bytes; None if they make no sense."""
    fc = head[1]
    if fc & 0x80:
        return 5
    if fc in (1, 2, 3, 4):
        return 5 + head[2]
    if fc in (5, 6, 15, 16):
        return 8
    return None


# -- frames and counters -------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """One frame seen on a bus (or a note about what was not seen)."""

    mono: float
    dir: str
    """'tx', 'rx', or '--' for a note without bytes (a timeout)."""
    unit: int | None
    data: bytes
    note: str = ""

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"ago_ms": round((now - self.mono) * 1000, 1), "dir": self.dir, "unit": self.unit,
                "hex": self.data.hex(" "), "note": self.note}


class FrameRing:
    """The last frames of a bus, thread-safe: written by the bus thread, read by status."""

    def __init__(self, size: int = FRAME_RING) -> None:
        self._frames: deque[Frame] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, direction: str, unit: int | None, data: bytes, note: str = "") -> None:
        with self._lock:
            self._frames.append(Frame(time.monotonic(), direction, unit, bytes(data), note))

    def last(self, n: int, unit: int | None = None) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            frames = [f for f in self._frames if unit is None or f.unit == unit]
        return [f.as_dict(now) for f in frames[-n:]]


@dataclass(frozen=True)
class Exchange:
    """A request that got a good reply."""

    reply: bytes
    """The reply's PDU: function code and data."""
    sent_ns: int
    """CLOCK_BOOTTIME when the request was written, in ns."""
    rtt_s: float
    """From writing the request to having the whole reply, in seconds."""


# -- links ---------------------------------------------------------------------------

class Link(Protocol):
    """Carries one request and its reply. Used from one thread, except `abort`.

    `transact` raises ModbusTimeoutError (no reply), ModbusFrameError (bad CRC, reply
    from another unit, malformed), ModbusExceptionReplyError (an exception code) or
    ModbusLinkError (the port or connection is gone; the link is then closed)."""

    where: str

    @property
    def is_open(self) -> bool: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Make a `transact` blocked in another thread return soon (on stop)."""

    def transact(self, unit: int, pdu: bytes, timeout_s: float) -> Exchange: ...


class RtuLink:
    """Modbus RTU on a serial port: pyserial, 8 data bits, the configured parity and stop bits."""

    def __init__(self, bus_id: str, port: str, *, baud: int, parity: str, stopbits: int,
                 ring: FrameRing) -> None:
        self.bus_id = bus_id
        self.port = port
        self.baud = baud
        self.parity = parity
        self.stopbits = stopbits
        self.ring = ring
        self.where = f"{port} {baud} 8{parity}{stopbits}"
        self.char_s = rtu_char_s(baud, parity, stopbits)
        self.gap_s = rtu_gap_s(baud, parity, stopbits)
        self._ser: serial.Serial | None = None
        self._quiet_at = 0.0
        """Monotonic time from which the line has been silent for t3.5."""

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        if self._ser is not None:
            return
        try:
            self._ser = serial.Serial(
                port=self.port, baudrate=self.baud, bytesize=serial.EIGHTBITS,
                parity=self.parity, stopbits=self.stopbits, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ModbusLinkError(
                self.bus_id, None,
                f"cannot open serial port {self.port}: {_reason(exc)}; check that the USB"
                " RS-485 adapter is plugged in (ls -l /dev/serial/by-id/), that no other"
                " program has the port open, and that the service user is in the dialout"
                " group") from exc
        self._quiet_at = time.monotonic() + self.gap_s

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass

    def abort(self) -> None:
        ser = self._ser
        if ser is not None:
            try:
                ser.cancel_read()
            except (serial.SerialException, OSError, AttributeError):
                pass

    def _lost(self, exc: BaseException) -> ModbusLinkError:
        self.close()
        return ModbusLinkError(self.bus_id, None,
                               f"serial port {self.port} failed: {_reason(exc)}; check that"
                               " the USB RS-485 adapter is still plugged in")

    def _read(self, ser: serial.Serial, n: int, deadline: float) -> bytes:
        ser.timeout = max(0.0, deadline - time.monotonic())
        return bytes(ser.read(n))

    def _drain(self, ser: serial.Serial, unit: int | None) -> None:
        """Read until the line has been silent for t3.5, so the next request starts clean."""
        junk = bytearray()
        end = time.monotonic() + _DRAIN_MAX_S
        while time.monotonic() < end:
            ser.timeout = max(self.gap_s, 0.002)
            chunk = ser.read(256)
            if not chunk:
                break
            junk += chunk
        if junk:
            self.ring.add("rx", unit, bytes(junk), "discarded (resynchronising)")
        self._quiet_at = time.monotonic() + self.gap_s

    def transact(self, unit: int, pdu: bytes, timeout_s: float) -> Exchange:
        ser = self._ser
        if ser is None:
            raise ModbusLinkError(self.bus_id, unit, f"serial port {self.port} is not open")
        request = rtu_adu(unit, pdu)
        wait = self._quiet_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # the t3.5 silence before a new frame; under 4 ms at 9600 baud
        try:
            stale = ser.in_waiting
            if stale:
                self.ring.add("rx", None, bytes(ser.read(stale)), "stray bytes before a request,"
                              " discarded")
            ser.write(request)
            sent = time.monotonic()
            sent_ns = mono_ns()
            self.ring.add("tx", unit, request)
            frame = self._receive(ser, unit, pdu, sent + timeout_s, timeout_s)
            rtt = time.monotonic() - sent
        except ModbusError:
            raise
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from exc
        self.ring.add("rx", unit, frame, f"{rtt * 1000:.1f} ms")
        return _check_reply(self.bus_id, unit, pdu, frame[1:-2], sent_ns=sent_ns, rtt=rtt)

    def _receive(self, ser: serial.Serial, unit: int, pdu: bytes, deadline: float,
                 timeout_s: float) -> bytes:
        """The reply of `unit`, read by its length; a well-formed frame from another unit (a
        slow module answering late) is put aside and the wait goes on until `deadline`."""
        stray: bytes | None = None
        while True:
            head = self._read(ser, 3, deadline)
            if len(head) < 3:
                if head:
                    self.ring.add("rx", unit, head, "incomplete reply")
                    self._drain(ser, unit)
                    raise ModbusFrameError(self.bus_id, unit, "malformed",
                                           f"incomplete reply from unit {unit}: {len(head)}"
                                           " bytes", head)
                self._quiet_at = time.monotonic() + self.gap_s
                if stray is not None:
                    raise ModbusFrameError(self.bus_id, unit, "wrong_unit",
                                           f"a reply came from unit {stray[0]} when unit {unit}"
                                           " was asked", stray)
                self.ring.add("--", unit, b"", f"no reply within {timeout_s * 1000:.0f} ms")
                raise ModbusTimeoutError(self.bus_id, unit, f"unit {unit} did not answer within"
                                         f" {timeout_s * 1000:.0f} ms")
            total = _rtu_reply_length(head)
            if total is None:
                self.ring.add("rx", head[0], head, "unknown function code")
                self._drain(ser, unit)
                raise ModbusFrameError(self.bus_id, unit, "malformed",
                                       f"reply with function code {head[1]} to a request with"
                                       f" {pdu[0]}", head)
            # The rest follows at line speed; allow for an adapter's buffering.
            rest_deadline = max(deadline, time.monotonic() + (total - 3) * self.char_s * 1.5
                                + 0.02)
            frame = head + self._read(ser, total - 3, rest_deadline)
            self._quiet_at = time.monotonic() + self.gap_s
            if len(frame) < total:
                self.ring.add("rx", unit, frame, f"incomplete: {len(frame)} of {total} bytes")
                self._drain(ser, unit)
                raise ModbusFrameError(self.bus_id, unit, "malformed",
                                       f"incomplete reply from unit {unit}: {len(frame)} of"
                                       f" {total} bytes", frame)
            if not rtu_crc_ok(frame):
                self.ring.add("rx", unit, frame, "bad CRC")
                self._drain(ser, unit)
                raise ModbusFrameError(self.bus_id, unit, "crc",
                                       f"reply to unit {unit} has a bad CRC", frame)
            if frame[0] == unit:
                return frame
            self.ring.add("rx", frame[0], frame, f"from unit {frame[0]} while unit {unit} was"
                          " asked: not taken")
            stray = frame


class TcpLink:
    """Modbus TCP: MBAP frames on one TCP connection, one request at a time."""

    def __init__(self, bus_id: str, host: str, port: int, connect_timeout_s: float,
                 ring: FrameRing) -> None:
        self.bus_id = bus_id
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.ring = ring
        self.where = f"{host}:{port}"
        self._sock: socket.socket | None = None
        self._tid = 0

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def open(self) -> None:
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port),
                                            timeout=self.connect_timeout_s)
        except OSError as exc:
            raise ModbusLinkError(
                self.bus_id, None,
                f"cannot connect to the Modbus TCP module at {self.where}: {_reason(exc)};"
                " check its power and network cable, its IP address and that it listens"
                " on this port") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def abort(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _recv(self, sock: socket.socket, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(n - len(buf))
            except TimeoutError:
                break
            if not chunk:
                raise ConnectionResetError("the module closed the connection")
            buf += chunk
        return bytes(buf)

    def transact(self, unit: int, pdu: bytes, timeout_s: float) -> Exchange:
        if self._sock is None:
            self.open()
        sock = self._sock
        assert sock is not None
        self._tid = self._tid % 0xFFFF + 1
        tid = self._tid
        request = struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu
        try:
            sock.settimeout(timeout_s)
            sock.sendall(request)
            sent = time.monotonic()
            sent_ns = mono_ns()
            self.ring.add("tx", unit, request)
            deadline = sent + timeout_s
            while True:
                head = self._recv(sock, 7, deadline)
                if len(head) < 7:
                    # Close: a late reply must not be taken for the next request's.
                    self.close()
                    if head:
                        self.ring.add("rx", unit, head, "incomplete header")
                    self.ring.add("--", unit, b"", f"no reply within {timeout_s * 1000:.0f} ms")
                    raise ModbusTimeoutError(self.bus_id, unit, f"unit {unit} at {self.where}"
                                             f" did not answer within {timeout_s * 1000:.0f} ms")
                r_tid, pid, length, r_unit = struct.unpack(">HHHB", head)
                if pid != 0 or not 2 <= length <= 254:
                    self.ring.add("rx", unit, head, "not a Modbus TCP header")
                    self.close()
                    raise ModbusFrameError(self.bus_id, unit, "malformed",
                                           f"{self.where} sent a frame that is not Modbus TCP"
                                           f" (protocol {pid}, length {length})", head)
                body = self._recv(sock, length - 1, max(deadline, time.monotonic() + 0.05))
                frame = head + body
                if len(body) < length - 1:
                    self.ring.add("rx", r_unit, frame, "incomplete")
                    self.close()
                    raise ModbusFrameError(self.bus_id, unit, "malformed",
                                           f"incomplete reply from {self.where}", frame)
                if r_tid != tid:
                    self.ring.add("rx", r_unit, frame, f"stale reply (transaction {r_tid}),"
                                  " discarded")
                    continue
                break
            rtt = time.monotonic() - sent
        except ModbusError:
            raise
        except OSError as exc:
            self.close()
            raise ModbusLinkError(self.bus_id, unit,
                                  f"connection to {self.where} failed: {_reason(exc)}") from exc
        if r_unit != unit:
            self.ring.add("rx", r_unit, frame, f"from unit {r_unit}, unit {unit} was asked")
            raise ModbusFrameError(self.bus_id, unit, "wrong_unit",
                                   f"a reply came from unit {r_unit} when unit {unit} was asked",
                                   frame)
        self.ring.add("rx", unit, frame, f"{rtt * 1000:.1f} ms")
        return _check_reply(self.bus_id, unit, pdu, body, sent_ns=sent_ns, rtt=rtt)


def _check_reply(bus_id: str, unit: int, request: bytes, reply: bytes, *, sent_ns: int,
                 rtt: float) -> Exchange:
    fc = request[0]
    if not reply:
        raise ModbusFrameError(bus_id, unit, "malformed", f"empty reply from unit {unit}")
    if reply[0] == fc | 0x80:
        code = reply[1] if len(reply) > 1 else 0
        raise ModbusExceptionReplyError(bus_id, unit, code,
                                        f"unit {unit} answered exception {code}"
                                        f" ({exception_name(code)}) to function {fc}")
    if reply[0] != fc:
        raise ModbusFrameError(bus_id, unit, "malformed",
                               f"unit {unit} answered function {reply[0]} to function {fc}")
    return Exchange(reply=reply, sent_ns=sent_ns, rtt_s=rtt)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def make_link(bus: BusSettings, ring: FrameRing, endpoint: Endpoint | None = None) -> Link:
    """The link of `bus`, at `endpoint` instead of the configured place when given."""
    if bus.type == "rtu":
        port = endpoint if isinstance(endpoint, str) else bus.port
        return RtuLink(bus.id, port, baud=bus.baud, parity=bus.parity, stopbits=bus.stopbits,
                       ring=ring)
    host, port_no = endpoint if isinstance(endpoint, tuple) else (bus.host, bus.tcp_port)
    return TcpLink(bus.id, host, port_no, max(1.0, bus.timeout_ms / 1000), ring)


def decode_read(block_table: str, count: int, reply: bytes) -> list[bool] | list[int]:
    """The values of a read reply (pymodbus parses it); ValueError if it does not fit."""
    pdu = _DECODER.decode(reply)
    if pdu is None or isinstance(pdu, ExceptionResponse):
        raise ValueError("the reply cannot be decoded")
    if block_table in ("di", "coil"):
        if len(reply) < 2 or reply[1] != (count + 7) // 8:
            raise ValueError(f"{reply[1] if len(reply) > 1 else 0} data bytes for {count} bits")
        return list(pdu.bits[:count])
    regs = list(pdu.registers)
    if len(regs) != count:
        raise ValueError(f"{len(regs)} registers for {count}")
    return regs


# -- the bus ---------------------------------------------------------------------------

@dataclass
class _Point:
    settings: ModbusPointSettings
    value: bool | None = None
    """The bit as last read."""
    reported: bool | None = None
    """Active state last handed to the engine; None before the first reading."""
    candidate: bool | None = None
    candidate_ns: int = 0
    changes: int = 0


@dataclass
class _Device:
    settings: DeviceSettings
    blocks: list[ReadBlock]
    state: str = "unknown"
    """'unknown' (not answered yet), 'ok' or 'faulty'."""
    consecutive: int = 0
    requests: int = 0
    failures: int = 0
    last_error: str = ""
    last_error_kind: str = ""
    faulty_since: float | None = None
    next_probe: float = 0.0
    last_ok: float | None = None
    max_rtt_s: float | None = None
    """The longest round trip seen from this module, in seconds."""
    probes: int = 0
    """Probes since it became faulty."""


@dataclass
class _Write:
    device: _Device
    address: int
    on: bool
    future: Future[None]


@dataclass
class BusCounters:
    requests: int = 0
    ok: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    exceptions: int = 0
    wrong_unit: int = 0
    malformed: int = 0
    link_errors: int = 0
    writes: int = 0
    write_failures: int = 0
    rtt_sum_s: float = 0.0
    rtt_max_s: float = 0.0
    cycles: int = 0
    last_cycle_s: float = 0.0
    max_cycle_s: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)

    def count_error(self, kind: str) -> None:
        attr = {"timeout": "timeouts", "crc": "crc_errors", "exception": "exceptions",
                "wrong_unit": "wrong_unit", "malformed": "malformed",
                "link": "link_errors"}.get(kind, "malformed")
        setattr(self, attr, getattr(self, attr) + 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "ok": self.ok, "timeouts": self.timeouts,
            "crc_errors": self.crc_errors, "exceptions": self.exceptions,
            "wrong_unit": self.wrong_unit, "malformed": self.malformed,
            "link_errors": self.link_errors, "writes": self.writes,
            "write_failures": self.write_failures,
            "rtt_mean_ms": round(self.rtt_sum_s / self.ok * 1000, 2) if self.ok else None,
            "rtt_max_ms": round(self.rtt_max_s * 1000, 2) if self.ok else None,
            "cycles": self.cycles,
            "last_cycle_ms": round(self.last_cycle_s * 1000, 2),
            "max_cycle_ms": round(self.max_cycle_s * 1000, 2),
        }


class ModbusBus:
    """One bus: its link, its poll thread, its modules' supervision and its coil writes."""

    def __init__(self, settings: BusSettings, devices: Sequence[DeviceSettings],
                 points: Sequence[ModbusPointSettings], door: Door, *, fail_after: int = 3,
                 probe_interval_s: float = 2.0, endpoint: Endpoint | None = None,
                 link: Link | None = None) -> None:
        """`door`: the engine's door (never blocks); `endpoint`: where the bus really is
        (the simulator's TCP port); `link`: a link to use instead of making one."""
        self.settings = settings
        self._door = door
        self.fail_after = fail_after
        self.probe_interval_s = probe_interval_s
        self.ring = FrameRing()
        self.link: Link = link or make_link(settings, self.ring, endpoint)
        mine = [d for d in devices if d.bus == settings.id]
        my_points = [p for p in points if p.bus == settings.id]
        blocks = plan_reads(my_points, mine)
        self._devices = [_Device(d, [b for b in blocks if b.device == d.id]) for d in mine]
        self._by_id = {d.settings.id: d for d in self._devices}
        self._points = {p.id: _Point(p) for p in my_points}
        self.timeout_s = settings.timeout_ms / 1000
        self.interval_s = settings.poll_interval_ms / 1000
        self.counters = BusCounters()
        self._cond = threading.Condition()
        self._writes: deque[_Write] = deque()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.link_state = "closed"
        """'closed' (not tried yet), 'up', or 'down' (its fault is open)."""
        self.link_error = ""
        self._next_link_try = 0.0
        self._link_fault_open = False
        self.first_cycle = threading.Event()
        """Set once every module has been asked once (or the bus found down)."""

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"modbus-{self.settings.id}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.link.abort()
        if self._thread is not None:
            self._thread.join(10.0)
            if self._thread.is_alive():
                log.error("Modbus bus %s: poll thread did not stop within 10 s", self.settings.id)
            self._thread = None
        self.link.close()
        with self._cond:
            writes, self._writes = list(self._writes), deque()
        for w in writes:
            if w.future.set_running_or_notify_cancel():
                w.future.set_exception(ModbusLinkError(self.settings.id, w.device.settings.unit,
                                                       "the Modbus driver is stopping"))

    # -- outputs --------------------------------------------------------------------

    def has_device(self, device_id: str) -> bool:
        return device_id in self._by_id

    def write_coil(self, device_id: str, address: int, on: bool) -> Future[None]:
        """Queue a coil write for the poll thread; the future has its outcome (a ModbusError
        on failure). Never blocks."""
        fut: Future[None] = Future()
        w = _Write(self._by_id[device_id], address, on, fut)
        with self._cond:
            if self._stopping:
                fut.set_exception(ModbusLinkError(self.settings.id, w.device.settings.unit,
                                                  "the Modbus driver is stopping"))
                return fut
            self._writes.append(w)
            self._cond.notify_all()
        return fut

    def _do_writes(self) -> None:
        while True:
            with self._cond:
                if not self._writes:
                    return
                w = self._writes.popleft()
            if not w.future.set_running_or_notify_cancel():
                continue
            unit = w.device.settings.unit
            if self.link_state != "up":
                w.future.set_exception(ModbusLinkError(
                    self.settings.id, unit, f"bus {self.settings.id} is down: {self.link_error}"))
                continue
            pdu = write_coil_pdu(w.address, w.on)
            with self._cond:
                self.counters.writes += 1
            try:
                ex = self._transact(unit, pdu)
                if ex.reply != pdu:
                    raise ModbusFrameError(self.settings.id, unit, "malformed",
                                           f"unit {unit} did not echo the coil write")
            except ModbusError as exc:
                with self._cond:
                    self.counters.write_failures += 1
                if isinstance(exc, ModbusLinkError):
                    self._link_down(exc)
                w.future.set_exception(exc)
            else:
                w.future.set_result(None)

    # -- the poll loop ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                if self.link_state != "up" and not self._open_link():
                    self._idle_until(self._next_link_try)
                    continue
                cycle_start = time.monotonic()
                probed = False
                for dev in self._devices:
                    self._do_writes()
                    if self._stopping or self.link_state != "up":
                        break
                    if dev.state == "faulty":
                        # A faulty module costs at most one timeout per cycle, and only
                        # every probe interval.
                        if probed or cycle_start < dev.next_probe:
                            continue
                        probed = True
                    self._poll_device(dev)
                self._do_writes()
                self.first_cycle.set()
                cycle = time.monotonic() - cycle_start
                with self._cond:
                    self.counters.cycles += 1
                    self.counters.last_cycle_s = cycle
                    self.counters.max_cycle_s = max(self.counters.max_cycle_s, cycle)
                self._idle_until(cycle_start + self.interval_s)
        except Exception:
            log.exception("Modbus bus %s: poll thread failed; it stops here", self.settings.id)

    def _idle_until(self, when: float) -> None:
        """Wait until `when`, doing coil writes as they come (failing them while the bus is
        down)."""
        while True:
            with self._cond:
                while not self._stopping and not self._writes:
                    left = when - time.monotonic()
                    if left <= 0:
                        return
                    self._cond.wait(left)
                if self._stopping:
                    return
            self._do_writes()

    def _open_link(self) -> bool:
        now = time.monotonic()
        if now < self._next_link_try:
            return False
        try:
            self.link.open()
        except ModbusLinkError as exc:
            self._link_down(exc)
            return False
        first = self.link_state == "closed"
        self.link_state = "up"
        self.link_error = ""
        if self._link_fault_open:
            self._link_fault_open = False
            log.warning("Modbus bus %s (%s) is back", self.settings.id, self.link.where)
            self._door(FaultChange(device_id=self.settings.id, name=self._bus_name(),
                                   source=self.settings.source, active=False, reason="",
                                   mono_ns=mono_ns(), detail={"bus": self.settings.id}))
        elif first:
            log.info("Modbus bus %s open: %s, %d modules, poll every %d ms", self.settings.id,
                     self.link.where, len(self._devices), self.settings.poll_interval_ms)
        return True

    def _link_down(self, exc: ModbusLinkError) -> None:
        self.link.close()
        if self._stopping:
            return  # the read was aborted by stop()
        with self._cond:
            self.counters.link_errors += 1
        self.link_state = "down"
        self.link_error = str(exc)
        self._next_link_try = time.monotonic() + self.probe_interval_s
        if not self._link_fault_open:
            self._link_fault_open = True
            self.first_cycle.set()
            self._door(FaultChange(
                device_id=self.settings.id, name=self._bus_name(), source=self.settings.source,
                active=True, reason=str(exc), mono_ns=mono_ns(),
                detail={"bus": self.settings.id, "where": self.link.where,
                        "devices": [d.settings.id for d in self._devices],
                        "last_frames": self.ring.last(FRAMES_IN_FAULT)}))

    def _bus_name(self) -> str:
        kind = "RS-485 bus" if self.settings.type == "rtu" else "Modbus TCP link"
        return f"Modbus {kind} {self.settings.id} ({self.link.where})"

    def _transact(self, unit: int, pdu: bytes, timeout_s: float | None = None) -> Exchange:
        with self._cond:
            self.counters.requests += 1
        try:
            ex = self.link.transact(unit, pdu, self.timeout_s if timeout_s is None else timeout_s)
        except ModbusError as exc:
            with self._cond:
                self.counters.count_error(exc.kind)
            raise
        with self._cond:
            self.counters.ok += 1
            self.counters.rtt_sum_s += ex.rtt_s
            self.counters.rtt_max_s = max(self.counters.rtt_max_s, ex.rtt_s)
        return ex

    def _probe_timeout_s(self, dev: _Device, block: ReadBlock) -> float:
        """A faulty module's capped timeout: three times the longest round trip it ever had
        (at least the wire time plus a margin), so that probing it does not stretch the
        cycle by a whole timeout; every fourth probe waits the full timeout, in case it came
        back slower than it was."""
        if dev.max_rtt_s is None or dev.probes % 4 == 0:
            return self.timeout_s
        floor = block.wire_s(self.settings) + TIMEOUT_MARGIN_S
        return min(self.timeout_s, max(3 * dev.max_rtt_s, floor))

    def _poll_device(self, dev: _Device) -> None:
        unit = dev.settings.unit
        probing = dev.state == "faulty"
        if probing:
            dev.probes += 1
        for block in dev.blocks:
            if self._stopping:
                return
            dev.requests += 1
            timeout = self._probe_timeout_s(dev, block) if probing else None
            try:
                ex = self._transact(unit, read_pdu(block.function_code, block.start,
                                                   block.count), timeout)
                try:
                    values = decode_read(block.table, block.count, ex.reply)
                except ValueError as exc:
                    with self._cond:
                        self.counters.malformed += 1
                    raise ModbusFrameError(self.settings.id, unit, "malformed",
                                           f"unit {unit} answered {block.label} with a reply"
                                           f" that does not fit: {exc}") from exc
            except ModbusLinkError as exc:
                self._link_down(exc)
                return
            except ModbusError as exc:
                self._device_failed(dev, block, exc)
                return
            self._device_ok(dev)
            dev.max_rtt_s = max(dev.max_rtt_s or 0.0, ex.rtt_s)
            # The module sampled its inputs when the request reached it.
            sample_ns = ex.sent_ns + round(block.request_bytes * self.settings.char_s * 1e9)
            self._update_points(block, values, sample_ns)

    def _device_ok(self, dev: _Device) -> None:
        was = dev.state
        with self._cond:
            dev.consecutive = 0
            dev.last_ok = time.monotonic()
            dev.state = "ok"
            dev.faulty_since = None
            dev.probes = 0
        if was == "faulty":
            log.warning("Modbus unit %d (%s) on bus %s answers again", dev.settings.unit,
                        dev.settings.id, self.settings.id)
            self._door(FaultChange(device_id=dev.settings.id, name=dev.settings.name,
                                   source=dev.settings.source, active=False, reason="",
                                   mono_ns=mono_ns(), location=dev.settings.location,
                                   detail={"bus": self.settings.id, "unit": dev.settings.unit}))

    def _device_failed(self, dev: _Device, block: ReadBlock, exc: ModbusError) -> None:
        if self._stopping:
            return  # the read was aborted by stop()
        now = time.monotonic()
        with self._cond:
            dev.consecutive += 1
            dev.failures += 1
            dev.last_error = str(exc)
            dev.last_error_kind = exc.kind
            if dev.state == "faulty":
                dev.next_probe = now + self.probe_interval_s
                return
            if dev.consecutive < self.fail_after:
                return
            dev.state = "faulty"
            dev.faulty_since = now
            dev.next_probe = now + self.probe_interval_s
            n = dev.consecutive
        reason = self._fault_reason(dev, block, exc, n)
        log.debug("Modbus bus %s: %s", self.settings.id, reason)
        detail: dict[str, Any] = {
            "bus": self.settings.id, "unit": dev.settings.unit, "where": self.link.where,
            "error": exc.kind, "consecutive_failures": n,
            "counters": self.counters_dict(),
            "last_frames": self.ring.last(FRAMES_IN_FAULT, dev.settings.unit),
        }
        if isinstance(exc, ModbusExceptionReplyError):
            detail["exception_code"] = exc.code
        self._door(FaultChange(device_id=dev.settings.id, name=dev.settings.name,
                               source=dev.settings.source, active=True, reason=reason,
                               mono_ns=mono_ns(), location=dev.settings.location,
                               detail=detail))

    def _fault_reason(self, dev: _Device, block: ReadBlock, exc: ModbusError, n: int) -> str:
        unit = dev.settings.unit
        s = self.settings
        who = f"Modbus unit {unit} ({dev.settings.id}) on bus {s.id} ({self.link.where})"
        if exc.kind == "timeout":
            check = (f"check the module's power, the A/B wiring and that its address is {unit}"
                     if s.type == "rtu" else
                     f"check the module's power and that unit id {unit} is right")
            return (f"{who} does not answer: {n} requests in a row got no reply within"
                    f" {s.timeout_ms} ms; {check}")
        if exc.kind == "crc":
            return (f"{who} answers with bad CRCs ({n} in a row): check that the module is set"
                    f" to {s.baud} baud 8{s.parity}{s.stopbits}, the bus termination and the"
                    " cable's shield")
        if exc.kind == "wrong_unit":
            return (f"{who}: {exc}, {n} times in a row: two modules may share an address,"
                    " or a module answers for another; check the address switches")
        if isinstance(exc, ModbusExceptionReplyError):
            return (f"{who} refuses to read {block.label}: exception {exc.code}"
                    f" ({exception_name(exc.code)}), {n} times in a row; check the addresses"
                    " in the config against the module's manual")
        return f"{who} answers with frames that cannot be used ({n} in a row): {exc}"

    def _update_points(self, block: ReadBlock, values: list[bool] | list[int],
                       sample_ns: int) -> None:
        changes: list[InputChange] = []
        with self._cond:
            for pid in block.points:
                pt = self._points[pid]
                s = pt.settings
                raw = values[s.address - block.start]
                bit = bool(raw) if s.bit is None else bool((int(raw) >> s.bit) & 1)
                pt.value = bit
                active = bit == s.active_value
                if pt.reported is None:
                    pt.reported = active
                    pt.candidate = None
                    changes.append(InputChange(s.id, active, sample_ns, initial=True))
                elif active == pt.reported:
                    pt.candidate = None
                else:
                    if pt.candidate != active:
                        pt.candidate = active
                        pt.candidate_ns = sample_ns
                    if sample_ns - pt.candidate_ns >= s.debounce_ms * 1_000_000:
                        pt.reported = active
                        pt.candidate = None
                        pt.changes += 1
                        changes.append(InputChange(s.id, active, pt.candidate_ns))
        for change in changes:
            self._door(change)

    # -- status ------------------------------------------------------------------------

    def counters_dict(self) -> dict[str, Any]:
        with self._cond:
            return self.counters.as_dict()

    def status(self, frames: int = 16) -> dict[str, Any]:
        now = time.monotonic()
        with self._cond:
            devices = [{
                "id": d.settings.id, "unit": d.settings.unit, "name": d.settings.name,
                "state": d.state, "requests": d.requests, "failures": d.failures,
                "consecutive_failures": d.consecutive, "last_error": d.last_error or None,
                "faulty_for_s": None if d.faulty_since is None else round(now - d.faulty_since,
                                                                          1),
                "last_ok_ago_s": None if d.last_ok is None else round(now - d.last_ok, 3),
                "reads": [b.label for b in d.blocks],
            } for d in self._devices]
            counters = self.counters.as_dict()
        return {
            "id": self.settings.id, "type": self.settings.type, "where": self.link.where,
            "link": self.link_state, "link_error": self.link_error or None,
            "poll_interval_ms": self.settings.poll_interval_ms,
            "timeout_ms": self.settings.timeout_ms,
            "counters": counters, "devices": devices, "frames": self.ring.last(frames),
        }

    def point_status(self) -> list[dict[str, Any]]:
        with self._cond:
            return [{
                "id": p.settings.id, "source": p.settings.source, "kind": p.settings.kind,
                "device": p.settings.device,
                "device_state": self._by_id[p.settings.device].state,
                "bit": None if p.value is None else int(p.value),
                "contact": p.settings.contact,
                "active": p.reported, "debounce_ms": p.settings.debounce_ms,
                "changes": p.changes,
            } for p in self._points.values()]


class ModbusInputs:
    """Every configured Modbus bus, each polled by its own thread."""

    def __init__(self, settings: ModbusSettings, door: Door, *,
                 endpoints: Mapping[str, Endpoint] | None = None) -> None:
        """`door`: the engine's door; `endpoints`: where buses really are, by bus id (the
        simulator's ports), instead of where the config says."""
        self.settings = settings
        endpoints = endpoints or {}
        self.buses = [ModbusBus(b, settings.devices, settings.points, door,
                                fail_after=settings.fail_after,
                                probe_interval_s=settings.probe_interval_s,
                                endpoint=endpoints.get(b.id))
                      for b in settings.buses]

    def start(self) -> None:
        for bus in self.buses:
            bus.start()

    def stop(self) -> None:
        for bus in self.buses:
            bus.stop()

    def wait_first_cycle(self, timeout: float) -> bool:
        """Wait until every bus has asked each of its modules once (or found itself down):
        from then on, every input's first reading has been handed to the engine."""
        deadline = time.monotonic() + timeout
        return all(b.first_cycle.wait(max(0.0, deadline - time.monotonic()))
                   for b in self.buses)

    def write_coil(self, device_id: str, address: int, on: bool) -> Future[None]:
        for bus in self.buses:
            if bus.has_device(device_id):
                return bus.write_coil(device_id, address, on)
        raise KeyError(f"no Modbus module {device_id!r}")

    def bus_of(self, device_id: str) -> ModbusBus:
        for bus in self.buses:
            if bus.has_device(device_id):
                return bus
        raise KeyError(f"no Modbus module {device_id!r}")

    def status(self) -> list[dict[str, Any]]:
        return [bus.status() for bus in self.buses]

    def point_status(self) -> list[dict[str, Any]]:
        return [p for bus in self.buses for p in bus.point_status()]


# -- scanning ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ScanResult:
    """What one unit did when asked for holding register 0."""

    unit: int
    present: bool
    """A well-formed reply came from this unit (data or an exception)."""
    result: str
    """'answers', 'exception', 'timeout', 'crc', 'wrong_unit', 'malformed'."""
    detail: str
    rtt_ms: float | None


def scan(link: Link, units: Iterable[int], timeout_s: float,
         on_result: Callable[[ScanResult], None] | None = None) -> list[ScanResult]:
    """Ask each unit for holding register 0 (FC03): any well-formed reply, data or exception,
    means a module answers at that address. Raises ModbusLinkError if the port or the host
    cannot be used."""
    link.open()
    results: list[ScanResult] = []
    pdu = read_pdu(3, 0, 1)
    for unit in units:
        t0 = time.monotonic()
        try:
            ex = link.transact(unit, pdu, timeout_s)
            r = ScanResult(unit, True, "answers", "holding register 0 ="
                           f" {int.from_bytes(ex.reply[2:4], 'big')}", round(ex.rtt_s * 1000, 1))
        except ModbusExceptionReplyError as exc:
            r = ScanResult(unit, True, "exception",
                           f"exception {exc.code} ({exception_name(exc.code)}): the module is"
                           " there, it has no holding register 0",
                           round((time.monotonic() - t0) * 1000, 1))
        except ModbusTimeoutError:
            r = ScanResult(unit, False, "timeout", "no reply", None)
        except ModbusFrameError as exc:
            hint = {"crc": "a garbled reply: check the baud rate, parity and termination",
                    "wrong_unit": "another unit answered: two modules may share an address"
                    }.get(exc.kind, str(exc))
            r = ScanResult(unit, False, exc.kind, hint, None)
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results


def parse_units(text: str) -> list[int]:
    """'1-32', '1,3,5-7' -> unit ids; ValueError with what is wrong."""
    units: list[int] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ValueError(f"{part!r} is not a unit id or a range like 1-32") from None
        if not 0 <= a <= b <= 255:
            raise ValueError(f"{part!r}: unit ids go from 0 to 255 (1 to 247 on RS-485)")
        units.extend(range(a, b + 1))
    if not units:
        raise ValueError("no unit ids given")
    return units

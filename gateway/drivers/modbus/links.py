"""Modbus links: one request and its reply, on a serial port (RTU) or a TCP connection.

A link reads the reply itself, by its length, rather than through pymodbus' sync
client, because it must tell a timeout from a bad CRC, an exception reply and a
reply from the wrong unit; must not wait a moment longer than the reply needs
(pymodbus' sync client polls the port every four character times and waits out its
whole timeout after a frame it drops); and keeps every frame in the bus's
`FrameRing`. `RtuLink` uses pyserial, exactly as on a Pi with a USB RS-485 adapter.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Protocol

import serial

from gateway.clock import mono_ns
from gateway.config.modbus import BusSettings, rtu_char_s, rtu_gap_s
from gateway.drivers.modbus.frames import (
    Exchange,
    FrameRing,
    exception_name,
    rtu_adu,
    rtu_crc_ok,
    rtu_reply_length,
)
from gateway.errors import (
    ModbusError,
    ModbusExceptionReplyError,
    ModbusFrameError,
    ModbusLinkError,
    ModbusTimeoutError,
)

#: Longest a stray reply is drained after a bad frame, in seconds.
_DRAIN_MAX_S = 0.25

Endpoint = str | tuple[str, int]
"""Where a bus really is when the config is overridden: a serial path, or (host, port)."""


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
            total = rtu_reply_length(head)
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
    """The `Exchange` of a well-framed `reply` (its PDU) that answers `request`; raises
    ModbusExceptionReplyError for an exception code, ModbusFrameError for an empty reply
    or one to another function."""
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

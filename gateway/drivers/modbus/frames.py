"""Modbus frames: the bytes of requests and replies, and the record of what a bus saw.

pymodbus builds the PDUs, computes the RTU CRC and decodes read replies; this module
wraps it in the few calls the links, the bus and the scanner need, and holds what
they share: `Exchange` (a request that got a good reply) and `FrameRing` (the last
frames of a bus, for `alarmgw status` and fault reports). No I/O here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

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

#: Frames kept per bus for `alarmgw status` and fault reports.
FRAME_RING = 64


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


def rtu_reply_length(head: bytes) -> int | None:
    """Total length of an RTU reply from its first three bytes; None if they make no sense."""
    fc = head[1]
    if fc & 0x80:
        return 5
    if fc in (1, 2, 3, 4):
        return 5 + head[2]
    if fc in (5, 6, 15, 16):
        return 8
    return None


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


# -- what a bus saw ------------------------------------------------------------------

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

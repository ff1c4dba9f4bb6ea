"""`alarmgw modbus-scan`: which unit ids answer on a link, and the unit ranges it takes.

Any well-formed reply to a read of holding register 0, data or an exception code,
means a module answers at that address.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.drivers.modbus.frames import exception_name, read_pdu
from gateway.drivers.modbus.links import Link
from gateway.errors import ModbusExceptionReplyError, ModbusFrameError, ModbusTimeoutError


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

"""`alarmgw modbus-scan`: which unit ids answer on a link, and the unit ranges it takes.

Any well-formed reply to a read of holding register 0, data or an exception code,
means a module answers at that address. A unit that stays silent is asked again (up to
`SCAN_TRIES` times in all): on RS-485 one lost frame, the request's or the reply's,
must not make a present module look absent. The retry follows the bus's inter-frame
silence (t3.5), which `RtuLink` keeps before every request, after a timeout too. A
garbled reply is not asked again: someone answered, and what was wrong is said.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.drivers.modbus.frames import exception_name, read_pdu
from gateway.drivers.modbus.links import Link
from gateway.errors import ModbusExceptionReplyError, ModbusFrameError, ModbusTimeoutError

#: How often a unit is asked in all before it counts as absent.
SCAN_TRIES = 2


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
    tries: int = 1
    """How many requests it took: the one answered, or all of them (`timeout`)."""


def scan(link: Link, units: Iterable[int], timeout_s: float,
         on_result: Callable[[ScanResult], None] | None = None, *,
         tries: int = SCAN_TRIES) -> list[ScanResult]:
    """Ask each unit for holding register 0 (FC03): any well-formed reply, data or exception,
    means a module answers at that address; a unit that does not answer is asked again,
    `tries` times in all. Raises ModbusLinkError if the port or the host cannot be used."""
    link.open()
    results: list[ScanResult] = []
    pdu = read_pdu(3, 0, 1)
    for unit in units:
        for attempt in range(1, max(1, tries) + 1):
            r = _ask(link, unit, pdu, timeout_s, attempt)
            if r.result != "timeout":
                break
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results


def _ask(link: Link, unit: int, pdu: bytes, timeout_s: float, attempt: int) -> ScanResult:
    t0 = time.monotonic()
    try:
        ex = link.transact(unit, pdu, timeout_s)
        return ScanResult(unit, True, "answers", "holding register 0 ="
                          f" {int.from_bytes(ex.reply[2:4], 'big')}", round(ex.rtt_s * 1000, 1),
                          attempt)
    except ModbusExceptionReplyError as exc:
        return ScanResult(unit, True, "exception",
                          f"exception {exc.code} ({exception_name(exc.code)}): the module is"
                          " there, it has no holding register 0",
                          round((time.monotonic() - t0) * 1000, 1), attempt)
    except ModbusTimeoutError:
        return ScanResult(unit, False, "timeout", "no reply", None, attempt)
    except ModbusFrameError as exc:
        hint = {"crc": "a garbled reply: check the baud rate, parity and termination",
                "wrong_unit": "another unit answered: two modules may share an address"
                }.get(exc.kind, str(exc))
        return ScanResult(unit, False, exc.kind, hint, None, attempt)


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

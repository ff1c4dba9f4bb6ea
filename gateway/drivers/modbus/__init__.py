"""Modbus alarm I/O modules on RS-485 (RTU) and Modbus TCP: polled, supervised, at bus speed.

Layers, bottom up, one module each:

- `frames`: the bytes. Request PDUs and RTU frames (pymodbus builds them and
  computes the CRC), reply lengths, exception names, decoding a read reply;
  `Exchange`, a request that got a good reply; `FrameRing`, the last frames
  of a bus for `alarmgw status` and fault reports.
- `links`: a *link* carries one request and its reply: `RtuLink` on a serial
  port, `TcpLink` on a socket. It reads the reply itself, by its length, to
  tell a timeout from a bad CRC, an exception reply and a reply from the
  wrong unit without waiting a moment longer than the reply needs.
- `bus`: a `ModbusBus` owns one link and one thread (RS-485 is half duplex),
  polls its modules' points, supervises the modules and the link, and does
  coil writes between two requests.
- `inputs`: `ModbusInputs`, the driver the service starts: every bus of the
  config; hands `InputChange`s and `FaultChange`s to the engine's door,
  never waits on the engine.
- `scan`: `alarmgw modbus-scan`, which unit ids answer on a link.

Import from here; the modules are the package's own business.
"""

from gateway.drivers.modbus.bus import FRAMES_IN_FAULT, BusCounters, Door, ModbusBus
from gateway.drivers.modbus.frames import (
    FRAME_RING,
    Exchange,
    Frame,
    FrameRing,
    decode_read,
    exception_name,
    read_pdu,
    rtu_adu,
    rtu_crc_ok,
    write_coil_pdu,
)
from gateway.drivers.modbus.inputs import ModbusInputs
from gateway.drivers.modbus.links import Endpoint, Link, RtuLink, TcpLink, make_link
from gateway.drivers.modbus.links import _check_reply as _check_reply  # for tests/test_fuzz.py
from gateway.drivers.modbus.scan import ScanResult, parse_units, scan

__all__ = [
    "FRAMES_IN_FAULT",
    "FRAME_RING",
    "BusCounters",
    "Door",
    "Endpoint",
    "Exchange",
    "Frame",
    "FrameRing",
    "Link",
    "ModbusBus",
    "ModbusInputs",
    "RtuLink",
    "ScanResult",
    "TcpLink",
    "decode_read",
    "exception_name",
    "make_link",
    "parse_units",
    "read_pdu",
    "rtu_adu",
    "rtu_crc_ok",
    "scan",
    "write_coil_pdu",
]

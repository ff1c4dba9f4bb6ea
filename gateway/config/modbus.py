"""The Modbus part of the config, and what follows from it on the wire.

A technician describes what is wired, in the words of the modules' manuals:

    [[modbus.buses]]     one RS-485 line (a USB adapter) or one Modbus TCP module
    [[modbus.devices]]   one I/O module on a bus, by its unit id (its address)
    [[inputs]]           a button on a module:
                         modbus = { device = "io1", table = "di", address = 2 }

A Modbus input is an `[[inputs]]` entry like a GPIO one, with the same id,
name, location, kind and contact; `modbus = {...}` takes the place of
`gpio = N`. The button is the thing the school names and the platform
reports; which terminal it is wired to is one of its properties.

From the config this module also plans a poll cycle: which requests read
every configured point (points close together on one module are read in one
request) and how long each takes on the wire at the bus's baud rate. The
driver polls by that plan, `check-config` prints it, and the benchmark
compares measured latencies with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gateway.config._fields import POINT_ID, TomlTable, empty_table
from gateway.config.cameras import CameraSettings, camera_refs
from gateway.config.inputs import INPUT_KINDS, Contact, InputKind

__all__ = [
    "BAUD_RATES", "FUNCTION_CODE", "MAX_BITS_PER_READ", "MAX_REGISTERS_PER_READ",
    "MERGE_GAP_BITS", "MERGE_GAP_REGISTERS", "TABLES", "TABLE_NAMES", "TIMEOUT_MARGIN_S",
    "BusSettings", "BusType", "Contact", "DeviceSettings", "ModbusPointSettings",
    "ModbusSettings", "Parity", "ReadBlock", "Table", "cycle_wire_s", "parse_modbus",
    "plan_reads", "rtu_char_s", "rtu_gap_s",
]

BusType = Literal["rtu", "tcp"]
Parity = Literal["N", "E", "O"]
Table = Literal["di", "coil", "ir", "hr"]

BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
TABLES: tuple[Table, ...] = ("di", "coil", "ir", "hr")
FUNCTION_CODE: dict[Table, int] = {"coil": 1, "di": 2, "hr": 3, "ir": 4}
TABLE_NAMES: dict[Table, str] = {
    "di": "discrete input (FC02)",
    "coil": "coil (FC01)",
    "ir": "input register (FC04)",
    "hr": "holding register (FC03)",
}

# Points of one module in one table are read in one request when the addresses
# between them cost fewer bytes on the wire than a request of their own (at least
# 8 request + 5 reply bytes and two 3.5-character gaps, about 20 characters):
# 64 bits are 8 bytes, 8 registers 16 bytes.
MERGE_GAP_BITS = 64
MERGE_GAP_REGISTERS = 8
MAX_BITS_PER_READ = 2000
MAX_REGISTERS_PER_READ = 125

#: Margin on top of the wire time that a reply timeout must leave, in seconds:
#: USB serial adapters deliver bytes in bursts (FTDI's latency timer is 16 ms).
TIMEOUT_MARGIN_S = 0.020


@dataclass(frozen=True)
class BusSettings:
    """One Modbus bus: an RS-485 line on a serial port, or a Modbus TCP endpoint."""

    id: str
    type: BusType
    port: str
    """RTU: the serial device (e.g. /dev/ttyUSB0); TCP: empty."""
    baud: int
    """RTU: bits per second (8 data bits always)."""
    parity: Parity
    stopbits: int
    host: str
    """TCP: the module's address; RTU: empty."""
    tcp_port: int
    timeout_ms: int
    """How long a unit may take to answer one request, in milliseconds."""
    poll_interval_ms: int
    """Time from the start of one poll cycle to the start of the next, in milliseconds
    (the next cycle starts at once when a cycle takes longer)."""

    @property
    def source(self) -> str:
        return f"modbus:{self.id}"

    @property
    def where(self) -> str:
        """Where the bus is, as a technician reads it: '/dev/ttyUSB0 9600 8N1'."""
        if self.type == "rtu":
            return f"{self.port} {self.baud} 8{self.parity}{self.stopbits}"
        return f"{self.host}:{self.tcp_port}"

    @property
    def char_s(self) -> float:
        """Time of one character on the wire, in seconds (RTU; 0 for TCP)."""
        if self.type != "rtu":
            return 0.0
        return rtu_char_s(self.baud, self.parity, self.stopbits)

    @property
    def gap_s(self) -> float:
        """The silent interval that ends an RTU frame (t3.5), in seconds (0 for TCP)."""
        if self.type != "rtu":
            return 0.0
        return rtu_gap_s(self.baud, self.parity, self.stopbits)


@dataclass(frozen=True)
class DeviceSettings:
    """One I/O module on a bus."""

    id: str
    bus: str
    unit: int
    name: str
    location: str

    @property
    def source(self) -> str:
        return f"modbus:{self.bus}/{self.unit}"


@dataclass(frozen=True)
class ModbusPointSettings:
    """One input read from a Modbus module: a bit of a table at an address."""

    id: str
    name: str
    location: str
    kind: InputKind
    device: str
    bus: str
    unit: int
    table: Table
    address: int
    bit: int | None
    """The bit (0-15) of a register, for tables ir and hr; None for di and coil."""
    contact: Contact
    debounce_ms: int
    """A new value must be read for this long before it counts (0: the first read)."""
    cameras: tuple[str, ...] = ()
    """Ids of the cameras that take pictures when this input raises an alarm."""

    @property
    def active_value(self) -> bool:
        """The bit's value that means active: a module reads 1 while its input's contact is
        closed, so a normally-open button is active at 1, a normally-closed one at 0."""
        return self.contact == "NO"

    @property
    def source(self) -> str:
        bit = f".{self.bit}" if self.bit is not None else ""
        return f"modbus:{self.bus}/{self.unit}/{self.table}{self.address}{bit}"


@dataclass(frozen=True)
class ModbusSettings:
    """Every Modbus bus, module and input."""

    simulator: bool = False
    """Run hw_sim's simulated modules in the service (the demo, tests)."""
    fail_after: int = 3
    """Consecutive failed requests after which a module is reported faulty."""
    probe_interval_s: float = 2.0
    """How often a faulty module, or a bus whose port or host is unreachable, is tried
    again, in seconds."""
    buses: tuple[BusSettings, ...] = ()
    devices: tuple[DeviceSettings, ...] = ()
    points: tuple[ModbusPointSettings, ...] = ()

    def bus(self, bus_id: str) -> BusSettings:
        for b in self.buses:
            if b.id == bus_id:
                return b
        raise KeyError(bus_id)

    def device(self, device_id: str) -> DeviceSettings:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)


# -- the wire ------------------------------------------------------------------

def rtu_char_s(baud: int, parity: str, stopbits: int) -> float:
    """Seconds per character: start bit, 8 data bits, parity bit if any, stop bits."""
    return (1 + 8 + (0 if parity == "N" else 1) + stopbits) / baud


def rtu_gap_s(baud: int, parity: str, stopbits: int) -> float:
    """t3.5, the silence that ends a frame; fixed at 1.75 ms above 19200 baud (Modbus over
    serial line, 2.5.1.1)."""
    if baud > 19200:
        return 0.00175
    return 3.5 * rtu_char_s(baud, parity, stopbits)


@dataclass(frozen=True)
class ReadBlock:
    """One read request of a poll cycle: `count` bits or registers from `start`."""

    device: str
    unit: int
    table: Table
    start: int
    count: int
    points: tuple[str, ...]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODE[self.table]

    @property
    def request_bytes(self) -> int:
        """RTU request: unit, function, address, count, CRC."""
        return 8

    @property
    def reply_bytes(self) -> int:
        """RTU reply: unit, function, byte count, data, CRC."""
        if self.table in ("di", "coil"):
            return 5 + (self.count + 7) // 8
        return 5 + 2 * self.count

    def wire_s(self, bus: BusSettings) -> float:
        """Time this request and its reply keep an RTU bus busy, in seconds: both frames
        and the silent interval after each (the unit's own turnaround is not included)."""
        if bus.type != "rtu":
            return 0.0
        return (self.request_bytes + self.reply_bytes) * bus.char_s + 2 * bus.gap_s

    @property
    def label(self) -> str:
        return f"{self.table} {self.start}-{self.start + self.count - 1}"


def plan_reads(points: tuple[ModbusPointSettings, ...] | list[ModbusPointSettings],
               devices: tuple[DeviceSettings, ...] | list[DeviceSettings]
               ) -> list[ReadBlock]:
    """The read requests that cover `points`, in device order, then table, then address."""
    blocks: list[ReadBlock] = []
    for dev in devices:
        for table in TABLES:
            mine = sorted((p for p in points if p.device == dev.id and p.table == table),
                          key=lambda p: p.address)
            if not mine:
                continue
            bits = table in ("di", "coil")
            gap = MERGE_GAP_BITS if bits else MERGE_GAP_REGISTERS
            limit = MAX_BITS_PER_READ if bits else MAX_REGISTERS_PER_READ
            start = mine[0].address
            end = start
            ids: list[str] = []
            for p in mine:
                if p.address - end > gap or p.address - start + 1 > limit:
                    blocks.append(ReadBlock(dev.id, dev.unit, table, start, end - start + 1,
                                            tuple(ids)))
                    start, ids = p.address, []
                end = p.address
                ids.append(p.id)
            blocks.append(ReadBlock(dev.id, dev.unit, table, start, end - start + 1,
                                    tuple(ids)))
    return blocks


def cycle_wire_s(bus: BusSettings, blocks: list[ReadBlock], turnaround_s: float = 0.0
                 ) -> float:
    """Bus time of one poll cycle of `bus`: every request, reply and gap, plus
    `turnaround_s` per request (the time a unit takes to start answering)."""
    return sum(b.wire_s(bus) + turnaround_s for b in blocks)


# -- parsing ---------------------------------------------------------------------

def parse_modbus(root: TomlTable, input_tables: list[TomlTable], taken: dict[str, str],
                 cameras: tuple[CameraSettings, ...] = ()) -> ModbusSettings:
    """Read [modbus], [[modbus.buses]], [[modbus.devices]] and the `[[inputs]]` tables that
    have a `modbus` key. `taken` maps ids already used (GPIO inputs) to their keys; every
    id used here is added to it. `cameras`: the configured cameras, which inputs may name."""
    m = root.table("modbus") or empty_table(root.path, "modbus")
    m.expect("simulator", "fail_after", "probe_interval_s", "buses", "devices")
    simulator = m.flag("simulator", False)
    fail_after = m.integer("fail_after", 3, min=1, max=100)
    probe_interval_s = m.number("probe_interval_s", 2.0, min=0.1, max=300.0)

    bus_tables = m.array_of_tables("buses")
    dev_tables = m.array_of_tables("devices")
    if input_tables and not bus_tables:
        raise input_tables[0].error("modbus", "no Modbus bus is configured: add a"
                                    " [[modbus.buses]] and a [[modbus.devices]] for the module")

    pending: list[tuple[TomlTable, dict[str, object]]] = []
    for t in bus_tables:
        pending.append((t, _parse_bus_head(t, taken)))
    devices = [_parse_device(t, {str(b["id"]): b for _, b in pending}, taken)
               for t in dev_tables]
    seen_units: dict[tuple[str, int], str] = {}
    for d, t in zip(devices, dev_tables, strict=True):
        if (d.bus, d.unit) in seen_units:
            raise t.error("unit", f"unit {d.unit} on bus {d.bus!r} is already"
                          f" {seen_units[(d.bus, d.unit)]}: every module on a bus needs its"
                          " own address")
        seen_units[(d.bus, d.unit)] = f"{t.prefix} ({d.id})"
    dev_by_id = {d.id: d for d in devices}
    points = tuple(_parse_point(t, dev_by_id, taken, cameras) for t in input_tables)
    where: dict[tuple[str, str, int, int | None], str] = {}
    for p, t in zip(points, input_tables, strict=True):
        k = (p.device, p.table, p.address, p.bit)
        if k in where:
            raise t.error("modbus", f"{p.source} is already read by {where[k]}")
        where[k] = t.prefix

    buses = tuple(_finish_bus(t, head, devices, points) for t, head in pending)
    for t in dev_tables:
        t.done()
    m.done()
    return ModbusSettings(simulator=simulator, fail_after=fail_after,
                          probe_interval_s=probe_interval_s, buses=buses,
                          devices=tuple(devices), points=points)


def _claim(t: TomlTable, key: str, value: str, taken: dict[str, str]) -> None:
    if value in taken:
        raise t.error(key, f"{value!r} is already used by {taken[value]}: ids of inputs,"
                      " outputs, buses and devices name events and must all differ")
    taken[value] = t.prefix


def _parse_bus_head(t: TomlTable, taken: dict[str, str]) -> dict[str, object]:
    t.expect("id", "type", "port", "baud", "parity", "stopbits", "host", "timeout_ms",
             "poll_interval_ms")
    bus_id = t.text("id", pattern=POINT_ID, required=True)
    _claim(t, "id", bus_id, taken)
    bus_type: BusType = t.choice("type", ("rtu", "tcp"))
    return {"id": bus_id, "type": bus_type}


def _finish_bus(t: TomlTable, head: dict[str, object], devices: list[DeviceSettings],
                points: tuple[ModbusPointSettings, ...]) -> BusSettings:
    bus_id = str(head["id"])
    bus_type: BusType = "rtu" if head["type"] == "rtu" else "tcp"
    port = ""
    host = ""
    tcp_port = 502
    baud = 9600
    parity: Parity = "N"
    stopbits = 1
    if bus_type == "rtu":
        if "host" in t.data:
            raise t.error("host", "applies to type = \"tcp\" buses; an RTU bus has a serial"
                          " port = \"/dev/ttyUSB0\"")
        port = str(t.path_("port"))
        baud = t.integer("baud", 9600, min=1, max=10_000_000)
        if baud not in BAUD_RATES:
            raise t.error("baud", f"{baud} is not a standard baud rate: use one of"
                          f" {', '.join(map(str, BAUD_RATES))} (as set on the modules)")
        parity = t.choice("parity", ("N", "E", "O"), "N")
        stopbits = t.integer("stopbits", 1, min=1, max=2)
    else:
        for key in ("baud", "parity", "stopbits"):
            if key in t.data:
                raise t.error(key, "applies to type = \"rtu\" buses only")
        host = t.text("host", required=True)
        tcp_port = t.integer("port", 502, min=1, max=65535)
    mine = [d for d in devices if d.bus == bus_id]
    bus = BusSettings(id=bus_id, type=bus_type, port=port, baud=baud, parity=parity,
                      stopbits=stopbits, host=host, tcp_port=tcp_port, timeout_ms=0,
                      poll_interval_ms=0)
    blocks = plan_reads(points, mine)
    longest_s = max((b.wire_s(bus) for b in blocks), default=0.0)
    if bus_type == "rtu":
        # Also the 8-byte echo of a coil write.
        longest_s = max(longest_s, 16 * bus.char_s + 2 * bus.gap_s)
    needed_ms = math.ceil((longest_s + TIMEOUT_MARGIN_S) * 1000)
    default_ms = max(100 if bus_type == "rtu" else 300, math.ceil(2 * longest_s * 1000) + 20)
    timeout_ms = t.integer("timeout_ms", default_ms, min=5, max=10_000)
    if timeout_ms < needed_ms:
        raise t.error("timeout_ms", f"{timeout_ms} ms is shorter than the longest request and"
                      f" reply take on the wire at {baud} baud ({longest_s * 1000:.1f} ms)"
                      f" plus a margin for the adapter: use at least {needed_ms}")
    interval = t.integer("poll_interval_ms", 50, min=0, max=60_000)
    t.done()
    return BusSettings(id=bus_id, type=bus_type, port=port, baud=baud, parity=parity,
                       stopbits=stopbits, host=host, tcp_port=tcp_port, timeout_ms=timeout_ms,
                       poll_interval_ms=interval)


def _parse_device(t: TomlTable, buses: dict[str, dict[str, object]], taken: dict[str, str]
                  ) -> DeviceSettings:
    t.expect("id", "bus", "unit", "name", "location")
    dev_id = t.text("id", pattern=POINT_ID, required=True)
    _claim(t, "id", dev_id, taken)
    bus = t.text("bus", required=True)
    if bus not in buses:
        known = ", ".join(sorted(buses)) or "none"
        raise t.error("bus", f"no bus {bus!r} in [[modbus.buses]] (buses: {known})")
    unit = t.integer("unit", None, min=0, max=255)
    if buses[bus]["type"] == "rtu" and not 1 <= unit <= 247:
        raise t.error("unit", f"{unit} is not a unit id an RTU bus can address: use 1 to 247"
                      " (0 is broadcast), as set on the module's address switches")
    return DeviceSettings(id=dev_id, bus=bus, unit=unit,
                          name=t.label("name", f"Modbus unit {unit} on {bus}"),
                          location=t.label("location", ""))


def _parse_point(t: TomlTable, devices: dict[str, DeviceSettings], taken: dict[str, str],
                 cameras: tuple[CameraSettings, ...] = ()) -> ModbusPointSettings:
    for key, why in (("gpio", "give gpio = N (a pin) or modbus = {...} (a module), not both"),
                     ("pull", "applies to GPIO pins; a module's input has its own wiring:"
                      " say contact = \"NO\" or \"NC\""),
                     ("active_level", "applies to GPIO pins; for a module say contact ="
                      " \"NO\" (active when the input reads 1) or \"NC\" (active at 0)")):
        if key in t.data:
            raise t.error(key, why)
    t.expect("id", "name", "location", "kind", "modbus", "contact", "debounce_ms", "cameras")
    point_id = t.text("id", pattern=POINT_ID, required=True)
    _claim(t, "id", point_id, taken)
    kind: InputKind = t.choice("kind", INPUT_KINDS)
    mt = t.table("modbus", required=True)
    assert mt is not None
    mt.expect("device", "table", "address", "bit")
    dev_id = mt.text("device", required=True)
    if dev_id not in devices:
        known = ", ".join(sorted(devices)) or "none"
        raise mt.error("device", f"no module {dev_id!r} in [[modbus.devices]] (modules:"
                       f" {known})")
    dev = devices[dev_id]
    table: Table = mt.choice("table", TABLES, "di")
    address = mt.integer("address", None, min=0, max=65535)
    bit: int | None = None
    if table in ("ir", "hr"):
        bit = mt.integer("bit", None, min=0, max=15)
    elif "bit" in mt.data:
        raise mt.error("bit", f"applies to register tables (ir, hr); a {TABLE_NAMES[table]}"
                       " is one bit already")
    mt.done()
    point = ModbusPointSettings(
        id=point_id,
        name=t.label("name", point_id),
        location=t.label("location", ""),
        kind=kind,
        device=dev_id,
        bus=dev.bus,
        unit=dev.unit,
        table=table,
        address=address,
        bit=bit,
        contact=t.choice("contact", ("NO", "NC"), "NO"),
        debounce_ms=t.integer("debounce_ms", 0, min=0, max=5000),
        cameras=camera_refs(t, cameras),
    )
    t.done()
    return point

"""The [gpio] table and the [[inputs]] wired to GPIO pins: panic buttons, tamper contacts.

    [gpio]
    backend = "lgpio"          lgpio on a Pi; mock for the simulator
    debounce_ms = 30

    [[inputs]]
    id = "gate-panic"          names the input's events and topics
    name = "南门门卫室一键报警"   what the platform and the SMS say
    kind = "panic"             panic, tamper or input
    gpio = 17                  BCM number (GPIO17 is physical pin 11)
    contact = "NC"             NO or NC: how the button is wired
    pull = "up"                the pin's pull; the active level follows from it

An `[[inputs]]` table with a `modbus = {...}` key instead of `gpio` is an input
on a Modbus module: `parse_inputs` hands it on to `gateway.config.modbus`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.config._fields import POINT_ID, TomlTable, empty_table
from gateway.config.cameras import CameraSettings, camera_refs
from gateway.errors import ConfigError

InputKind = Literal["panic", "tamper", "input"]
Contact = Literal["NO", "NC"]
Pull = Literal["up", "down", "off"]
Level = Literal["low", "high"]
GpioBackend = Literal["lgpio", "mock"]

INPUT_KINDS: tuple[InputKind, ...] = ("panic", "tamper", "input")

# BCM numbers on the 40-pin header. GPIO 0 and 1 are the HAT ID EEPROM bus.
GPIO_PINS = range(2, 28)
# GPIO 2 and 3 (I2C) have fixed 1.8 kOhm pull-ups on the board.
FIXED_PULL_UP = frozenset({2, 3})

_ACTIVE_LEVEL: dict[tuple[str, str], Level] = {
    # A normally-open contact closes to the rail opposite the pull when pressed;
    # a normally-closed one opens, letting the pull win.
    ("up", "NO"): "low",
    ("up", "NC"): "high",
    ("down", "NO"): "high",
    ("down", "NC"): "low",
}


@dataclass(frozen=True)
class GpioSettings:
    """The GPIO pin backend."""

    backend: GpioBackend
    debounce_ms: int
    """Default debounce: a new level must be stable this long, in milliseconds."""


@dataclass(frozen=True)
class InputSettings:
    """One wired input on a GPIO pin: a panic button, a tamper contact or a plain input.

    (Inputs on Modbus modules are `[[inputs]]` with a `modbus` key; they are in
    `Config.modbus.points`.)"""

    id: str
    name: str
    location: str
    kind: InputKind
    gpio: int
    contact: Contact
    pull: Pull
    active_level: Level
    """Pin level that means 'active' (pressed, tampered), derived from wiring."""
    debounce_ms: int
    cameras: tuple[str, ...] = ()
    """Ids of the cameras that take pictures when this input raises an alarm."""

    @property
    def source(self) -> str:
        return f"gpio:{self.gpio}"


def parse_gpio(root: TomlTable) -> GpioSettings:
    """Read the optional [gpio] table."""
    t = root.table("gpio") or empty_table(root.path, "gpio")
    t.expect("backend", "debounce_ms")
    gpio = GpioSettings(
        backend=t.choice("backend", ("lgpio", "mock"), "lgpio"),
        debounce_ms=t.integer("debounce_ms", 30, min=0, max=5000),
    )
    t.done()
    return gpio


def parse_inputs(root: TomlTable, gpio: GpioSettings, modbus_tables: list[TomlTable] | None = None,
                 cameras: tuple[CameraSettings, ...] = ()) -> tuple[InputSettings, ...]:
    """The GPIO inputs; tables with a `modbus` key go to `modbus_tables` (for
    `gateway.config.modbus.parse_modbus`). `cameras`: the configured cameras."""
    tables = root.array_of_tables("inputs")
    if not tables:
        raise ConfigError(root.path, "inputs", "missing: configure at least one [[inputs]]")
    result: list[InputSettings] = []
    ids: dict[str, str] = {}
    pins: dict[int, str] = {}
    for t in tables:
        if "modbus" in t.data and modbus_tables is not None:
            modbus_tables.append(t)
            continue
        t.expect("id", "name", "location", "kind", "gpio", "contact", "pull", "active_level",
                 "debounce_ms", "cameras", related=("modbus",))
        point_id = t.text("id", pattern=POINT_ID, required=True)
        if point_id in ids:
            raise t.error("id", f"{point_id!r} is already used by {ids[point_id]}")
        ids[point_id] = t.prefix
        kind: InputKind = t.choice("kind", INPUT_KINDS)
        if "gpio" not in t.data:
            raise t.error("gpio", "missing: say where the input is wired, gpio = N (a BCM pin)"
                          " or modbus = { device = \"io1\", table = \"di\", address = 0 }")
        pin = t.integer("gpio", None, min=-(1 << 31), max=1 << 31)
        if pin not in GPIO_PINS:
            raise t.error("gpio", f"pin {pin} is not a usable GPIO: use a BCM number from 2 to"
                          " 27 (GPIO17 is physical pin 11)")
        if pin in pins:
            raise t.error("gpio", f"GPIO{pin} is already used by {pins[pin]}")
        pins[pin] = t.prefix
        contact: Contact = t.choice("contact", ("NO", "NC"), "NO")
        pull: Pull = t.choice("pull", ("up", "down", "off"), "up")
        if pin in FIXED_PULL_UP and pull != "up":
            raise t.error("pull", f"GPIO{pin} has a fixed pull-up on the board: use pull = \"up\"")
        active_level: Level
        if pull == "off":
            active_level = t.choice("active_level", ("low", "high"))
        else:
            derived = _ACTIVE_LEVEL[(pull, contact)]
            active_level = t.choice("active_level", ("low", "high"), derived)
            if active_level != derived:
                raise t.error("active_level", f"{active_level!r} contradicts pull = {pull!r} with"
                              f" contact = {contact!r} (that wiring is active {derived}); leave"
                              " active_level out")
        result.append(InputSettings(
            id=point_id,
            name=t.label("name", point_id),
            location=t.label("location", ""),
            kind=kind,
            gpio=pin,
            contact=contact,
            pull=pull,
            active_level=active_level,
            debounce_ms=t.integer("debounce_ms", gpio.debounce_ms, min=0, max=5000),
            cameras=camera_refs(t, cameras),
        ))
        t.done()
    for cam_t, cam in zip(root.array_of_tables("cameras"), cameras, strict=True):
        if cam.id in ids:
            raise cam_t.error("id", f"{cam.id!r} is already used by {ids[cam.id]}: a camera's"
                              " id names its fault events, so it must differ from every input's")
    return tuple(result)

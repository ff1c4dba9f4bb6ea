"""Outputs and linkage in the config: what the gateway switches when a button is pressed.

    [[outputs]]   a sounder, a strobe, the acknowledgement lamp: a GPIO pin (gpio = 23)
                  or a Modbus coil (modbus = { device = "io1", table = "coil", address = 0 })
    [[links]]     which inputs switch which outputs on, and for how long:
                  inputs = ["gate-panic"], outputs = ["sounder"], for_s = 180
                  (or until = "reset": until `alarmgw output sounder off`;
                   or until = "restore": while the input stays active)

A link fires on the event its input raises (an alarm for a panic button, a
tamper for a tamper contact, and a drill too when `drill = true`), so an
output follows exactly what the platform is told.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.config._fields import POINT_ID, TomlTable
from gateway.config.inputs import GPIO_PINS, InputSettings, Level
from gateway.config.modbus import ModbusSettings

Until = Literal["reset", "restore"]


@dataclass(frozen=True)
class OutputSettings:
    """One output: a GPIO pin or a coil of a Modbus module."""

    id: str
    name: str
    location: str
    gpio: int | None
    active_level: Level
    """GPIO: the pin level that switches the output on (relay boards are often active low)."""
    device: str | None
    """Modbus: the module's id."""
    address: int
    """Modbus: the coil's address."""
    bus: str = ""
    """Modbus: the module's bus."""
    unit: int = 0
    """Modbus: the module's unit id."""

    @property
    def source(self) -> str:
        if self.gpio is not None:
            return f"gpio:{self.gpio}"
        return f"modbus:{self.bus}/{self.unit}/coil{self.address}"


@dataclass(frozen=True)
class LinkSettings:
    """When any of `inputs` raises its event, switch `outputs` on."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    for_s: float | None
    """On for this long after the latest trigger, in seconds; None with `until`."""
    until: Until | None
    """'reset': until switched off by hand; 'restore': while a triggering input is active."""
    drill: bool
    """A drill of one of the inputs fires the link too."""


def parse_outputs(root: TomlTable, inputs: tuple[InputSettings, ...], modbus: ModbusSettings,
                  taken: dict[str, str]) -> tuple[tuple[OutputSettings, ...],
                                                   tuple[LinkSettings, ...]]:
    """Read [[outputs]] and [[links]]; `taken` holds every id already used (inputs, buses,
    devices) and gets the outputs' ids."""
    outputs: list[OutputSettings] = []
    pins = {i.gpio: f"input {i.id}" for i in inputs}
    coils: dict[tuple[str, int], str] = {}
    devices = {d.id: d for d in modbus.devices}
    for t in root.array_of_tables("outputs"):
        t.expect("id", "name", "location", "gpio", "modbus", "active_level")
        out_id = t.text("id", pattern=POINT_ID, required=True)
        if out_id in taken:
            raise t.error("id", f"{out_id!r} is already used by {taken[out_id]}: ids of inputs,"
                          " outputs, buses and devices name events and must all differ")
        taken[out_id] = t.prefix
        has_gpio, has_modbus = "gpio" in t.data, "modbus" in t.data
        if has_gpio == has_modbus:
            raise t.error("gpio" if has_gpio else "modbus",
                          "give gpio = N (a pin) or modbus = { device = ..., table = \"coil\","
                          " address = N } (a module's relay), exactly one")
        gpio: int | None = None
        device: str | None = None
        address = 0
        level: Level = "high"
        if has_gpio:
            gpio = t.integer("gpio", None, min=-(1 << 31), max=1 << 31)
            if gpio not in GPIO_PINS:
                raise t.error("gpio", f"pin {gpio} is not a usable GPIO: use a BCM number from 2"
                              " to 27")
            if gpio in pins:
                raise t.error("gpio", f"GPIO{gpio} is already used by {pins[gpio]}")
            pins[gpio] = f"output {out_id}"
            level = t.choice("active_level", ("low", "high"), "high")
        else:
            if "active_level" in t.data:
                raise t.error("active_level", "applies to GPIO outputs; a coil is on at 1")
            mt = t.table("modbus", required=True)
            assert mt is not None
            mt.expect("device", "table", "address")
            device = mt.text("device", required=True)
            if device not in devices:
                known = ", ".join(sorted(devices)) or "none"
                raise mt.error("device", f"no module {device!r} in [[modbus.devices]]"
                               f" (modules: {known})")
            mt.choice("table", ("coil",), "coil")
            address = mt.integer("address", None, min=0, max=65535)
            if (device, address) in coils:
                raise mt.error("address", f"coil {address} of {device} is already output"
                               f" {coils[(device, address)]}")
            coils[(device, address)] = out_id
            mt.done()
        dev = devices[device] if device is not None else None
        outputs.append(OutputSettings(id=out_id, name=t.label("name", out_id),
                                      location=t.label("location", ""), gpio=gpio,
                                      active_level=level, device=device, address=address,
                                      bus=dev.bus if dev else "", unit=dev.unit if dev else 0))
        t.done()

    kinds = {i.id: i.kind for i in inputs}
    kinds.update({p.id: p.kind for p in modbus.points})
    out_ids = {o.id for o in outputs}
    links: list[LinkSettings] = []
    for t in root.array_of_tables("links"):
        t.expect("inputs", "outputs", "for_s", "until", "drill")
        link_inputs = _id_list(t, "inputs")
        for i in link_inputs:
            if i not in kinds:
                raise t.error("inputs", f"no input {i!r} (inputs: {', '.join(sorted(kinds))})")
            if kinds[i] == "input":
                raise t.error("inputs", f"{i!r} is a plain input (kind = \"input\"): it raises no"
                              " event, and links follow the events that panic buttons and"
                              " tamper contacts raise")
        link_outputs = _id_list(t, "outputs")
        for o in link_outputs:
            if o not in out_ids:
                known = ", ".join(sorted(out_ids)) or "none"
                raise t.error("outputs", f"no output {o!r} in [[outputs]] (outputs: {known})")
        has_for, has_until = "for_s" in t.data, "until" in t.data
        if has_for == has_until:
            raise t.error("for_s" if has_for else "until",
                          "say how long the outputs stay on, exactly one of: for_s = 180"
                          " (seconds after the latest trigger), until = \"reset\" (until"
                          " `alarmgw output ID off`), until = \"restore\" (while the input is"
                          " active)")
        for_s = t.number("for_s", 0.0, min=0.1, max=86400.0) if has_for else None
        until: Until | None = t.choice("until", ("reset", "restore")) if has_until else None
        links.append(LinkSettings(inputs=tuple(link_inputs), outputs=tuple(link_outputs),
                                  for_s=for_s, until=until, drill=t.flag("drill", False)))
        t.done()
    return tuple(outputs), tuple(links)


def _id_list(t: TomlTable, name: str) -> list[str]:
    value = t.data.get(name)
    t.seen.add(name)
    if value is None:
        raise t.error(name, "missing (required): a list of ids, e.g. [\"gate-panic\"]")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise t.error(name, "must be a non-empty list of ids, e.g. [\"gate-panic\"]")
    if len(set(value)) != len(value):
        raise t.error(name, "lists an id twice")
    return list(value)

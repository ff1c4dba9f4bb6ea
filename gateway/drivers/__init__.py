"""Drivers: one module per kind of hardware.

A driver knows its hardware and nothing else. An input driver turns wires
(or frames) into debounced `InputChange`s and hands each one to a single
callable, the engine's door, which is thread-safe and never blocks on I/O.
It must:

- report every input's level once at start, with `initial=True`, so that a
  panic button already latched when the service starts raises its alarm;
- timestamp a change with the monotonic time at which the new level began
  (the first edge of the stable run), not when debouncing confirmed it;
- never call the door from inside a lock the engine could wait on, and
  never raise into the hardware library's callback thread.

A driver that supervises a device reports its health as `FaultChange`s
through the same door: `active=True` once when the device fails (naming
what failed and what to check), `active=False` once when it recovers.

`status()` returns a plain dict per input for `alarmgw status`/`inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputChange:
    """A debounced change of one input's state, as a driver reports it."""

    point_id: str
    active: bool
    """True when the input is in its active state (pressed, tampered)."""
    mono_ns: int
    """CLOCK_BOOTTIME when the new level began, in ns."""
    initial: bool = False
    """True for the reading taken when the driver started."""


@dataclass(frozen=True)
class FaultChange:
    """A supervised device failed (`active`) or recovered, as a driver reports it."""

    device_id: str
    """The device's id from the config (becomes the event's point id)."""
    name: str
    """What a person calls it, e.g. 'Modbus unit 3 on bus rs485'."""
    source: str
    """Where it is reached, e.g. 'modbus:rs485/3' or 'camera:gate'."""
    active: bool
    reason: str
    """What is wrong and what to check; empty when it recovered."""
    mono_ns: int
    location: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

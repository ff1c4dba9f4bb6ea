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

# The door's vocabulary lives with the events it becomes (the uplink and the watches raise
# faults too, and may not import the drivers); it is named here for the drivers.
from gateway.events import FaultChange, InputChange

__all__ = ["FaultChange", "InputChange"]

"""The [clock] table: how the gateway tells whether its wall clock can be trusted.

A Raspberry Pi has no real-time clock, so events carry whether the wall time
was synchronised (see `gateway.clock`); this table says how to find out, and
when a clock that stays unsynchronised becomes a fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from gateway.clock import ClockSource
from gateway.config._fields import TomlTable, empty_table

CLOCK_SOURCES: tuple[ClockSource, ...] = get_args(ClockSource)


@dataclass(frozen=True)
class ClockSettings:
    """How to tell whether the wall clock is synchronised."""

    sync_source: ClockSource
    unsynced_fault_s: float = 900.0
    """Raise a clock fault when the clock is still not synced this many seconds after boot
    (or after it lost sync); 0 turns the fault off."""


def parse_clock(root: TomlTable) -> ClockSettings:
    """Read the optional [clock] table."""
    t = root.table("clock") or empty_table(root.path, "clock")
    t.expect("sync_source", "unsynced_fault_s")
    clock = ClockSettings(
        sync_source=t.choice("sync_source", CLOCK_SOURCES, "kernel"),
        unsynced_fault_s=t.number("unsynced_fault_s", 900.0, min=0.0, max=7 * 86400.0))
    t.done()
    return clock

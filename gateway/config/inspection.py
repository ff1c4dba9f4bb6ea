"""The [inspection] table: the technician's inspection (巡检) and the maintenance record.

    [inspection]
    sounder = false            a test press of a point under inspection fires its links
                               (sounder, strobe) as an alarm would; off by default, so
                               that testing every button does not alarm the school
    max_untested_days = 30     a panic or tamper input not proven working for longer is
                               shown by `alarmgw status` and the heartbeat, and the
                               platform gets one `notice` event for it
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config._fields import TomlTable, empty_table

#: The default and the longest window of one inspection, in minutes.
DEFAULT_MINUTES = 30
MAX_MINUTES = 240


@dataclass(frozen=True)
class InspectionSettings:
    """Inspection windows and the per-point maintenance record."""

    sounder: bool = False
    """A test press under inspection fires its [[links]] (the sounder) too."""
    max_untested_days: float = 30.0
    """A point not proven working for longer than this many days needs attention."""


def parse_inspection(root: TomlTable) -> InspectionSettings:
    """Read the optional [inspection] table (every key has a default)."""
    t = root.table("inspection") or empty_table(root.path, "inspection")
    t.expect("sounder", "max_untested_days")
    s = InspectionSettings(
        sounder=t.flag("sounder", False),
        max_untested_days=t.number("max_untested_days", 30.0, min=1.0, max=3650.0),
    )
    t.done()
    return s

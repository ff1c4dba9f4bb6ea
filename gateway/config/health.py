"""The [health] table: the periodic heartbeat that tells the platform this gateway is alive."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config._fields import TomlTable, empty_table


@dataclass(frozen=True)
class HealthSettings:
    """The periodic heartbeat (memory only, never written to disk)."""

    interval_s: float


def parse_health(root: TomlTable) -> HealthSettings:
    """Read the optional [health] table."""
    t = root.table("health") or empty_table(root.path, "health")
    t.expect("interval_s")
    health = HealthSettings(interval_s=t.number("interval_s", 30.0, min=1.0, max=3600.0))
    t.done()
    return health

"""The [store] table: the budget of the durable outbox on the SD card.

    [store]
    max_bytes = 268435456     waiting rows; snapshots and telemetry give way first
    keep_acked = 1000         delivered rows kept for `alarmgw queue`
    reserve_bytes = 4194304   ballast released so an alarm commits on a full disk
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config._fields import TomlTable, empty_table


@dataclass(frozen=True)
class StoreSettings:
    """The durable outbox."""

    max_bytes: int
    """Byte budget for waiting rows; bulk rows give way first, alarms never."""
    keep_acked: int
    """How many acknowledged rows to keep for `alarmgw queue` before pruning."""
    reserve_bytes: int = 4 * 1024 * 1024
    """Ballast file released when the disk is full, so an alarm can still be committed."""


def parse_store(root: TomlTable) -> StoreSettings:
    """Read the optional [store] table (every key has a default)."""
    t = root.table("store") or empty_table(root.path, "store")
    t.expect("max_bytes", "keep_acked", "reserve_bytes")
    s = StoreSettings(
        max_bytes=t.integer("max_bytes", 256 * 1024 * 1024, min=64 * 1024, max=1 << 40),
        keep_acked=t.integer("keep_acked", 1000, min=0, max=1_000_000),
        reserve_bytes=t.integer("reserve_bytes", 4 * 1024 * 1024, min=0, max=1 << 30),
    )
    t.done()
    return s

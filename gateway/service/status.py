"""The facts a status document is made of, running or not.

The running service's `Service.status()` and the offline view of `alarmgw status`
(`gateway.cli.status.offline_status`) build the same shape; the pieces they share
(versions, the disk, the oldest waiting row, the clock) are computed here, once. So is
how long a row has waited (`waited`), which `alarmgw queue` shows for every row: by the
boot clock within a boot, since the wall clock of a Pi without a real-time clock jumps
when NTP first sets it.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import sqlite3
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.clock import Clock, mono_ns, read_boot_id
from gateway.config import Config
from gateway.events import PROTOCOL_VERSION
from gateway.store import QueueStats

DISTRIBUTIONS = ("paho-mqtt", "gpiozero", "pymodbus", "pyserial", "lgpio", "picamera2")


def versions() -> dict[str, str | None]:
    """Versions of everything a bug report needs."""
    v: dict[str, str | None] = {
        "alarmgw": __version__,
        "protocol": f"v{PROTOCOL_VERSION}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "openssl": ssl.OPENSSL_VERSION,
        "os": _os_name(),
        "kernel": platform.release(),
        "board": _board(),
    }
    for dist in DISTRIBUTIONS:
        try:
            v[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            if dist in ("paho-mqtt", "gpiozero", "pymodbus", "pyserial"):
                v[dist] = None
    return v


def _os_name() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return None


def _board() -> str | None:
    try:
        return Path("/proc/device-tree/model").read_text(encoding="utf-8",
                                                         errors="replace").strip("\0\n ")
    except OSError:
        return None


def disk_info(state_dir: Path, store: Path | None = None) -> dict[str, Any]:
    free: int | None = None
    total: int | None = None
    where = state_dir
    while not where.exists() and where.parent != where:
        where = where.parent  # not created yet: the filesystem it will be on
    try:
        usage = shutil.disk_usage(where)
        free, total = usage.free, usage.total
    except OSError:
        pass
    store_bytes: int | None = None
    if store is not None:
        for suffix in ("", "-wal", "-shm"):
            try:
                size = (store.parent / (store.name + suffix)).stat().st_size
            except OSError:
                continue
            store_bytes = (store_bytes or 0) + size
    return {"path": str(state_dir), "free_bytes": free, "total_bytes": total,
            "store_bytes": store_bytes}


@dataclass(frozen=True)
class Now:
    """Both clocks, read together: what a row's age is measured against.

    `wall_s` is the wall clock (seconds since the epoch), which NTP steps on a Pi without
    a real-time clock, by decades after a boot without network; `boot_ns` is
    CLOCK_BOOTTIME (gateway.clock.mono_ns), which nothing steps, and `boot_id` the boot it
    counts from."""

    wall_s: float
    boot_ns: int
    boot_id: str

    @classmethod
    def read(cls) -> Now:
        """The clocks now."""
        return cls(wall_s=time.time(), boot_ns=mono_ns(), boot_id=read_boot_id())


def waited(created_at: str | None, row_mono_ns: int | None, row_boot_id: str | None,
           now: Now) -> tuple[float | None, str | None]:
    """How long a row has waited, in seconds (to 0.1 s), and the clock that says so.

    "boot": the row was committed in this boot, and its age is the boot clock's, right
    whatever the wall clock did since. "wall": the row is from an earlier boot (or was
    written before rows kept their boot clock): only the wall clocks of then and now can
    tell, and a step of either is in the figure. (None, None): no time to tell it by.
    """
    if row_mono_ns is not None and row_boot_id is not None and row_boot_id == now.boot_id:
        return round((now.boot_ns - row_mono_ns) / 1e9, 1), "boot"
    if not created_at:
        return None, None
    try:
        then = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None, None
    return round(now.wall_s - then.timestamp(), 1), "wall"


def oldest_waiting(lanes: dict[str, dict[str, Any]], now: Now | None = None
                   ) -> dict[str, Any] | None:
    """The row that has waited longest, over all lanes (None when nothing waits), with its
    age (`age_s`) and the clock that tells it (`age_clock`, see `waited`); `now`: the
    clocks to measure against (default: read them).

    The oldest is the one committed first (the lowest row id), not the one with the
    earliest wall time: a step of the wall clock reorders those."""
    best: tuple[str, dict[str, Any]] | None = None
    for name, lane in lanes.items():
        if lane.get("oldest_created_at") and (best is None or _committed_before(lane, best[1])):
            best = (name, lane)
    if best is None:
        return None
    name, lane = best
    age, clock = waited(lane["oldest_created_at"], lane.get("oldest_mono_ns"),
                        lane.get("oldest_boot_id"), now if now is not None else Now.read())
    return {"lane": name, "created_at": lane["oldest_created_at"],
            "event_id": lane.get("oldest_event_id"), "age_s": age, "age_clock": clock,
            "boot_id": lane.get("oldest_boot_id")}


def _committed_before(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.get("oldest_row") is not None and b.get("oldest_row") is not None:
        return bool(a["oldest_row"] < b["oldest_row"])
    return bool(a["oldest_created_at"] < b["oldest_created_at"])


def clock_info(clock: Clock, config: Config) -> dict[str, Any]:
    return {"synced": clock.is_synced(), "source": clock.source, "method": clock.sync_method(),
            "boot_id": clock.boot_id, "unsynced_fault_s": config.clock.unsynced_fault_s}


def disk_free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def stats_dict(stats: QueueStats) -> dict[str, Any]:
    """The outbox's statistics as the status document carries them."""
    return {
        "waiting": stats.waiting,
        "lanes": {name: vars(lane) for name, lane in stats.lanes.items()},
        "acked_kept": stats.acked_kept,
        "bytes_total": stats.bytes_total,
        "budget_bytes": stats.budget_bytes,
        "next_seq": stats.next_seq,
        "evicted_total": stats.evicted_total,
        "refused_total": stats.refused_total,
    }

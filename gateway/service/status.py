"""The facts a status document is made of, running or not.

The running service's `Service.status()` and the offline view of `alarmgw status`
(`gateway.cli.status.offline_status`) build the same shape; the pieces they share
(versions, the disk, the oldest waiting row, the clock) are computed here, once.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import sqlite3
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.clock import Clock
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


def _age_s(created_at: str | None) -> float | None:
    if not created_at:
        return None
    try:
        then = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return round(time.time() - then.timestamp(), 1)


def oldest_waiting(lanes: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The row that has waited longest, over all lanes (None when nothing waits)."""
    best: tuple[str, dict[str, Any]] | None = None
    for name, lane in lanes.items():
        created = lane.get("oldest_created_at")
        if created and (best is None or created < best[1]["oldest_created_at"]):
            best = (name, lane)
    if best is None:
        return None
    name, lane = best
    return {"lane": name, "created_at": lane["oldest_created_at"],
            "event_id": lane.get("oldest_event_id"), "age_s": _age_s(lane["oldest_created_at"])}


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

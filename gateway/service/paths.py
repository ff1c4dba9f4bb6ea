"""Where a configured gateway keeps its files: the store, its lock, the control socket."""

from __future__ import annotations

from pathlib import Path

from gateway.config import Config
from gateway.control import SOCKET_NAME

STORE_NAME = "outbox.sqlite3"
LOCK_NAME = "alarmgw.lock"


def store_path(config: Config) -> Path:
    """The outbox's SQLite file, in the state directory."""
    return config.gateway.state_dir / STORE_NAME


def socket_path(config: Config) -> Path:
    """The control socket, in the runtime directory."""
    return config.gateway.runtime_dir / SOCKET_NAME


def lock_path(config: Config) -> Path:
    """The lock that keeps a second service off the same state directory."""
    return config.gateway.state_dir / LOCK_NAME

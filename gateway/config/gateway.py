"""The [gateway] table: which gateway this is, and where it keeps its files.

    [gateway]
    site = "school-042"            the school, in every topic
    id = "gw-01"                   this gateway, unique within the site
    state_dir = "/var/lib/alarmgw" the durable outbox
    runtime_dir = "/run/alarmgw"   the control socket

The directories are not created here (loading a config creates nothing), but a
path that can never be a directory, because it or one of its parents is a
file, is refused now rather than when the service first tries to use it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gateway.config._fields import TOPIC_NAME, TomlTable


@dataclass(frozen=True)
class GatewaySettings:
    """Who this gateway is and where it keeps its files."""

    site: str
    """Site id (the school), used in every topic."""
    id: str
    """Gateway id, unique within the site, used in every topic."""
    state_dir: Path
    """Directory of the durable store (the outbox)."""
    runtime_dir: Path
    """Directory of the control socket."""


def parse_gateway(root: TomlTable) -> GatewaySettings:
    """Read the required [gateway] table."""
    gw = root.table("gateway", required=True)
    assert gw is not None
    gw.expect("site", "id", "state_dir", "runtime_dir")
    gateway = GatewaySettings(
        site=gw.text("site", pattern=TOPIC_NAME, required=True),
        id=gw.text("id", pattern=TOPIC_NAME, required=True),
        state_dir=_directory(gw, "state_dir", Path("/var/lib/alarmgw")),
        runtime_dir=_directory(gw, "runtime_dir", Path("/run/alarmgw")),
    )
    gw.done()
    return gateway


def _directory(t: TomlTable, name: str, default: Path) -> Path:
    """The directory path at `name`, refused when it is, or lies under, something that is
    not a directory. Missing parts are fine: the service creates them."""
    path = t.path_(name, default)
    for candidate in (path, *path.parents):
        try:
            mode = os.stat(candidate).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, ValueError):
            return path  # cannot look (no permission, a bad name): the service will say
        if stat.S_ISDIR(mode):
            return path
        what = "a file" if stat.S_ISREG(mode) else "a special file (a device, socket or pipe)"
        if candidate == path:
            raise t.error(name, f"{path} is {what}, not a directory: give the directory the"
                          " gateway may keep its files in")
        raise t.error(name, f"{path} cannot be a directory: {candidate} is {what}, not a"
                      " directory")
    return path

"""What every `alarmgw` command uses: the exit codes, the config, the control socket, output.

The exit-code rule, one for every command (README.md, "For the technician"):

    0  fine
    1  failed, or something needs attention
    2  bad usage or config: a bad option, a config that does not load or whose
       directories cannot be used, or an input, module, bus, output or camera
       named on the command line that the config does not have (known from the
       config, before the service is asked)
    3  the service is not running, also when the command could still answer
       from the disk (`status`, `queue`, `drills`, `selftest`, `inspect report`
       print what they can, then exit 3)

A command with `--json` prints one JSON document on stdout whatever happens;
an error is `{"ok": false, "error": "...", ...}` and is said on stderr too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config import DEFAULT_PATH, Config, load_config, parse_override
from gateway.control import request
from gateway.errors import ServiceNotRunningError
from gateway.logs import SecretFilter, setup_logging

EXIT_OK = 0
"""Fine."""
EXIT_FAIL = 1
"""Failed, or something needs attention."""
EXIT_USAGE = 2
"""Bad usage or config (systemd does not restart the service on it)."""
EXIT_NOT_RUNNING = 3
"""The service is not running (as `systemctl status` uses 3)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C."""

EXITS_EPILOG = ("exit codes: 0 fine; 1 failed or needs attention; 2 bad usage or config (also"
                " an input, module, bus, output or camera the config does not have); 3 the"
                " service is not running")
"""The rule, as the top-level --help says it."""

START_HINT = "start it with: systemctl start alarmgw"

Ask = Callable[[dict[str, Any]], Any]
"""Sends one control request to the service (raises ServiceNotRunningError)."""


def logging_to_stderr(verbose: bool) -> SecretFilter:
    """Journald-friendly stderr logging (see gateway/logs.py)."""
    return setup_logging(verbose)


def config_path(args: argparse.Namespace) -> Path:
    """-c FILE, else $ALARMGW_CONFIG, else /etc/alarmgw/config.toml."""
    if getattr(args, "config", None) is not None:
        return Path(args.config)
    env = os.environ.get("ALARMGW_CONFIG")
    return Path(env) if env else DEFAULT_PATH


def load(args: argparse.Namespace) -> Config:
    """The config the command names, with its `--set KEY=VALUE` overrides (raises
    ConfigError)."""
    overrides = dict(parse_override(s) for s in getattr(args, "set", None) or [])
    return load_config(config_path(args), overrides)


def control(cfg: Config, req: dict[str, Any], timeout: float = 10.0) -> Any:
    """One request to the service on its control socket (raises ServiceNotRunningError,
    ControlError)."""
    from gateway.service import socket_path

    return request(socket_path(cfg), req, timeout=timeout)


def asker(cfg: Config) -> Ask:
    """`control` bound to a config."""
    return lambda req: control(cfg, req)


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def print_json(doc: Any, indent: int | None = 2) -> None:
    """One JSON document on stdout (indent None: on one line, for a stream of them)."""
    print(json.dumps(doc, ensure_ascii=False, indent=indent), flush=True)


def fail(args: argparse.Namespace, code: int, message: str, **fields: Any) -> int:
    """Say what went wrong and return `code`: on stderr, and with --json also as
    `{"ok": false, "error": message, **fields}` on stdout."""
    if wants_json(args):
        print_json({"ok": False, "error": message, **fields})
    print(message, file=sys.stderr, flush=True)
    return code


def not_running(args: argparse.Namespace, exc: ServiceNotRunningError, what: str = "",
                **fields: Any) -> int:
    """The service does not answer: exit 3, saying how to start it. `what` prefixes the
    message (e.g. why this command needs the service)."""
    return fail(args, EXIT_NOT_RUNNING, f"{what}{exc}; {START_HINT}", running=False, **fields)


def known(ids: list[str]) -> str:
    """A list of ids for an error message: 'a, b' or 'none configured'."""
    return ", ".join(ids) or "none configured"


def point_ids(cfg: Config) -> list[str]:
    """Every input of the config, GPIO and Modbus, in config order."""
    return [i.id for i in cfg.inputs] + [p.id for p in cfg.modbus.points]


def unknown_point(args: argparse.Namespace, cfg: Config, point: str) -> int | None:
    """Exit 2 (saying which inputs exist) when the config has no input `point`."""
    ids = point_ids(cfg)
    if point in ids:
        return None
    return fail(args, EXIT_USAGE, f"error: no input {point!r} in {cfg.path} (inputs:"
                f" {known(sorted(ids))})")

"""`alarmgw logs`: the service's recent log, or, where there is no journal of it, where it went.

The service logs to its stderr. Under systemd, journald keeps that, and `logs` runs
journalctl for the unit (warnings and worse unless --all; `-D` reads the journal
files of another Pi's SD card). Where no journal has the service's log (no
journalctl, or systemd does not know the unit: the simulator, `alarmgw demo`,
`alarmgw run` started by hand), journalctl could only answer "-- No entries --";
`logs` says instead where the log of the service running now goes: what its stderr
is (a file, a terminal, a pipe to the process that started it, /dev/null), read
from /proc, or, with no service running, who would have it. Then it exits 1: it
could not show the log.

With --json: one document, `{"ok": true, "unit": ..., "entries": [...]}`; with
--follow, one entry per line as they come.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.common import EXIT_FAIL, EXIT_OK, control, fail, load, print_json
from gateway.cli.directories import user_name
from gateway.cli.status import systemd_unit_state
from gateway.config import Config
from gateway.errors import ConfigError, GatewayError, ServiceNotRunningError

#: journalctl's PRIORITY field to a name, for `logs --json`.
_PRIORITY_NAMES = {"0": "emerg", "1": "alert", "2": "crit", "3": "err", "4": "warning",
                   "5": "notice", "6": "info", "7": "debug"}


def add_logs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true", help="every priority (default: warnings and"
                   " worse)")
    p.add_argument("-n", "--lines", type=int, default=200, help="most recent lines (default"
                   " 200)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--since", help="e.g. \"1 hour ago\", \"today\", \"2026-11-28 08:00\"")
    p.add_argument("--unit", default="alarmgw.service", help="systemd unit (default"
                   " alarmgw.service)")
    p.add_argument("-D", "--directory", help="read the journal files in this directory (e.g."
                   " a Pi's SD card mounted elsewhere: /mnt/var/log/journal)")


def journalctl_args(args: argparse.Namespace) -> list[str]:
    cmd = ["-u", args.unit, "--no-pager", "-n", str(args.lines)]
    if not args.all:
        cmd += ["-p", "warning"]
    if args.since:
        cmd += ["--since", args.since]
    if args.follow:
        cmd.append("-f")
    if args.directory:
        cmd += ["-D", args.directory]
    cmd += ["-o", "json"] if args.json else ["-o", "short-iso"]
    return cmd


def cmd_logs(args: argparse.Namespace) -> int:
    """`alarmgw logs`: the journal of the unit, or where the log goes."""
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        return _no_journal(args, "journalctl not found: this system does not keep systemd's"
                           " journal")
    if args.directory:  # journal files from elsewhere: what they hold is the answer
        return _journal(args, journalctl)
    unit = systemd_unit_state(args.unit)
    if unit is None:
        return _no_journal(args, f"systemd does not know {args.unit} here (it was not"
                           " installed with systemd/install.sh, or this machine does not run"
                           " systemd), so the journal has nothing from the service")
    running = _running_service(args)
    if running is not None and "pid" in running and str(running["pid"]) != unit.get("MainPID"):
        print(f"alarmgw logs: note: the alarmgw answering now (pid {running['pid']}) is not"
              f" the one systemd started for {args.unit}; its log goes to"
              f" {running['stderr_text']}", file=sys.stderr)
    return _journal(args, journalctl)


# -- the journal -------------------------------------------------------------------------------

def _entry(rec: dict[str, Any]) -> dict[str, Any]:
    usec = rec.get("__REALTIME_TIMESTAMP")
    at = (datetime.fromtimestamp(int(usec) / 1e6, tz=UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z") if usec else None)
    message = rec.get("MESSAGE")
    if isinstance(message, list):  # journald stores non-UTF-8 text as bytes
        message = bytes(message).decode("utf-8", errors="replace")
    return {"at": at, "priority": _PRIORITY_NAMES.get(str(rec.get("PRIORITY")),
                                                       rec.get("PRIORITY")),
            "pid": rec.get("_PID"), "unit": rec.get("_SYSTEMD_UNIT"), "message": message}


def _entries(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """journalctl's `-o json` lines as `logs --json` entries (lines that are not JSON
    objects are skipped)."""
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            yield _entry(rec)


def _journal(args: argparse.Namespace, journalctl: str) -> int:
    cmd = [journalctl, *journalctl_args(args)]
    try:
        if not args.json:
            try:
                return subprocess.call(cmd)
            except KeyboardInterrupt:
                return EXIT_OK
        if args.follow:
            return _follow_json(cmd)
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        return fail(args, EXIT_FAIL, f"alarmgw logs: cannot run {journalctl}:"
                    f" {exc.strerror or exc}", journal=True, unit=args.unit)
    doc: dict[str, Any] = {"ok": res.returncode == 0, "unit": args.unit,
                           "directory": args.directory,
                           "entries": list(_entries(res.stdout.splitlines()))}
    if res.returncode != 0:
        doc["error"] = (f"journalctl exited with {res.returncode}: "
                        + (res.stderr.strip() or "no message"))
        print(doc["error"], file=sys.stderr)
    print_json(doc)
    return EXIT_OK if res.returncode == 0 else EXIT_FAIL


def _follow_json(cmd: list[str]) -> int:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for e in _entries(proc.stdout):
            print_json(e, None)
    except KeyboardInterrupt:
        proc.terminate()
    return EXIT_OK if proc.wait() in (0, -15) else EXIT_FAIL


# -- no journal: where the log went --------------------------------------------------------------

def _no_journal(args: argparse.Namespace, why: str) -> int:
    running = _running_service(args)
    if running is None:
        where = ("no alarmgw service answers for this config; a service started by hand"
                 " (`alarmgw run`) or by `alarmgw demo` logs to the stderr of whatever started"
                 " it: its terminal (the demo shows it in its own), or the file that stderr"
                 " was redirected to")
    elif "error" in running:
        where = running["error"]
    else:
        where = (f"the alarmgw running now (pid {running['pid']}) logs to its stderr, which"
                 f" is {running['stderr_text']}")
    message = f"alarmgw logs: no journal to read: {why}.\n{where}"
    return fail(args, EXIT_FAIL, message, journal=False, reason=why, unit=args.unit,
                service=running)


def _running_service(args: argparse.Namespace) -> dict[str, Any] | None:
    """Where the log of the service answering for this config goes; None if none answers,
    {"error": ...} if that cannot be found out."""
    try:
        cfg = load(args)
    except ConfigError as exc:
        return {"error": f"the config does not load, so the service cannot be asked: {exc}"}
    try:
        pid = int(_ping(cfg)["pid"])
    except ServiceNotRunningError:
        return None
    except (GatewayError, KeyError, TypeError, ValueError) as exc:
        return {"error": f"the service does not say its pid: {exc}"}
    return {"pid": pid, **describe_stderr(pid)}


def _ping(cfg: Config) -> dict[str, Any]:
    res: dict[str, Any] = control(cfg, {"cmd": "ping"}, timeout=5.0)
    return res


def _command_of(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    text = " ".join(p.decode("utf-8", "replace") for p in raw.split(b"\0") if p)
    return text if len(text) <= 160 else text[:157] + "..."


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat.rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def describe_stderr(pid: int) -> dict[str, Any]:
    """What process `pid`'s stderr (fd 2) is: `kind` ("file", "terminal", "pipe", "socket",
    "null" or "unknown"), `stderr` (the link /proc shows), `parent` (who started it) and
    `stderr_text`, a sentence saying it."""
    ppid = _parent_of(pid)
    parent = ({"pid": ppid, "command": _command_of(ppid)} if ppid is not None else None)
    by = (f" (of the process that started it, pid {ppid}: {parent['command'] or '?'})"
          if parent is not None else "")
    try:
        target = os.readlink(f"/proc/{pid}/fd/2")
    except OSError as exc:
        return {"kind": "unknown", "stderr": None, "parent": parent,
                "stderr_text": f"something this user ({user_name()}) may not look at"
                               f" ({exc.strerror}): run `sudo alarmgw logs` to see where"}
    if target.startswith("socket:"):
        kind, text = "socket", (f"a socket{by}: if that is journald's, `journalctl _PID={pid}`"
                                " shows it")
    elif target.startswith("pipe:"):
        kind = "pipe"
        text = (f"a pipe read by the process that started it (pid {ppid}:"
                f" {parent['command'] or '?'})" if parent is not None
                else "a pipe to another process, which reads it")
    elif target == "/dev/null":
        kind, text = "null", "/dev/null: its log is thrown away"
    elif target.startswith(("/dev/pts/", "/dev/tty", "/dev/console")):
        kind, text = "terminal", f"the terminal {target}{by}"
    else:
        deleted = target.endswith(" (deleted)")
        path = target.removesuffix(" (deleted)")
        kind = "file"
        text = (f"the file {path}, which has been deleted (only the process still has it)"
                if deleted else f"the file {path}: read it with `tail -n 200 {path}`")
    return {"kind": kind, "stderr": target, "parent": parent, "stderr_text": text}

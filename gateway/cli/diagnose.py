"""The technician's diagnostics: `status`, `inputs --watch`, `selftest` and `logs`.

Each has `--json` and a meaningful exit code (0 fine, 1 something needs
attention, 2 bad usage or config, 3 the service is not running).
`gateway/cli/` wires them into the `alarmgw` program.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.config import Config
from gateway.errors import ConfigError, ServiceNotRunningError

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3

Ask = Callable[[dict[str, Any]], Any]
"""Sends one control request to the service (raises ServiceNotRunningError)."""


def _print_json(doc: Any, indent: int | None = 2) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=indent), flush=True)


# -- status ---------------------------------------------------------------------------------

def status(cfg: Config, ask: Ask, as_json: bool) -> int:
    from gateway.cli.status import (
        offline_status,
        render_offline,
        render_status,
        status_exit_code,
    )

    try:
        st = ask({"cmd": "status"})
    except ServiceNotRunningError as exc:
        doc = offline_status(cfg, str(exc))
        if as_json:
            _print_json(doc)
        else:
            print("\n".join(render_offline(doc)))
            print(f"{exc}; start it with: systemctl start alarmgw", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if as_json:
        _print_json(st)
    else:
        print("\n".join(render_status(st)))
    return status_exit_code(st)


# -- inputs --watch -------------------------------------------------------------------------

def _clock_of(at: str) -> str:
    """'2026-11-28T15:37:04.123Z' -> local '15:37:04.123' (what the technician's watch says)."""
    try:
        dt = datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).astimezone()
    except ValueError:
        return at
    return dt.strftime("%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def _entry_line(e: dict[str, Any], names: dict[str, dict[str, Any]]) -> str:
    p = names.get(e["input"], {})
    label = f"{e['input']:<16} {p.get('source', e.get('source', '')):<9}"
    what = e["what"]
    if what == "change":
        state = "ACTIVE" if e["active"] else "normal"
        note = " (reading at start)" if e.get("initial") else ""
        text = f"{state}{note}"
    elif what == "glitch":
        debounce = (p.get("wire") or {}).get("debounce_ms")
        within = f" shorter than {debounce} ms" if debounce is not None else ""
        text = f"glitch: a bounce{within}, ignored ({e['glitches']} so far)"
    elif what == "fault":
        text = f"FAULT: {e.get('reason')}"
    else:
        text = "fault cleared"
    return f"{_clock_of(e['at'])}  {label} {text}  {p.get('name', '')}".rstrip()


def watch_inputs(ask: Ask, as_json: bool, count: int | None, duration: float | None,
                 wait_s: float = 5.0) -> int:
    """Follow the service's input feed until Ctrl-C, `count` entries or `duration` seconds."""
    from gateway.cli.status import input_lines

    try:
        first = ask({"cmd": "input-watch"})
    except ServiceNotRunningError as exc:
        if as_json:
            _print_json({"running": False, "error": str(exc)}, None)
        else:
            print(f"{exc}; start it with: systemctl start alarmgw", file=sys.stderr)
        return EXIT_NOT_RUNNING
    points = first["inputs"]
    names = {p["id"]: p for p in points}
    if as_json:
        _print_json({"inputs": points, "cursor": first["cursor"]}, None)
    else:
        print("inputs now (press each button and watch; Ctrl-C to stop):")
        print("\n".join(input_lines(points)), flush=True)
    cursor = int(first["cursor"])
    seen = 0
    deadline = time.monotonic() + duration if duration is not None else None
    try:
        while (count is None or seen < count) and (
                deadline is None or time.monotonic() < deadline):
            wait = wait_s if deadline is None else max(0.0, min(wait_s,
                                                                deadline - time.monotonic()))
            try:
                res = ask({"cmd": "input-watch", "after": cursor, "wait_s": wait})
            except ServiceNotRunningError as exc:
                msg = f"the service stopped while watching: {exc}"
                if as_json:
                    _print_json({"running": False, "error": msg}, None)
                print(msg, file=sys.stderr)
                return EXIT_NOT_RUNNING
            if res.get("reset"):
                print("the service restarted; following its new feed", file=sys.stderr)
            if res.get("missed"):
                print(f"({res['missed']} changes were missed: the terminal fell behind)",
                      file=sys.stderr)
            for e in res["entries"]:
                if as_json:
                    _print_json(e, None)
                else:
                    print(_entry_line(e, names), flush=True)
                seen += 1
                if count is not None and seen >= count:
                    break
            cursor = int(res["cursor"])
            if res.get("closed"):
                msg = "the service stopped while watching (it is shutting down)"
                if as_json:
                    _print_json({"running": False, "error": msg}, None)
                print(msg, file=sys.stderr)
                return EXIT_NOT_RUNNING
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# -- selftest ----------------------------------------------------------------------------

def selftest(load: Callable[[], Config], make_ask: Callable[[Config], Ask],
             as_json: bool) -> int:
    from gateway.cli.selftest import config_failure, context_for, run_selftest

    try:
        cfg = load()
    except ConfigError as exc:
        results = config_failure(str(exc))
    else:
        from gateway.cli.selftest import CheckResult

        results = [CheckResult("config", "PASS", f"{cfg.path}: {cfg.gateway.site}/"
                               f"{cfg.gateway.id}, {len(cfg.inputs)} inputs, broker"
                               f" {cfg.broker.host}:{cfg.broker.port}"
                               f" {'TLS' if cfg.broker.tls else 'PLAINTEXT'}")]
        results += run_selftest(context_for(cfg, make_ask(cfg)))
    failed = [r for r in results if r.verdict == "FAIL"]
    if as_json:
        _print_json({"ok": not failed, "checks": [r.as_dict() for r in results]})
    else:
        width = max(len(r.name) for r in results)
        for r in results:
            print(f"{r.verdict}  {r.name:<{width}}  {r.detail}")
            if r.hint and r.verdict == "FAIL":
                print(f"      {'':<{width}}  -> {r.hint}")
        print(f"{len(failed)} of {len(results)} checks FAILED" if failed
              else f"all {sum(r.verdict == 'PASS' for r in results)} checks passed"
              + (f" ({sum(r.verdict == 'SKIP' for r in results)} skipped)"
                 if any(r.verdict == "SKIP" for r in results) else ""))
    return EXIT_FAIL if failed else EXIT_OK


# -- logs --------------------------------------------------------------------------------

#: journalctl's PRIORITY field to a name, for `logs --json`.
_PRIORITY_NAMES = {"0": "emerg", "1": "alert", "2": "crit", "3": "err", "4": "warning",
                   "5": "notice", "6": "info", "7": "debug"}


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


def logs(args: argparse.Namespace) -> int:
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        print("alarmgw logs: journalctl not found: this system does not keep systemd's journal."
              " Where the service runs without systemd, its log is its stderr (run `alarmgw"
              " run` in a terminal, or see where your supervisor sends it).", file=sys.stderr)
        return EXIT_FAIL
    cmd = [journalctl, *journalctl_args(args)]
    if not args.json:
        try:
            return subprocess.call(cmd)
        except KeyboardInterrupt:
            return EXIT_OK
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    except OSError as exc:
        print(f"alarmgw logs: cannot run {journalctl}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAIL
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            usec = rec.get("__REALTIME_TIMESTAMP")
            at = (datetime.fromtimestamp(int(usec) / 1e6, tz=UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z") if usec else None)
            message = rec.get("MESSAGE")
            if isinstance(message, list):  # journald stores non-UTF-8 text as bytes
                message = bytes(message).decode("utf-8", errors="replace")
            _print_json({"at": at, "priority": _PRIORITY_NAMES.get(str(rec.get("PRIORITY")),
                                                                    rec.get("PRIORITY")),
                         "pid": rec.get("_PID"), "unit": rec.get("_SYSTEMD_UNIT"),
                         "message": message}, None)
    except KeyboardInterrupt:
        proc.terminate()
    return proc.wait()


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

"""The technician's diagnostics: `status`, `inputs --watch` and `selftest` (`logs` is in
`gateway.cli.logs`).

Each has `--json` and an exit code by the rule of `gateway.cli.common`: 0 fine, 1
something needs attention, 2 bad config, 3 the service is not running (`status` and
`selftest` still print what they can find without it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.cli.common import (
    EXIT_FAIL,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    START_HINT,
    Ask,
    asker,
    load,
    print_json,
)
from gateway.cli.selftest import CheckResult, config_failure, context_for, run_selftest
from gateway.cli.status import (
    input_lines,
    offline_status,
    render_offline,
    render_status,
    status_exit_code,
)
from gateway.config import Config
from gateway.errors import ConfigError, ServiceNotRunningError

# -- status ---------------------------------------------------------------------------------

def status(cfg: Config, ask: Ask, args: argparse.Namespace) -> int:
    """`alarmgw status`: the running service's document, or the offline one (exit 3)."""
    try:
        st = ask({"cmd": "status"})
    except ServiceNotRunningError as exc:
        doc = offline_status(cfg, str(exc))
        if args.json:
            print_json(doc)
        else:
            print("\n".join(render_offline(doc)))
        print(f"{exc}; {START_HINT}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if args.json:
        print_json(st)
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


def watch_inputs(ask: Ask, args: argparse.Namespace, wait_s: float = 5.0) -> int:
    """Follow the service's input feed until Ctrl-C, `--count` entries or `--duration`
    seconds. With --json: one JSON document per line (the inputs first, then each
    change)."""
    as_json, count, duration = bool(args.json), args.count, args.duration
    try:
        first = ask({"cmd": "input-watch"})
    except ServiceNotRunningError as exc:
        if as_json:
            print_json({"ok": False, "running": False, "error": str(exc)}, None)
        print(f"{exc}; {START_HINT}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    points = first["inputs"]
    names = {p["id"]: p for p in points}
    if as_json:
        print_json({"inputs": points, "cursor": first["cursor"]}, None)
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
                return _stopped_while_watching(as_json, f"the service stopped while watching:"
                                               f" {exc}")
            if res.get("reset"):
                print("the service restarted; following its new feed", file=sys.stderr)
            if res.get("missed"):
                print(f"({res['missed']} changes were missed: the terminal fell behind)",
                      file=sys.stderr)
            for e in res["entries"]:
                if as_json:
                    print_json(e, None)
                else:
                    print(_entry_line(e, names), flush=True)
                seen += 1
                if count is not None and seen >= count:
                    break
            cursor = int(res["cursor"])
            if res.get("closed"):
                return _stopped_while_watching(
                    as_json, "the service stopped while watching (it is shutting down)")
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _stopped_while_watching(as_json: bool, msg: str) -> int:
    if as_json:
        print_json({"ok": False, "running": False, "error": msg}, None)
    print(msg, file=sys.stderr)
    return EXIT_NOT_RUNNING


# -- selftest ----------------------------------------------------------------------------

def cmd_selftest(args: argparse.Namespace) -> int:
    return selftest(lambda: load(args), asker, args)


def selftest(load: Callable[[], Config], make_ask: Callable[[Config], Ask],
             args: argparse.Namespace) -> int:
    """`alarmgw selftest`: every check, PASS, FAIL or SKIP. Exit 2 when the config does
    not load, 3 when the service is not running (the other checks still run), 1 on any
    other FAIL."""
    try:
        cfg = load()
    except ConfigError as exc:
        results = config_failure(str(exc))
        code = EXIT_USAGE
    else:
        gpio, modbus = len(cfg.inputs), len(cfg.modbus.points)
        counted = (f"{gpio + modbus} inputs ({gpio} GPIO, {modbus} Modbus)" if modbus
                   else f"{gpio} inputs")
        results = [CheckResult("config", "PASS", f"{cfg.path}: {cfg.gateway.site}/"
                               f"{cfg.gateway.id}, {counted}, broker"
                               f" {cfg.broker.host}:{cfg.broker.port}"
                               f" {'TLS' if cfg.broker.tls else 'PLAINTEXT'}")]
        ctx = context_for(cfg, make_ask(cfg))
        results += run_selftest(ctx)
        code = EXIT_FAIL if any(r.verdict == "FAIL" for r in results) else EXIT_OK
        if ctx.service is None and ctx.service_not_running:
            code = EXIT_NOT_RUNNING
    failed = [r for r in results if r.verdict == "FAIL"]
    if args.json:
        print_json({"ok": not failed, "checks": [r.as_dict() for r in results]})
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
    return code

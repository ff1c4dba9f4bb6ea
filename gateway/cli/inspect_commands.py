"""`alarmgw inspect`: the technician's inspection (巡检) of the buttons, and its report.

    alarmgw inspect start [--points ID,...|--all] [--minutes N] --by NAME
    alarmgw inspect status
    alarmgw inspect stop [--by NAME]
    alarmgw inspect report

While a point is under inspection its press is a `test` event, not an alarm: the
technician presses each button, resets it, and watches its ack lamp blink once when the
platform's broker has the test. The points are checked against the config before the
service is asked, so a mistyped id is a usage error (2) whether the service runs or not;
`report` reads the store directly when the service is down (and exits 3 all the same).
`report` exits 1 when a point failed or was not tested: it needs attention.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.cli.common import (
    EXIT_FAIL,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    control,
    fail,
    known,
    load,
    not_running,
    print_json,
    unknown_point,
)
from gateway.cli.status import inspection_lines
from gateway.config import Config
from gateway.config.inspection import DEFAULT_MINUTES, MAX_MINUTES
from gateway.errors import GatewayError, ServiceNotRunningError


def add_inspect_arguments(p: argparse.ArgumentParser) -> None:
    """The subcommands of `alarmgw inspect`."""
    sub = p.add_subparsers(dest="inspect_action", required=True, metavar="ACTION")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help, description=help)
        q.add_argument("--json", action="store_true",
                       help="machine-readable output: one JSON document, errors included")
        return q

    q = add("start", "put points under inspection: their presses are test events, not alarms")
    which = q.add_mutually_exclusive_group()
    which.add_argument("--points", metavar="ID,...",
                       help="the inputs to test, by id (default: every panic and tamper input)")
    which.add_argument("--all", action="store_true",
                       help="every panic and tamper input (the default)")
    q.add_argument("--minutes", type=int, default=DEFAULT_MINUTES,
                   help=f"how long the window lasts (default {DEFAULT_MINUTES}, at most"
                   f" {MAX_MINUTES}); it ends by itself then")
    q.add_argument("--by", required=True, metavar="NAME",
                   help="who inspects (kept in the record and told to the platform)")
    add("status", "the running inspection and the points not proven for too long")
    q = add("stop", "end the running inspection now and print its report")
    q.add_argument("--by", default=None, metavar="NAME", help="who ends it")
    add("report", "the report of the last inspection: passed, failed, not tested per point")


def cmd_inspect(args: argparse.Namespace) -> int:
    cfg = load(args)
    action = args.inspect_action
    if action == "start":
        return _start(args, cfg)
    if action == "report":
        return _report(args, cfg)
    try:
        if action == "status":
            res = control(cfg, {"cmd": "inspect-status"})
        else:
            res = control(cfg, {"cmd": "inspect-stop",
                                "by": args.by or "alarmgw inspect stop"}, timeout=20.0)
    except ServiceNotRunningError as exc:
        return not_running(args, exc)
    if action == "status":
        if args.json:
            print_json({"ok": True, "running": True, **res})
        else:
            print("\n".join(inspection_lines(res)))
        return EXIT_OK
    if args.json:
        print_json({"ok": True, "report": res})
    else:
        print("\n".join(report_lines(res)))
    return EXIT_OK


def _start(args: argparse.Namespace, cfg: Config) -> int:
    points: list[str] | None = None
    if args.points is not None:
        points = [p.strip() for p in args.points.split(",") if p.strip()]
        if not points:
            return fail(args, EXIT_USAGE, "error: --points lists no input; give ids separated"
                        " by commas, or --all")
        for pid in points:
            code = unknown_point(args, cfg, pid)
            if code is not None:
                return code
        testable = [i.id for i in cfg.inputs if i.kind in ("panic", "tamper")] + [
            p.id for p in cfg.modbus.points if p.kind in ("panic", "tamper")]
        plain = [p for p in points if p not in testable]
        if plain:
            return fail(args, EXIT_USAGE, f"error: input {plain[0]!r} is a plain input (kind"
                        " input): it raises no event to test (panic and tamper inputs:"
                        f" {known(testable)})")
    if not 1 <= args.minutes <= MAX_MINUTES:
        return fail(args, EXIT_USAGE, f"error: --minutes {args.minutes}: an inspection lasts"
                    f" 1 to {MAX_MINUTES} minutes")
    if not args.by.strip():
        return fail(args, EXIT_USAGE, "error: --by NAME: say who inspects")
    try:
        res = control(cfg, {"cmd": "inspect-start", "points": points, "minutes": args.minutes,
                            "by": args.by.strip()}, timeout=20.0)
    except ServiceNotRunningError as exc:
        return not_running(args, exc)
    if args.json:
        print_json({"ok": True, **res})
        return EXIT_OK
    print(f"inspection {res['id']} started by {res['by']}: {', '.join(res['points'])} under"
          f" test until {res['deadline_at']} ({args.minutes} min). Their presses are test"
          " events, not alarms: press each button and let it go (reset a latching one with"
          " its key); its ack lamp blinks once when the platform has the test.")
    print("progress: alarmgw inspect status; end it early: alarmgw inspect stop")
    return EXIT_OK


def _report(args: argparse.Namespace, cfg: Config) -> int:
    from gateway.service import store_path
    from gateway.store import read_inspections_offline

    running = True
    window: dict[str, Any] | None = None
    try:
        res = control(cfg, {"cmd": "inspect-report"})
        report, window = res["report"], res["running"]
    except ServiceNotRunningError as exc:
        running = False
        try:
            windows = read_inspections_offline(store_path(cfg))
        except GatewayError as store_exc:
            return not_running(args, exc, store_error=str(store_exc), what=f"{store_exc}; ")
        report = next((w["report"] for w in windows if w.get("report") is not None), None)
        print(f"{exc}; reading the store directly", file=sys.stderr)
    if report is None:
        code = EXIT_FAIL if running else EXIT_NOT_RUNNING
        return fail(args, code, "no inspection has ended yet (start one with: alarmgw inspect"
                    " start --by NAME)", running=running, window=window)
    attention = bool(report["failed"] or report["not_tested"])
    code = EXIT_NOT_RUNNING if not running else EXIT_FAIL if attention else EXIT_OK
    if args.json:
        print_json({"ok": True, "running": running, "report": report, "window": window})
        return code
    print("\n".join(report_lines(report)))
    if window is not None:
        print(f"(inspection {window['id']} is running until {window['deadline_at']}:"
              " alarmgw inspect status)")
    return code


def report_lines(report: dict[str, Any]) -> list[str]:
    """The text of an inspection's report."""
    lines = [f"inspection {report['inspection']} by {report['by']} ({report['origin']}):"
             f" {report['started_at']} to {report.get('ended_at') or 'now'}, ended:"
             f" {report.get('reason') or 'running'}; {report['points']} points"]
    lines.append(f"  passed      {len(report['passed'])}")
    lines += [f"    {e['point']:<16} {e['name']}  proven {e.get('proven_at')}"
              + (f" ({e['note']})" if e.get("note") else "") for e in report["passed"]]
    lines.append(f"  FAILED      {len(report['failed'])}" if report["failed"]
                 else "  failed      0")
    lines += [f"    {e['point']:<16} {e['name']}: {e.get('reason')}" for e in report["failed"]]
    lines.append(f"  NOT TESTED  {len(report['not_tested'])}" if report["not_tested"]
                 else "  not tested  0")
    lines += [f"    {e['point']:<16} {e['name']}" for e in report["not_tested"]]
    return lines


__all__ = ["add_inspect_arguments", "cmd_inspect", "report_lines"]

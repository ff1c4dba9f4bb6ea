"""The commands about the service itself: `run`, `demo`, `status`, `inputs`, `queue`,
`drills` and `test-alarm`.

`run` is what systemd starts; every other command asks the running service over its
control socket. `status`, `queue` and `drills` read the store on disk when the
service is down, print what they find, and exit 3 all the same (the exit-code rule in
`gateway.cli.common`). `test-alarm` checks the input against the config before it
asks the service, so that a mistyped id is a usage error (2) whether it runs or not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.cli import diagnose, directories
from gateway.cli.common import (
    EXIT_FAIL,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    asker,
    control,
    load,
    logging_to_stderr,
    not_running,
    print_json,
    unknown_point,
)
from gateway.cli.status import fmt_lane, fmt_waited, input_lines
from gateway.errors import GatewayError, ServiceNotRunningError


def cmd_run(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM. A config error, also a state or runtime directory
    this user cannot create or write, raises ConfigError: exit 2, which systemd does not
    restart on."""
    from gateway.service import Service

    secrets = logging_to_stderr(args.verbose)
    cfg = load(args)
    secrets.add(cfg.broker.password)
    directories.prepare(cfg)
    Service(cfg).run_forever()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole system on the simulator (hw_sim.demo, reached through the backend
    registry)."""
    from gateway.drivers.backends import run_demo

    logging_to_stderr(args.verbose)
    return run_demo(config=Path(args.config) if args.config else None, duration=args.duration)


def cmd_status(args: argparse.Namespace) -> int:
    cfg = load(args)
    return diagnose.status(cfg, asker(cfg), args)


def cmd_inputs(args: argparse.Namespace) -> int:
    cfg = load(args)
    if args.watch:
        return diagnose.watch_inputs(asker(cfg), args)
    try:
        st = control(cfg, {"cmd": "status"})
    except ServiceNotRunningError as exc:
        return not_running(args, exc)
    if args.json:
        print_json(st["inputs"])
    else:
        lines = input_lines(st["inputs"])
        if lines:
            print("\n".join(lines))
    return EXIT_OK


def cmd_queue(args: argparse.Namespace) -> int:
    from gateway.service import store_path
    from gateway.service.status import Now, waited
    from gateway.store import read_queue_offline

    cfg = load(args)
    running = True
    code = EXIT_OK
    try:
        res = control(cfg, {"cmd": "queue", "limit": args.limit})
        stats, waiting = res["stats"], res["waiting"]
    except ServiceNotRunningError as exc:
        running, code = False, EXIT_NOT_RUNNING
        try:
            st, waiting = read_queue_offline(store_path(cfg), args.limit)
        except GatewayError as store_exc:
            return not_running(args, exc, store_error=str(store_exc), what=f"{store_exc}; ")
        stats = {"waiting": st.waiting, "lanes": {n: vars(v) for n, v in st.lanes.items()},
                 "next_seq": st.next_seq}
        print(f"{exc}; reading the store directly", file=sys.stderr)
    # Aged here, by this machine's clocks, whichever way the rows came: the boot clock
    # is the kernel's, the same for this process as for the service.
    now = Now.read()
    for w in waiting:
        w["age_s"], w["age_clock"] = waited(w.get("created_at"), w.get("mono_ns"),
                                            w.get("boot_id"), now)
    if args.json:
        print_json({"running": running, "stats": stats, "waiting": waiting})
        return code
    print(f"{stats['waiting']} waiting: " + "; ".join(
        fmt_lane(n, lane) for n, lane in stats["lanes"].items()))
    for w in waiting:
        age = fmt_waited(w["age_s"], w["age_clock"], w.get("boot_id"))
        print(f"  {w['lane']:<6} {w['state']:<9} seq {w['seq'] if w['seq'] is not None else '-':<6}"
              f" {w['type'] or '-':<14} {w['created_at']}  waited {age}  tries {w['attempts']}"
              f"  {w['topic']}")
    return code


def cmd_drills(args: argparse.Namespace) -> int:
    from gateway.service import store_path
    from gateway.store import read_drills_offline

    cfg = load(args)
    code = EXIT_OK
    try:
        drills = control(cfg, {"cmd": "drills", "limit": args.limit})
    except ServiceNotRunningError as exc:
        code = EXIT_NOT_RUNNING
        try:
            drills = read_drills_offline(store_path(cfg), args.limit)
        except GatewayError as store_exc:
            return not_running(args, exc, store_error=str(store_exc), what=f"{store_exc}; ")
        print(f"{exc}; reading the store directly", file=sys.stderr)
    if args.json:
        print_json(drills)
        return code
    if not drills:
        print("no drills recorded yet (run one with: alarmgw test-alarm --drill POINT)")
    for d in drills:
        _print_drill(d)
    return code


def _print_drill(d: dict[str, Any]) -> None:
    steps: dict[str, Any] = d["timeline"]
    first = steps["pressed"]["at"] if "pressed" in steps else "?"
    state = "complete" if d["complete"] else "INCOMPLETE (no " + ", ".join(
        s for s in ("pressed", "committed", "published", "puback", "platform_ack")
        if s not in d["timeline"]) + ")"
    total = f"{d['total_ms']:.0f} ms" if d["total_ms"] is not None else "-"
    print(f"{first}  drill seq {d['seq']} {d['point']} by {d['requested_by'] or '-'}:"
          f" total {total}, {state}")
    for step, ms in d["durations_ms"].items():
        print(f"    {step:<26} {ms:9.1f} ms")
    if d.get("snapshots"):
        print(f"    {d['snapshots']['count']} snapshots delivered, the last"
              f" {d['snapshots']['last_after_ms']:.0f} ms after the press")


def cmd_test_alarm(args: argparse.Namespace) -> int:
    cfg = load(args)
    code = unknown_point(args, cfg, args.point)
    if code is not None:
        return code
    try:
        res = control(cfg, {"cmd": "test-alarm", "point": args.point, "drill": args.drill,
                            "path": getattr(args, "path", "all")})
    except ServiceNotRunningError as exc:
        return not_running(args, exc)
    if res.get("path") == "dc09":
        return _path_test_result(args, res)
    if args.json:
        print_json({"ok": True, **res})
        return EXIT_OK
    print(f"{res['type']} event for {res['point']} committed: seq {res['seq']} id {res['id']};"
          " it is on its way to the platform (alarmgw queue shows it until the broker has it)")
    return EXIT_OK


def _path_test_result(args: argparse.Namespace, res: dict[str, Any]) -> int:
    """`test-alarm --path dc09`: 0 when the receiving centre ACKed, 1 otherwise."""
    if args.json:
        print_json(res)
        return EXIT_OK if res["ok"] else EXIT_FAIL
    if res["ok"]:
        print(f"DC-09 test (Contact ID 601, zone {res['zone']:03d}) ACKed by {res['endpoint']}"
              f" in {res['rtt_ms']:g} ms")
        return EXIT_OK
    print(f"DC-09 test to {res.get('endpoint', 'the receiving centre')} failed:"
          f" {res['outcome']}: {res['detail']}", file=sys.stderr)
    return EXIT_FAIL


__all__ = ["cmd_demo", "cmd_drills", "cmd_inputs", "cmd_queue", "cmd_run",
           "cmd_status", "cmd_test_alarm"]

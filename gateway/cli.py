"""`alarmgw`: the one program, with a subcommand for every question a technician asks.

Exit codes: 0 fine; 1 failed; 2 bad usage or config; 3 the service is not
running (as `systemctl status` uses 3).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import DEFAULT_PATH, Config, load_config, parse_override
from gateway.control import request
from gateway.errors import ConfigError, ControlError, GatewayError, ServiceNotRunningError
from gateway.logsetup import SecretFilter, setup_logging

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


def _setup_logging(verbose: bool) -> SecretFilter:
    """Journald-friendly stderr logging (see gateway/logsetup.py)."""
    return setup_logging(verbose)


def _config_path(args: argparse.Namespace) -> Path:
    if args.config is not None:
        return Path(args.config)
    env = os.environ.get("ALARMGW_CONFIG")
    return Path(env) if env else DEFAULT_PATH


def _load(args: argparse.Namespace) -> Config:
    overrides = dict(parse_override(s) for s in getattr(args, "set", None) or [])
    return load_config(_config_path(args), overrides)


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=2))


def _control(cfg: Config, req: dict[str, Any], timeout: float = 10.0) -> Any:
    from gateway.service import socket_path

    return request(socket_path(cfg), req, timeout=timeout)


# -- subcommands -------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from gateway.service import Service

    secrets = _setup_logging(args.verbose)
    cfg = _load(args)
    secrets.add(cfg.broker.password)
    Service(cfg).run_forever()
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else _config_path(args)
    cfg = load_config(path)
    if args.json:
        _print_json({"ok": True, "path": str(cfg.path), "site": cfg.gateway.site,
                     "gateway": cfg.gateway.id, "broker": f"{cfg.broker.host}:{cfg.broker.port}",
                     "tls": cfg.broker.tls is not None, "gpio_backend": cfg.gpio.backend,
                     "inputs": [{"id": i.id, "kind": i.kind, "source": i.source,
                                 "active_level": i.active_level} for i in cfg.inputs]})
        return EXIT_OK
    b = cfg.broker
    print(f"{cfg.path}: OK")
    print(f"  gateway   {cfg.gateway.site}/{cfg.gateway.id}")
    print(f"  state     {cfg.gateway.state_dir}   control socket in {cfg.gateway.runtime_dir}")
    tls = "PLAINTEXT (loopback test broker)" if b.tls is None else (
        "TLS" + (" with client certificate" if b.tls.cert else ""))
    print(f"  broker    {b.host}:{b.port}  {tls}  keepalive {b.keepalive_s} s"
          f"  client id {b.client_id}" + (f"  user {b.username}" if b.username else ""))
    print(f"  store     budget {cfg.store.max_bytes // (1024 * 1024)} MiB")
    print(f"  gpio      backend {cfg.gpio.backend}")
    for i in cfg.inputs:
        print(f"  input     {i.id:<16} {i.kind:<7} {i.source:<8} {i.contact} pull-{i.pull}"
              f" active-{i.active_level} debounce {i.debounce_ms} ms  {i.name}"
              + (f" @ {i.location}" if i.location else ""))
    return EXIT_OK


def _fmt_lane(name: str, lane: dict[str, Any]) -> str:
    oldest = f", oldest {lane['oldest_created_at']}" if lane.get("oldest_created_at") else ""
    return f"{name} {lane['ready']} ready / {lane['in_flight']} in flight{oldest}"


def cmd_status(args: argparse.Namespace) -> int:
    from gateway import cli_diag

    cfg = _load(args)
    return cli_diag.status(cfg, lambda req: _control(cfg, req), args.json)


def _print_inputs(points: list[dict[str, Any]]) -> None:
    for p in points:
        state = "ACTIVE" if p["active"] else ("normal" if p["active"] is not None else "unknown")
        wire = p.get("wire") or {}
        extra = (f" level {wire.get('level')} glitches {wire.get('glitches')}"
                 if wire else "")
        print(f"  {p['id']:<16} {p['kind']:<7} {p['source']:<9} {state:<7}{extra}"
              f"  {p['name']}")


def cmd_inputs(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if args.watch:
        from gateway import cli_diag

        return cli_diag.watch_inputs(lambda req: _control(cfg, req), args.json, args.count,
                                     args.duration)
    try:
        st = _control(cfg, {"cmd": "status"})
    except ServiceNotRunningError as exc:
        return _not_running(cfg, args, exc)
    if args.json:
        _print_json(st["inputs"])
    else:
        _print_inputs(st["inputs"])
    return EXIT_OK


def cmd_queue(args: argparse.Namespace) -> int:
    from gateway.service import store_path
    from gateway.store import read_queue_offline

    cfg = _load(args)
    running = True
    try:
        res = _control(cfg, {"cmd": "queue", "limit": args.limit})
        stats, waiting = res["stats"], res["waiting"]
    except ServiceNotRunningError as exc:
        running = False
        st, waiting = read_queue_offline(store_path(cfg), args.limit)
        stats = {"waiting": st.waiting, "lanes": {n: vars(v) for n, v in st.lanes.items()},
                 "next_seq": st.next_seq}
        if not args.json:
            print(f"{exc}; reading the store directly", file=sys.stderr)
    if args.json:
        _print_json({"running": running, "stats": stats, "waiting": waiting})
        return EXIT_OK
    print(f"{stats['waiting']} waiting: " + "; ".join(
        _fmt_lane(n, lane) for n, lane in stats["lanes"].items()))
    for w in waiting:
        print(f"  {w['lane']:<6} {w['state']:<9} seq {w['seq'] if w['seq'] is not None else '-':<6}"
              f" {w['type'] or '-':<14} {w['created_at']}  tries {w['attempts']}  {w['topic']}")
    return EXIT_OK


def cmd_drills(args: argparse.Namespace) -> int:
    from gateway.service import store_path
    from gateway.store import read_drills_offline

    cfg = _load(args)
    try:
        drills = _control(cfg, {"cmd": "drills", "limit": args.limit})
    except ServiceNotRunningError:
        drills = read_drills_offline(store_path(cfg), args.limit)
    if args.json:
        _print_json(drills)
        return EXIT_OK
    if not drills:
        print("no drills recorded yet (run one with: alarmgw test-alarm --drill POINT)")
    for d in drills:
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
    return EXIT_OK


def cmd_test_alarm(args: argparse.Namespace) -> int:
    cfg = _load(args)
    try:
        res = _control(cfg, {"cmd": "test-alarm", "point": args.point, "drill": args.drill})
    except ServiceNotRunningError as exc:
        print(f"{exc}: start it with systemctl start alarmgw", file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(f"{res['type']} event for {res['point']} committed: seq {res['seq']} id {res['id']};"
          " it is on its way to the platform (alarmgw queue shows it until the broker has it)")
    return EXIT_OK


def cmd_sim(args: argparse.Namespace) -> int:
    cfg = _load(args)
    try:
        res = _control(cfg, {"cmd": "sim", "action": args.action, "input": args.input})
    except ServiceNotRunningError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(f"{res['input']}: {'ACTIVE' if res['active'] else 'normal'}")
    return EXIT_OK


def cmd_selftest(args: argparse.Namespace) -> int:
    from gateway import cli_diag

    return cli_diag.selftest(lambda: _load(args),
                             lambda cfg: lambda req: _control(cfg, req), args.json)


def cmd_logs(args: argparse.Namespace) -> int:
    from gateway import cli_diag

    return cli_diag.logs(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    _setup_logging(args.verbose)
    return run_demo(config=Path(args.config) if args.config else None, duration=args.duration)


def _not_running(cfg: Config, args: argparse.Namespace, exc: ServiceNotRunningError) -> int:
    if getattr(args, "json", False):
        _print_json({"running": False, "error": str(exc)})
    else:
        print(f"{exc}; start it with: systemctl start alarmgw", file=sys.stderr)
    return EXIT_NOT_RUNNING


# -- parser --------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="alarmgw", description="School one-key alarm gateway.")
    ap.add_argument("--version", action="version", version=f"alarmgw {__version__}")
    ap.add_argument("-c", "--config", help=f"config file (default $ALARMGW_CONFIG or"
                    f" {DEFAULT_PATH})")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str,
            json_flag: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=fn)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = add("run", cmd_run, "run the service (what systemd starts)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set broker.port=8884")
    p = add("check-config", cmd_check_config, "validate a config file and print a summary",
            json_flag=True)
    p.add_argument("file", nargs="?", help="config file (default: --config)")
    add("status", cmd_status, "one screen: uplink, queue, clock, disk, faults, inputs,"
        " versions (exit 0 healthy, 1 needs attention, 3 not running)", json_flag=True)
    p = add("inputs", cmd_inputs, "every input and its state", json_flag=True)
    p.add_argument("--watch", action="store_true",
                   help="follow changes and debounce glitches live as buttons are pressed")
    p.add_argument("--count", type=int, default=None,
                   help="with --watch: stop after this many changes")
    p.add_argument("--duration", type=float, default=None,
                   help="with --watch: stop after this many seconds")
    add("selftest", cmd_selftest, "check config, store, broker (TLS + login), uplink, inputs,"
        " faults and clock: PASS or FAIL each (exit 1 on any FAIL)", json_flag=True)
    p = add("logs", cmd_logs, "the service's recent log (journalctl), warnings and worse"
            " unless --all", json_flag=True)
    from gateway.cli_diag import add_logs_arguments

    add_logs_arguments(p)
    p = add("queue", cmd_queue, "what waits for the uplink", json_flag=True)
    p.add_argument("--limit", type=int, default=50, help="rows to list (default 50)")
    p = add("test-alarm", cmd_test_alarm, "send a test (or drill) event end to end")
    p.add_argument("point", help="input id from the config")
    p.add_argument("--drill", action="store_true", help="a drill, not a test")
    p = add("drills", cmd_drills, "each drill's timeline and durations", json_flag=True)
    p.add_argument("--limit", type=int, default=20, help="drills to list (default 20)")
    p = add("sim", cmd_sim, "drive the simulated hardware of a service on the simulator")
    p.add_argument("action", choices=("press", "release", "bounce"))
    p.add_argument("input", help="input id")
    p = add("demo", cmd_demo, "the whole system on the simulator: broker, gateway, platform")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: until Ctrl-C)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            _print_json({"ok": False, "path": exc.path, "key": exc.key, "problem": exc.problem})
        return EXIT_USAGE
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

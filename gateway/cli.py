"""`alarmgw`: the one program, with a subcommand for every question a technician asks.

Exit codes: 0 fine; 1 failed; 2 bad usage or config; 3 the service is not
running (as `systemctl status` uses 3).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import DEFAULT_PATH, CameraSettings, Config, load_config, parse_override
from gateway.control import request
from gateway.errors import ConfigError, ControlError, GatewayError, ServiceNotRunningError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"  # journald adds the time
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    logging.getLogger("paho").setLevel(logging.WARNING)


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

    _setup_logging(args.verbose)
    cfg = _load(args)
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
                                 "active_level": i.active_level, "cameras": list(i.cameras)}
                                for i in cfg.inputs],
                     "cameras": [_camera_summary(c) for c in cfg.cameras]})
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
              + (f" @ {i.location}" if i.location else "")
              + (f"  -> cameras {', '.join(i.cameras)}" if i.cameras else ""))
    for c in cfg.cameras:
        pre = (f"{c.pre_frames} before it, {c.pre_interval_s:g} s apart" if c.pre_frames
               else "none before it")
        print(f"  camera    {c.id:<16} {c.driver:<8} {c.source}  timeout {c.timeout_s:g} s,"
              f" max {c.max_bytes // 1024} KiB; {c.shots} after an alarm {c.interval_s:g} s"
              f" apart, {pre}; probe every {c.probe_interval_s:g} s"
              + (f"; user {c.username}" if c.username else "") + f"  {c.name}")
    return EXIT_OK


def _camera_summary(c: CameraSettings) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "driver": c.driver, "source": c.source,
            "timeout_s": c.timeout_s, "max_bytes": c.max_bytes, "shots": c.shots,
            "interval_s": c.interval_s, "pre_frames": c.pre_frames,
            "pre_interval_s": c.pre_interval_s, "probe_interval_s": c.probe_interval_s,
            "fault_after": c.fault_after, "username": c.username}


def _fmt_lane(name: str, lane: dict[str, Any]) -> str:
    oldest = f", oldest {lane['oldest_created_at']}" if lane.get("oldest_created_at") else ""
    return f"{name} {lane['ready']} ready / {lane['in_flight']} in flight{oldest}"


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args)
    try:
        st = _control(cfg, {"cmd": "status"})
    except ServiceNotRunningError as exc:
        return _not_running(cfg, args, exc)
    if args.json:
        _print_json(st)
        return EXIT_OK
    up = st["uplink"] or {}
    print(f"alarmgw {st['version']} {st['site']}/{st['gateway']}: running (pid {st['pid']},"
          f" up {st['uptime_s']:.0f} s){'  [SIMULATOR]' if st['simulator'] else ''}")
    if up.get("connected"):
        peer = up.get("tls_peer") or {}
        tls = f" {peer.get('version')} peer {peer.get('subject')}" if peer else (
            " TLS" if up.get("tls") else " PLAINTEXT")
        print(f"uplink:  CONNECTED to {up['broker']}{tls} since {up['since']};"
              f" last PUBACK {up.get('last_puback_at') or 'none yet'}")
    else:
        print(f"uplink:  DOWN ({up.get('broker')}) since {up.get('since') or 'start'}:"
              f" {up.get('last_error') or 'connecting'}")
    q = st["queue"]
    print("queue:   " + "; ".join(_fmt_lane(n, lane) for n, lane in q["lanes"].items())
          + f"; next seq {q['next_seq']}")
    clock = st["clock"]
    print(f"clock:   {'synced' if clock['synced'] else 'NOT SYNCED (times are uncertain)'}")
    free = st["disk"]["free_bytes"]
    print(f"disk:    {free / 1e6:.0f} MB free on {st['disk']['path']}" if free is not None
          else "disk:    unknown")
    print("inputs:")
    _print_inputs(st["inputs"])
    if st.get("cameras"):
        print("cameras:")
        _print_cameras(st["cameras"])
    return EXIT_OK


def _print_cameras(cameras: list[dict[str, Any]]) -> None:
    for c in cameras:
        if c["state"] in ("faulty", "failing"):
            how = f"{c['failures_in_a_row']} failed in a row: {c['last_error']}"
        elif c["last_ok_at"]:
            how = f"last picture {c['last_ok_at']} in {c['last_duration_ms']} ms"
        else:
            how = "not tried yet"
        ring = f"; ring {c['ring']}/{c['pre_frames']}" if c["pre_frames"] else ""
        print(f"  {c['id']:<16} {c['state'].upper() if c['state'] != 'ok' else 'ok':<7}"
              f" {c['where']}  {how}{ring}; sent {c['stored']} pictures,"
              f" {c['failed_records']} failed  {c['name']}")


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
    if args.action == "camera":
        return _sim_camera(cfg, args)
    if args.mode is not None or args.latency is not None:
        print("error: a mode and --latency only go with `sim camera CAMERA MODE`",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        res = _control(cfg, {"cmd": "sim", "action": args.action, "input": args.input})
    except ServiceNotRunningError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(f"{res['input']}: {'ACTIVE' if res['active'] else 'normal'}")
    return EXIT_OK


def _sim_camera(cfg: Config, args: argparse.Namespace) -> int:
    try:
        res = _control(cfg, {"cmd": "sim-camera", "camera": args.input, "mode": args.mode,
                             "latency_s": args.latency})
    except ServiceNotRunningError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(f"{res['camera']}: mode {res['mode']}, latency {res['latency_s']:g} s ({res['url']})")
    return EXIT_OK


def cmd_snapshot(args: argparse.Namespace) -> int:
    from gateway.snapshots import capture_report

    cfg = _load(args)
    try:
        cam = cfg.camera(args.camera)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    res: dict[str, Any]
    if cam.driver in ("sim", "picamera"):
        # A simulated camera exists only inside the service, and a Pi camera is held open
        # by it: ask the service to take the picture with its own driver.
        try:
            res = _control(cfg, {"cmd": "snapshot", "camera": cam.id},
                           timeout=cam.timeout_s + 10.0)
        except ServiceNotRunningError as exc:
            if cam.driver == "sim":
                print(f"camera {cam.id} is simulated (driver \"sim\"): it exists only while the"
                      f" service runs on the simulator; {exc}", file=sys.stderr)
                return EXIT_NOT_RUNNING
            res = capture_report(cam)
    else:
        res = capture_report(cam)
    jpeg = base64.b64decode(res.pop("jpeg_b64")) if res.get("ok") else None
    if jpeg is not None and args.output:
        try:
            Path(args.output).write_bytes(jpeg)
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAIL
        res["file"] = str(args.output)
    if args.json:
        _print_json(res)
        return EXIT_OK if res["ok"] else EXIT_FAIL
    who = f"{cam.id} ({cam.name}) {res['where']}"
    if not res["ok"]:
        print(f"{who}: FAILED after {res['duration_ms']:.0f} ms: {res['reason']}:"
              f" {res['error']}", file=sys.stderr)
        return EXIT_FAIL
    print(f"{who}: OK, {res['bytes']} bytes, {res['width']}x{res['height']} JPEG, in"
          f" {res['duration_ms']:.0f} ms" + (f"; saved to {res['file']}" if "file" in res else ""))
    return EXIT_OK


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
    add("status", cmd_status, "one screen: uplink, queue, clock, disk, inputs", json_flag=True)
    add("inputs", cmd_inputs, "every input and its state", json_flag=True)
    p = add("queue", cmd_queue, "what waits for the uplink", json_flag=True)
    p.add_argument("--limit", type=int, default=50, help="rows to list (default 50)")
    p = add("test-alarm", cmd_test_alarm, "send a test (or drill) event end to end")
    p.add_argument("point", help="input id from the config")
    p.add_argument("--drill", action="store_true", help="a drill, not a test")
    p = add("sim", cmd_sim, "drive the simulated hardware of a service on the simulator")
    p.add_argument("action", choices=("press", "release", "bounce", "camera"))
    p.add_argument("input", help="input id (camera id for `sim camera`)")
    p.add_argument("mode", nargs="?", help="for `sim camera`: ok, 401, 500, timeout, truncated,"
                   " cut, html, endless or down")
    p.add_argument("--latency", type=float, metavar="SECONDS",
                   help="for `sim camera`: delay before each picture")
    p = add("snapshot", cmd_snapshot, "take one picture with a camera: size, resolution, time,"
            " or exactly why not", json_flag=True)
    p.add_argument("camera", help="camera id from the config")
    p.add_argument("-o", "--output", metavar="FILE", help="save the JPEG here")
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

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
from gateway.logs import SecretFilter, setup_logging

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


def _setup_logging(verbose: bool) -> SecretFilter:
    """Journald-friendly stderr logging (see gateway/logs.py)."""
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
                                 "active_level": i.active_level, "cameras": list(i.cameras)}
                                for i in cfg.inputs]
                     + [{"id": p.id, "kind": p.kind, "source": p.source, "contact": p.contact}
                        for p in cfg.modbus.points],
                     "cameras": [_camera_summary(c) for c in cfg.cameras],
                     "commands": _commands_summary(cfg),
                     "escalation": _escalation_summary(cfg),
                     **_modbus_summary(cfg)})
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
    _print_modbus_config(cfg)
    for c in cfg.cameras:
        pre = (f"{c.pre_frames} before it, {c.pre_interval_s:g} s apart" if c.pre_frames
               else "none before it")
        print(f"  camera    {c.id:<16} {c.driver:<8} {c.source}  timeout {c.timeout_s:g} s,"
              f" max {c.max_bytes // 1024} KiB; {c.shots} after an alarm {c.interval_s:g} s"
              f" apart, {pre}; probe every {c.probe_interval_s:g} s"
              + (f"; user {c.username}" if c.username else "") + f"  {c.name}")
    cmds = _commands_summary(cfg)
    if cmds is None:
        print("  commands  OFF: no [commands]; the platform cannot acknowledge (no ack lamp)")
    else:
        lamps = ", ".join(f"{p} -> {o}" for p, o in cmds["ack_lamps"].items())
        print(f"  commands  {'signed (HMAC-SHA256)' if cmds['signed'] else 'UNSIGNED: insecure'},"
              f" window {cmds['max_age_s']:g} s behind / {cmds['max_future_s']:g} s ahead;"
              f" ack lamp {cmds['ack_lamp'] or 'none'}" + (f" ({lamps})" if lamps else ""))
    esc = _escalation_summary(cfg)
    if esc is None:
        print("  escalate  OFF: no [escalation]; an unacknowledged alarm is not escalated")
    else:
        print(f"  escalate  after {esc['ack_timeout_s']:g} s without ack, or"
              f" {esc['uplink_down_s']:g} s with the uplink down: sounder"
              f" {esc['sounder'] or 'none'}, SMS to {len(esc['sms_to'])} number(s) via"
              f" {esc['modem_port'] or 'no modem'}")
    return EXIT_OK


def _commands_summary(cfg: Config) -> dict[str, Any] | None:
    c = cfg.commands
    if c is None:
        return None
    return {"signed": c.require_signature, "max_age_s": c.max_age_s,
            "max_future_s": c.max_future_s, "ack_lamp": c.ack_lamp,
            "ack_lamps": dict(c.ack_lamps), "ack_lamp_s": c.ack_lamp_s}


def _escalation_summary(cfg: Config) -> dict[str, Any] | None:
    e = cfg.escalation
    if e is None:
        return None
    # Duty numbers are personal data: the last four digits are enough to check them.
    return {"ack_timeout_s": e.ack_timeout_s, "uplink_down_s": e.uplink_down_s,
            "sounder": e.sounder, "sounder_s": e.sounder_s,
            "sms_to": ["*" * max(0, len(n) - 4) + n[-4:] for n in e.sms_to],
            "modem_port": e.modem_port}


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
    from gateway.cli import diagnose as cli_diag

    cfg = _load(args)
    return cli_diag.status(cfg, lambda req: _control(cfg, req), args.json)


def _print_inputs(points: list[dict[str, Any]]) -> None:
    for p in points:
        state = "ACTIVE" if p["active"] else ("normal" if p["active"] is not None else "unknown")
        wire = p.get("wire") or {}
        if "device" in wire:  # a Modbus input
            bit = "-" if wire.get("bit") is None else wire["bit"]
            extra = f" bit {bit} {wire['contact']} module {wire['device']} {wire['device_state']}"
        elif wire:
            extra = f" level {wire.get('level')} glitches {wire.get('glitches')}"
        else:
            extra = ""
        print(f"  {p['id']:<16} {p['kind']:<7} {p['source']:<9} {state:<7}{extra}"
              f"  {p['name']}")


def cmd_inputs(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if args.watch:
        from gateway.cli import diagnose as cli_diag

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
        if d.get("snapshots"):
            print(f"    {d['snapshots']['count']} snapshots delivered, the last"
                  f" {d['snapshots']['last_after_ms']:.0f} ms after the press")
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
    if args.action == "modbus-fault":
        return _sim_modbus_fault(cfg, args)
    if args.action == "camera":
        return _sim_camera(cfg, args)
    if args.mode is not None or args.latency is not None:
        print(f"error: sim {args.action}: unexpected argument: a mode and --latency only go with"
              " `sim camera CAMERA MODE` (a mode also with `sim modbus-fault MODULE MODE`)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        res = _control(cfg, {"cmd": "sim", "action": args.action, "input": args.input})
    except ServiceNotRunningError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(f"{res['input']}: {'ACTIVE' if res['active'] else 'normal'}")
    return EXIT_OK


def cmd_selftest(args: argparse.Namespace) -> int:
    from gateway.cli import diagnose as cli_diag

    return cli_diag.selftest(lambda: _load(args),
                             lambda cfg: lambda req: _control(cfg, req), args.json)


def cmd_logs(args: argparse.Namespace) -> int:
    from gateway.cli import diagnose as cli_diag

    return cli_diag.logs(args)


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
    from gateway.cli.demo import run_demo

    _setup_logging(args.verbose)
    return run_demo(config=Path(args.config) if args.config else None, duration=args.duration)


def _sim_modbus_fault(cfg: Config, args: argparse.Namespace) -> int:
    if args.mode not in SIM_FAULT_MODES:
        print(f"alarmgw sim modbus-fault {args.input}: give a mode: {', '.join(SIM_FAULT_MODES)}",
              file=sys.stderr)
        return EXIT_USAGE
    req = {"cmd": "sim", "action": "modbus-fault", "device": args.input, "mode": args.mode,
           "count": args.count, "code": args.code, "period_s": args.period,
           "delay_s": args.delay}
    try:
        res = _control(cfg, req)
    except ServiceNotRunningError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_NOT_RUNNING
    scope = "" if res.get("count") is None else f" for the next {res['count']} requests"
    print(f"simulated module {res['device']}: {res['mode']}{scope}")
    return EXIT_OK


# -- Modbus and outputs -----------------------------------------------------------------

SIM_FAULT_MODES = ("ok", "silent", "bad-crc", "exception", "wrong-unit", "flap", "slow")


def _modbus_summary(cfg: Config) -> dict[str, Any]:
    from gateway.config.modbus import cycle_wire_s, plan_reads

    buses = []
    for b in cfg.modbus.buses:
        blocks = plan_reads(cfg.modbus.points, [d for d in cfg.modbus.devices if d.bus == b.id])
        buses.append({"id": b.id, "type": b.type, "where": b.where, "timeout_ms": b.timeout_ms,
                      "poll_interval_ms": b.poll_interval_ms, "requests_per_cycle": len(blocks),
                      "cycle_wire_ms": round(cycle_wire_s(b, blocks) * 1000, 1)})
    return {
        "modbus": {"simulator": cfg.modbus.simulator, "buses": buses,
                   "devices": [{"id": d.id, "bus": d.bus, "unit": d.unit, "name": d.name}
                               for d in cfg.modbus.devices]},
        "outputs": [{"id": o.id, "source": o.source, "name": o.name} for o in cfg.outputs],
        "links": [{"inputs": list(k.inputs), "outputs": list(k.outputs), "for_s": k.for_s,
                   "until": k.until, "drill": k.drill} for k in cfg.links],
    }


def _print_modbus_config(cfg: Config) -> None:
    from gateway.config.modbus import cycle_wire_s, plan_reads

    m = cfg.modbus
    if m.buses:
        print(f"  modbus    {'SIMULATED modules (hw_sim); ' if m.simulator else ''}faulty after"
              f" {m.fail_after} failed requests, probed every {m.probe_interval_s:g} s")
    for b in m.buses:
        devices = [d for d in m.devices if d.bus == b.id]
        blocks = plan_reads(m.points, devices)
        wire_ms = cycle_wire_s(b, blocks) * 1000
        cycle = (f", {wire_ms:.1f} ms on the wire per cycle; a press is seen within about"
                 f" {max(b.poll_interval_ms, wire_ms) + wire_ms:.0f} ms") if b.type == "rtu" \
            else ""
        where = ("a free loopback port (simulated)" if m.simulator and b.type == "tcp"
                 else b.where)
        print(f"  bus       {b.id:<16} {b.type:<3} {where}  timeout {b.timeout_ms} ms, poll"
              f" every {b.poll_interval_ms} ms; {len(blocks)} request(s) per cycle{cycle}")
        for d in devices:
            reads = ", ".join(k.label for k in blocks if k.device == d.id) or "nothing to read"
            print(f"  module    {d.id:<16} unit {d.unit:<3} on {d.bus}  reads {reads}  {d.name}"
                  + (f" @ {d.location}" if d.location else ""))
    for p in m.points:
        print(f"  input     {p.id:<16} {p.kind:<7} {p.source}  {p.contact} (active at"
              f" {int(p.active_value)}) debounce {p.debounce_ms} ms  {p.name}"
              + (f" @ {p.location}" if p.location else ""))
    for o in cfg.outputs:
        print(f"  output    {o.id:<16} {o.source}"
              + (f" active-{o.active_level}" if o.gpio is not None else "")
              + f"  {o.name}" + (f" @ {o.location}" if o.location else ""))
    for k in cfg.links:
        hold = f"for {k.for_s:g} s" if k.for_s is not None else f"until {k.until}"
        print(f"  link      {', '.join(k.inputs)} -> {', '.join(k.outputs)} {hold}"
              + (" (drills too)" if k.drill else ""))


def _print_outputs(outputs: list[dict[str, Any]]) -> None:
    from gateway.cli.status import output_lines

    lines = output_lines(outputs)
    if lines:
        print("\n".join(lines))


def cmd_modbus_scan(args: argparse.Namespace) -> int:
    from gateway.config.modbus import rtu_char_s
    from gateway.drivers.modbus import (
        FrameRing,
        Link,
        ScanResult,
        make_link,
        parse_units,
        scan,
    )

    ring = FrameRing()
    link: Link
    timeout_ms = args.timeout_ms
    default_units = "1-32"
    if args.bus:
        cfg = _load(args)
        try:
            bus = cfg.modbus.bus(args.bus)
        except KeyError:
            known = ", ".join(b.id for b in cfg.modbus.buses) or "none"
            print(f"no bus {args.bus!r} in {cfg.path} (buses: {known})", file=sys.stderr)
            return EXIT_USAGE
        link = make_link(bus, ring)
        timeout_ms = timeout_ms or bus.timeout_ms
        if bus.type == "tcp":
            default_units = "1,255"
    elif args.port:
        from gateway.config.modbus import BusSettings

        bus = BusSettings(id=args.port, type="rtu", port=args.port, baud=args.baud,
                          parity=args.parity, stopbits=args.stopbits, host="", tcp_port=0,
                          timeout_ms=timeout_ms or 100, poll_interval_ms=0)
        link = make_link(bus, ring)
        timeout_ms = timeout_ms or max(100, round(40 * rtu_char_s(args.baud, args.parity,
                                                                  args.stopbits) * 1000))
    else:
        from gateway.config.modbus import BusSettings

        bus = BusSettings(id=args.host, type="tcp", port="", baud=0, parity="N", stopbits=1,
                          host=args.host, tcp_port=args.tcp_port, timeout_ms=timeout_ms or 300,
                          poll_interval_ms=0)
        link = make_link(bus, ring)
        timeout_ms = timeout_ms or 300
        default_units = "1,255"
    try:
        units = parse_units(args.units or default_units)
    except ValueError as exc:
        print(f"--units: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def show(r: ScanResult) -> None:
        if args.json:
            return
        mark = "FOUND" if r.present else "  -  "
        rtt = f"{r.rtt_ms:6.1f} ms" if r.rtt_ms is not None else " " * 9
        if r.present or r.result != "timeout":
            print(f"  unit {r.unit:<3} {mark}  {rtt}  {r.detail}", flush=True)

    if not args.json:
        print(f"scanning {link.where} for units {args.units or default_units}, {timeout_ms} ms"
              " per unit ...", flush=True)
    try:
        results = scan(link, units, timeout_ms / 1000, show)
    finally:
        link.close()
    found = [r.unit for r in results if r.present]
    if args.json:
        _print_json({"where": link.where, "timeout_ms": timeout_ms, "found": found,
                     "results": [vars(r) for r in results]})
    elif found:
        print(f"{len(found)} unit(s) answer on {link.where}: {', '.join(map(str, found))}")
    else:
        garbled = [r for r in results if r.result in ("crc", "malformed", "wrong_unit")]
        hint = (" (some replies were garbled: check the baud rate, parity and A/B wiring)"
                if garbled else " (check the baud rate, the A/B wiring, the modules' power"
                " and that the units are in the range asked)")
        print(f"no unit answers on {link.where}{hint}")
    return EXIT_OK if found else EXIT_FAIL


def cmd_outputs(args: argparse.Namespace) -> int:
    cfg = _load(args)
    try:
        outputs = _control(cfg, {"cmd": "outputs"})
    except ServiceNotRunningError as exc:
        return _not_running(cfg, args, exc)
    if args.json:
        _print_json(outputs)
    elif not outputs:
        print("no [[outputs]] in the config")
    else:
        _print_outputs(outputs)
    return EXIT_OK


def cmd_output(args: argparse.Namespace) -> int:
    cfg = _load(args)
    try:
        o = _control(cfg, {"cmd": "output", "output": args.output, "action": args.action,
                           "for_s": args.for_s, "by": f"alarmgw output (uid {os.getuid()})"})
    except ServiceNotRunningError as exc:
        return _not_running(cfg, args, exc)
    _print_outputs([o])
    return EXIT_OK if o["state"] == "ok" else EXIT_FAIL


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
    from gateway.cli.diagnose import add_logs_arguments

    add_logs_arguments(p)
    p = add("queue", cmd_queue, "what waits for the uplink", json_flag=True)
    p.add_argument("--limit", type=int, default=50, help="rows to list (default 50)")
    p = add("test-alarm", cmd_test_alarm, "send a test (or drill) event end to end")
    p.add_argument("point", help="input id from the config")
    p.add_argument("--drill", action="store_true", help="a drill, not a test")
    p = add("drills", cmd_drills, "each drill's timeline and durations", json_flag=True)
    p.add_argument("--limit", type=int, default=20, help="drills to list (default 20)")
    p = add("sim", cmd_sim, "drive the simulated hardware of a service on the simulator")
    p.add_argument("action", choices=("press", "release", "bounce", "modbus-fault", "camera"),
                   help="press, release or bounce an input; modbus-fault MODULE MODE breaks a"
                   " simulated Modbus module; camera CAMERA MODE a simulated camera")
    p.add_argument("input", help="input id (modbus-fault: the module's id; camera: its id)")
    p.add_argument("mode", nargs="?", help="modbus-fault: " + ", ".join(SIM_FAULT_MODES)
                   + "; camera: ok, 401, 500, timeout, truncated, cut, html, endless, down")
    p.add_argument("--latency", type=float, metavar="SECONDS",
                   help="sim camera: delay before each picture")
    p.add_argument("--count", type=int, help="modbus-fault: only the next N requests")
    p.add_argument("--code", type=int, help="modbus-fault exception: the exception code"
                   " (default 4, server device failure)")
    p.add_argument("--period", type=float, help="modbus-fault flap: seconds per silent +"
                   " answering cycle (default 2)")
    p.add_argument("--delay", type=float, help="modbus-fault slow: extra seconds per reply"
                   " (default 0.5)")
    p = add("modbus-scan", cmd_modbus_scan, "find the Modbus units that answer on a bus",
            json_flag=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port of an RS-485 bus, e.g. /dev/ttyUSB0")
    where.add_argument("--host", help="address of a Modbus TCP module or gateway")
    where.add_argument("--bus", help="a bus of the config, by id (stop the service first if"
                       " it is an RS-485 bus)")
    p.add_argument("--baud", type=int, default=9600, help="RS-485 baud rate (default 9600)")
    p.add_argument("--parity", choices=("N", "E", "O"), default="N",
                   help="RS-485 parity (default N)")
    p.add_argument("--stopbits", type=int, choices=(1, 2), default=1,
                   help="RS-485 stop bits (default 1)")
    p.add_argument("--tcp-port", type=int, default=502, help="Modbus TCP port (default 502)")
    p.add_argument("--units", default=None,
                   help="unit ids to ask, e.g. 1-32 or 1,3,5-7 (default 1-32; TCP: 1 and 255)")
    p.add_argument("--timeout-ms", type=int, default=None,
                   help="reply timeout per unit in ms (default 100; the bus's with --bus)")
    add("outputs", cmd_outputs, "every output, its state and what holds it on", json_flag=True)
    p = add("output", cmd_output, "switch an output by hand: on (for a time or until off), off")
    p.add_argument("output", help="output id from the config")
    p.add_argument("action", choices=("on", "off"), help="off also ends every link's hold")
    p.add_argument("--for", dest="for_s", type=float, default=None, metavar="SECONDS",
                   help="on: switch off again after this many seconds")
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

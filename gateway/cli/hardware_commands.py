"""The commands about hardware: `sim`, `snapshot`, `modbus-scan`, `outputs` and `output`.

`sim` drives the simulated hardware inside a service running on the simulator;
`snapshot` takes a picture (itself, or through the service for a simulated camera or
the Pi camera the service holds open); `modbus-scan` opens a bus itself to find the
units that answer (through the running service's endpoint for a simulated bus);
`outputs` and `output` show and switch the outputs the service drives.

Every input, module, bus, camera and output named on the command line is looked up in
the config first: one it does not have is a usage error (exit 2), whether the service
runs or not (the exit-code rule in `gateway.cli.common`).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path
from typing import Any

from gateway.cli.common import (
    EXIT_FAIL,
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
from gateway.cli.status import output_lines
from gateway.config import Config
from gateway.errors import ModbusError, ServiceNotRunningError

SIM_FAULT_MODES = ("ok", "silent", "bad-crc", "exception", "wrong-unit", "flap", "slow")
"""What `sim modbus-fault MODULE MODE` can do to a simulated module (hw_sim.modbus)."""
SIM_CAMERA_MODES = ("ok", "401", "500", "timeout", "truncated", "cut", "html", "endless",
                    "down")
"""What `sim camera CAMERA MODE` can make a simulated camera do (hw_sim.camera)."""


# -- sim ---------------------------------------------------------------------------------------

def cmd_sim(args: argparse.Namespace) -> int:
    cfg = load(args)
    if args.action == "modbus-fault":
        return _sim_modbus_fault(cfg, args)
    if args.action == "camera":
        return _sim_camera(cfg, args)
    if args.mode is not None or args.latency is not None:
        return fail(args, EXIT_USAGE, f"error: sim {args.action}: unexpected argument: a mode"
                    " and --latency only go with `sim camera CAMERA MODE` (a mode also with"
                    " `sim modbus-fault MODULE MODE`)")
    code = unknown_point(args, cfg, args.input)
    if code is not None:
        return code
    modbus_ids = {p.id for p in cfg.modbus.points}
    if args.input in modbus_ids:
        if args.action not in ("press", "release"):
            return fail(args, EXIT_USAGE, f"error: sim action {args.action!r} is not for Modbus"
                        f" inputs (press, release): {args.input} is on a Modbus module")
        if not cfg.modbus.simulator:
            return fail(args, EXIT_USAGE, f"error: {args.input} is on a real Modbus module"
                        f" (modbus.simulator is not true in {cfg.path}): press the button")
    elif cfg.gpio.backend != "mock":
        return fail(args, EXIT_USAGE, f"error: {args.input} is on a real GPIO pin (gpio.backend"
                    f" is {cfg.gpio.backend!r}, not \"mock\", in {cfg.path}): press the button")
    try:
        res = control(cfg, {"cmd": "sim", "action": args.action, "input": args.input})
    except ServiceNotRunningError as exc:
        return not_running(args, exc)
    if args.json:
        print_json({"ok": True, **res})
    else:
        under = (f" (under inspection {res['inspection']}: a test event, not an alarm)"
                 if res.get("inspection") else "")
        print(f"{res['input']}: {'ACTIVE' if res['active'] else 'normal'}{under}")
    return EXIT_OK


def _sim_modbus_fault(cfg: Config, args: argparse.Namespace) -> int:
    if args.mode not in SIM_FAULT_MODES:
        return fail(args, EXIT_USAGE, f"alarmgw sim modbus-fault {args.input}: give a mode:"
                    f" {', '.join(SIM_FAULT_MODES)}")
    modules = [d.id for d in cfg.modbus.devices]
    if args.input not in modules:
        return fail(args, EXIT_USAGE, f"error: no Modbus module {args.input!r} in {cfg.path}"
                    f" (modules: {known(modules)})")
    if not cfg.modbus.simulator:
        return fail(args, EXIT_USAGE, f"error: module {args.input} is real (modbus.simulator is"
                    f" not true in {cfg.path}): only a simulated module can be broken on"
                    " purpose")
    req = {"cmd": "sim", "action": "modbus-fault", "device": args.input, "mode": args.mode,
           "count": args.count, "code": args.code, "period_s": args.period,
           "delay_s": args.delay}
    try:
        res = control(cfg, req)
    except ServiceNotRunningError as exc:
        return not_running(args, exc)
    if args.json:
        print_json({"ok": True, **res})
        return EXIT_OK
    scope = "" if res.get("count") is None else f" for the next {res['count']} requests"
    print(f"simulated module {res['device']}: {res['mode']}{scope}")
    return EXIT_OK


def _sim_camera(cfg: Config, args: argparse.Namespace) -> int:
    sims = [c.id for c in cfg.cameras if c.driver == "sim"]
    if args.input not in sims:
        return fail(args, EXIT_USAGE, f"error: no simulated camera {args.input!r} in {cfg.path}"
                    f" (simulated cameras: {known(sims)})")
    if args.mode not in SIM_CAMERA_MODES:
        what = "give a mode" if args.mode is None else f"unknown camera mode {args.mode!r}"
        return fail(args, EXIT_USAGE, f"alarmgw sim camera {args.input}: {what} (modes:"
                    f" {', '.join(SIM_CAMERA_MODES)})")
    try:
        res = control(cfg, {"cmd": "sim-camera", "camera": args.input, "mode": args.mode,
                            "latency_s": args.latency})
    except ServiceNotRunningError as exc:
        return not_running(args, exc)
    if args.json:
        print_json({"ok": True, **res})
        return EXIT_OK
    print(f"{res['camera']}: mode {res['mode']}, latency {res['latency_s']:g} s ({res['url']})")
    return EXIT_OK


# -- snapshot --------------------------------------------------------------------------------

def cmd_snapshot(args: argparse.Namespace) -> int:
    from gateway.snapshots import capture_report

    cfg = load(args)
    try:
        cam = cfg.camera(args.camera)
    except KeyError as exc:
        return fail(args, EXIT_USAGE, f"error: {exc.args[0]}")
    res: dict[str, Any]
    if cam.driver in ("sim", "picamera"):
        # A simulated camera exists only inside the service, and a Pi camera is held open
        # by it: ask the service to take the picture with its own driver.
        try:
            res = control(cfg, {"cmd": "snapshot", "camera": cam.id},
                          timeout=cam.timeout_s + 10.0)
        except ServiceNotRunningError as exc:
            if cam.driver == "sim":
                return not_running(args, exc, what=f"camera {cam.id} is simulated (driver"
                                   " \"sim\"): it exists only while the service runs on the"
                                   " simulator; ", camera=cam.id)
            res = capture_report(cam)
    else:
        res = capture_report(cam)
    jpeg = base64.b64decode(res.pop("jpeg_b64")) if res.get("ok") else None
    if jpeg is not None and args.output:
        try:
            Path(args.output).write_bytes(jpeg)
        except OSError as exc:
            return fail(args, EXIT_FAIL, f"error: cannot write {args.output}: {exc.strerror}",
                        **{k: v for k, v in res.items() if k != "ok"})
        res["file"] = str(args.output)
    if args.json:
        print_json(res)
        return EXIT_OK if res["ok"] else EXIT_FAIL
    who = f"{cam.id} ({cam.name}) {res['where']}"
    if not res["ok"]:
        print(f"{who}: FAILED after {res['duration_ms']:.0f} ms: {res['reason']}:"
              f" {res['error']}", file=sys.stderr)
        return EXIT_FAIL
    print(f"{who}: OK, {res['bytes']} bytes, {res['width']}x{res['height']} JPEG, in"
          f" {res['duration_ms']:.0f} ms" + (f"; saved to {res['file']}" if "file" in res else ""))
    return EXIT_OK


# -- modbus-scan -----------------------------------------------------------------------------

def _simulated_endpoint(cfg: Config, args: argparse.Namespace, bus_id: str, bus_type: str
                        ) -> tuple[str, int] | int | None:
    """Where the running service serves the simulated bus `bus_id`: (host, port) for a
    TCP bus, None for an RTU bus (its configured port is the simulator's pty link); an
    exit code when it cannot be known."""
    try:
        st = control(cfg, {"cmd": "status"})
    except ServiceNotRunningError as exc:
        return not_running(args, exc, what=f"bus {bus_id} is simulated (modbus.simulator ="
                           " true): its modules exist only inside the running service; start"
                           " it (then `alarmgw status` shows the bus and its modules); ",
                           bus=bus_id)
    if bus_type != "tcp":
        return None
    served = next((b for b in st.get("modbus") or [] if b.get("id") == bus_id), None)
    host, _, port = str((served or {}).get("where", "")).rpartition(":")
    if served is None or not host or not port.isdigit():
        return fail(args, EXIT_FAIL, f"error: the running service does not say where it serves"
                    f" the simulated bus {bus_id} (its status has {served!r}); see `alarmgw"
                    " status`", bus=bus_id)
    return host, int(port)


def cmd_modbus_scan(args: argparse.Namespace) -> int:
    from gateway.config.modbus import BusSettings, rtu_char_s
    from gateway.drivers.modbus import FrameRing, Link, ScanResult, make_link, parse_units, scan
    from gateway.drivers.modbus.scan import SCAN_TRIES

    ring = FrameRing()
    link: Link
    timeout_ms = args.timeout_ms
    default_units = "1-32"
    if args.bus:
        cfg = load(args)
        try:
            bus = cfg.modbus.bus(args.bus)
        except KeyError:
            buses = [b.id for b in cfg.modbus.buses]
            return fail(args, EXIT_USAGE, f"no bus {args.bus!r} in {cfg.path} (buses:"
                        f" {', '.join(buses) or 'none'})")
        endpoint: tuple[str, int] | None = None
        if cfg.modbus.simulator:
            served = _simulated_endpoint(cfg, args, bus.id, bus.type)
            if isinstance(served, int):
                return served
            endpoint = served
        link = make_link(bus, ring, endpoint)
        timeout_ms = timeout_ms or bus.timeout_ms
        if bus.type == "tcp":
            default_units = "1,255"
    elif args.port:
        bus = BusSettings(id=args.port, type="rtu", port=args.port, baud=args.baud,
                          parity=args.parity, stopbits=args.stopbits, host="", tcp_port=0,
                          timeout_ms=timeout_ms or 100, poll_interval_ms=0)
        link = make_link(bus, ring)
        timeout_ms = timeout_ms or max(100, round(40 * rtu_char_s(args.baud, args.parity,
                                                                  args.stopbits) * 1000))
    else:
        bus = BusSettings(id=args.host, type="tcp", port="", baud=0, parity="N", stopbits=1,
                          host=args.host, tcp_port=args.tcp_port, timeout_ms=timeout_ms or 300,
                          poll_interval_ms=0)
        link = make_link(bus, ring)
        timeout_ms = timeout_ms or 300
        default_units = "1,255"
    try:
        units = parse_units(args.units or default_units)
    except ValueError as exc:
        return fail(args, EXIT_USAGE, f"--units: {exc}")

    def show(r: ScanResult) -> None:
        if args.json:
            return
        mark = "FOUND" if r.present else "  -  "
        rtt = f"{r.rtt_ms:6.1f} ms" if r.rtt_ms is not None else " " * 9
        retried = f" (answered on try {r.tries} of {SCAN_TRIES})" if r.tries > 1 else ""
        if r.present or r.result != "timeout":
            print(f"  unit {r.unit:<3} {mark}  {rtt}  {r.detail}{retried}", flush=True)

    if not args.json:
        print(f"scanning {link.where} for units {args.units or default_units}, {timeout_ms} ms"
              f" per unit, a silent unit asked {SCAN_TRIES} times ...", flush=True)
    try:
        results = scan(link, units, timeout_ms / 1000, show)
    except ModbusError as exc:
        return fail(args, EXIT_FAIL, f"error: {exc}", where=link.where, kind=exc.kind)
    finally:
        link.close()
    found = [r.unit for r in results if r.present]
    if args.json:
        print_json({"ok": bool(found), "where": link.where, "timeout_ms": timeout_ms,
                    "found": found, "results": [vars(r) for r in results]})
    elif found:
        print(f"{len(found)} unit(s) answer on {link.where}: {', '.join(map(str, found))}")
        again = [str(r.unit) for r in results if r.present and r.tries > 1]
        if again:
            print(f"{len(again)} unit(s) answered only when asked again ({', '.join(again)}):"
                  " frames are being lost; check the termination, bias and cabling (a module"
                  " that loses frames often will be reported faulty in service)")
    else:
        garbled = [r for r in results if r.result in ("crc", "malformed", "wrong_unit")]
        hint = (" (some replies were garbled: check the baud rate, parity and A/B wiring)"
                if garbled else " (check the baud rate, the A/B wiring, the modules' power"
                " and that the units are in the range asked)")
        print(f"no unit answers on {link.where}{hint}")
    return EXIT_OK if found else EXIT_FAIL


# -- outputs -------------------------------------------------------------------------------

def _print_outputs(outputs: list[dict[str, Any]]) -> None:
    lines = output_lines(outputs)
    if lines:
        print("\n".join(lines))


def cmd_outputs(args: argparse.Namespace) -> int:
    cfg = load(args)
    try:
        outputs = control(cfg, {"cmd": "outputs"})
    except ServiceNotRunningError as exc:
        return not_running(args, exc)
    if args.json:
        print_json(outputs)
    elif not outputs:
        print("no [[outputs]] in the config")
    else:
        _print_outputs(outputs)
    return EXIT_OK


def cmd_output(args: argparse.Namespace) -> int:
    cfg = load(args)
    ids = [o.id for o in cfg.outputs]
    if args.output not in ids:
        return fail(args, EXIT_USAGE, f"error: no output {args.output!r} in {cfg.path} (outputs:"
                    f" {known(ids)})")
    try:
        o = control(cfg, {"cmd": "output", "output": args.output, "action": args.action,
                          "for_s": args.for_s, "by": f"alarmgw output (uid {os.getuid()})"})
    except ServiceNotRunningError as exc:
        return not_running(args, exc)
    if args.json:
        print_json({"ok": o["state"] == "ok", **o})
    else:
        _print_outputs([o])
    return EXIT_OK if o["state"] == "ok" else EXIT_FAIL


__all__ = ["SIM_CAMERA_MODES", "SIM_FAULT_MODES", "cmd_modbus_scan",
           "cmd_output", "cmd_outputs", "cmd_sim", "cmd_snapshot"]

"""`alarmgw check-config`: whether the config loads, what it says, and whether its
directories can be used.

The summary (text, or one JSON document with --json) shows every section as the
service will use it: the broker and TLS, the store, each GPIO input, the Modbus buses,
modules and inputs with what each poll cycle costs on the wire, outputs and links,
cameras, platform commands and escalation. A config error, including a state or
runtime directory that the service's user cannot create or write, exits 2 (see
`gateway.cli.directories`); where check-config runs as another user than the
service, it says that it cannot tell.

A config the service cannot run with on this machine exits 1, the summary printed and
the problem said: GPIO inputs or outputs with `gpio.backend = "lgpio"` where the lgpio
module is missing (`alarmgw run` would stop at start). With no GPIO input or output no
GPIO backend is needed, and none is opened. Hints change nothing in the exit code: a Pi
camera (`driver = "picamera"`) needs AF_NETLINK, which the unit leaves out
(`NETLINK_DROP_IN`, docs/operations.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.cli import directories
from gateway.cli.common import EXIT_FAIL, EXIT_OK, config_path, print_json
from gateway.cli.status import UNIT, service_user
from gateway.config import CameraSettings, Config, load_config
from gateway.config.paths import Role, category_met

#: The drop-in line (`systemctl edit alarmgw`, under [Service]) that lets libcamera find
#: the Pi camera: its device enumeration opens a netlink socket (a udev monitor).
NETLINK_DROP_IN = "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"


def gpio_points(cfg: Config) -> tuple[int, int]:
    """How many GPIO inputs and GPIO outputs the config has."""
    return len(cfg.inputs), sum(1 for o in cfg.outputs if o.gpio is not None)


def gpio_problem(cfg: Config) -> str | None:
    """Why the service could not open its GPIO backend here, or None. Nothing is opened
    (the running service may hold the pins): only whether lgpio can be imported."""
    inputs, outputs = gpio_points(cfg)
    if not (inputs or outputs) or cfg.gpio.backend != "lgpio":
        return None
    if importlib.util.find_spec("lgpio") is not None:
        return None
    needs = " and ".join(f"{n} GPIO {what}(s)" for n, what in ((inputs, "input"),
                                                               (outputs, "output")) if n)
    return (f'gpio.backend = "lgpio" but the lgpio module is missing, and {needs} need it:'
            " `alarmgw run` would stop at start; on Raspberry Pi OS install python3-lgpio"
            " (or pip install 'alarmgw[pi]'); on the simulator use backend = \"mock\"")


def _unit_allows_netlink() -> bool | None:
    """Whether the installed unit (drop-ins included) lets AF_NETLINK through; None where
    systemd does not run or has no such unit."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        res = subprocess.run([systemctl, "show", UNIT, "--no-pager",
                              "--property=LoadState,RestrictAddressFamilies"],
                             capture_output=True, text=True, timeout=5.0, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    props = dict(line.partition("=")[::2] for line in res.stdout.splitlines() if "=" in line)
    if res.returncode != 0 or props.get("LoadState") in (None, "", "not-found"):
        return None
    families = props.get("RestrictAddressFamilies", "")
    if not families:
        return True  # no restriction
    if families.startswith("~"):
        return "AF_NETLINK" not in families.split()
    return "AF_NETLINK" in families.split()


def hints(cfg: Config) -> list[str]:
    """What the technician should know about running this config under the unit."""
    out: list[str] = []
    pi_cams = [c.id for c in cfg.cameras if c.driver == "picamera"]
    if pi_cams and _unit_allows_netlink() is not True:
        out.append(f"camera {', '.join(pi_cams)} is a Pi camera: libcamera needs netlink"
                   " sockets (AF_NETLINK), which the unit alarmgw.service does not allow."
                   " Allow them with `sudo systemctl edit alarmgw`, adding:\n[Service]\n"
                   f"{NETLINK_DROP_IN}\nthen `sudo systemctl restart alarmgw`"
                   " (docs/operations.md, \"A Pi camera\")")
    dc09 = cfg.paths.dc09
    if dc09 is not None and dc09.key is None:
        out.append(f"paths.dc09 has no key_file: the messages to {dc09.endpoint} travel"
                   " unencrypted, and anyone on the way can read them or forge an account's"
                   f" events. Ask the receiving centre for account {dc09.account}'s AES key"
                   " and name its file with key_file (docs/protocol/dc09.md, \"The key\")")
    return out


def cmd_check_config(args: argparse.Namespace) -> int:
    """Load and validate the config (FILE, else --config), check its directories, print
    the summary."""
    path = Path(args.file) if args.file else config_path(args)
    cfg = load_config(path)
    dirs = directories.check(cfg, service_user())
    problem = directories.first_problem(cfg, dirs)
    if problem is not None:
        raise problem  # a config error: main says it (and with --json as a document), exit 2
    problems = [p for p in (gpio_problem(cfg),) if p is not None]
    notes = hints(cfg)
    code = EXIT_FAIL if problems else EXIT_OK
    if args.json:
        print_json({"ok": not problems,
                    **({"error": "; ".join(problems)} if problems else {}),
                    "problems": problems, "hints": notes,
                    "path": str(cfg.path), "site": cfg.gateway.site,
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
                     "paths": _paths_summary(cfg),
                     "directories": [d.as_dict() for d in dirs],
                     **_modbus_summary(cfg)})
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return code
    b = cfg.broker
    print(f"{cfg.path}: " + ("loads, but the service cannot run with it here (below)"
                             if problems else "OK"))
    print(f"  gateway   {cfg.gateway.site}/{cfg.gateway.id}")
    print(f"  state     {cfg.gateway.state_dir}   control socket in {cfg.gateway.runtime_dir}")
    for d in dirs:
        print(f"  directory {d.key:<19} {d.detail}")
    tls = "PLAINTEXT (loopback test broker)" if b.tls is None else (
        "TLS" + (" with client certificate" if b.tls.cert else ""))
    print(f"  broker    {b.host}:{b.port}  {tls}  keepalive {b.keepalive_s} s"
          f"  client id {b.client_id}" + (f"  user {b.username}" if b.username else ""))
    print(f"  store     budget {cfg.store.max_bytes // (1024 * 1024)} MiB")
    print(f"  gpio      backend {cfg.gpio.backend}"
          + ("" if any(gpio_points(cfg)) else " (not used: no GPIO input or output)"))
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
    paths = _paths_summary(cfg)
    if paths is None:
        print("  paths     MQTT only (no [paths.dc09]: no second path to a receiving centre)")
    else:
        d = paths["dc09"]
        ident = f"account {d['account']}" + (f" R{d['receiver']}" if d["receiver"] else "") \
            + f" L{d['line']}"
        print(f"  paths     MQTT {paths['mqtt']['role']} (heartbeat every"
              f" {paths['mqtt']['supervision_s']:g} s); DC-09 {d['role']} {d['endpoint']}"
              f" {ident} {d['encryption']}, carries {', '.join(d['carries'])}")
        print(f"            supervision ({d['supervision']}) every {d['supervision_s']:g} s,"
              f" {d['supervision_failover_s']:g} s while MQTT is in fault; ACK within"
              f" {d['ack_timeout_s']:g} s; a path is a fault after {paths['path_fail_s']:g} s")
        met = paths["category_met"] or "none of SP1-SP6/DP1-DP4"
        print(f"            EN 50136-1 category these intervals meet: {met}"
              + (f" (asked for: {paths['ats']})" if paths["ats"] else ""))
    for note in notes:
        first, *rest = note.splitlines()
        print(f"  hint      {first}")
        for line in rest:
            print(f"              {line}")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return code


def _commands_summary(cfg: Config) -> dict[str, Any] | None:
    c = cfg.commands
    if c is None:
        return None
    return {"signed": c.require_signature, "max_age_s": c.max_age_s,
            "max_future_s": c.max_future_s, "ack_lamp": c.ack_lamp,
            "ack_lamps": dict(c.ack_lamps), "ack_lamp_s": c.ack_lamp_s}


def _paths_summary(cfg: Config) -> dict[str, Any] | None:
    """The transmission paths and the EN 50136-1 category their intervals meet; the key
    itself is never shown, only its length."""
    s = cfg.paths
    d = s.dc09
    if d is None:
        return None
    intervals: dict[Role, float] = {s.mqtt_role: cfg.health.interval_s,
                                    d.role: d.supervision_s}
    return {
        "ats": s.ats, "path_fail_s": s.path_fail_s,
        "category_met": category_met(
            intervals, dual=True,
            failover_s=d.supervision_failover_s if d.role == "secondary" else None),
        "mqtt": {"role": s.mqtt_role, "supervision_s": cfg.health.interval_s},
        "dc09": {"role": d.role, "endpoint": d.endpoint, "account": d.account,
                 "receiver": d.receiver, "line": d.line,
                 "encryption": f"AES-{len(d.key) * 8}" if d.key else "unencrypted",
                 "carries": sorted(d.carries), "supervision": d.supervision,
                 "supervision_s": d.supervision_s,
                 "supervision_failover_s": d.supervision_failover_s,
                 "ack_timeout_s": d.ack_timeout_s, "partition": d.partition,
                 "zones": dict(d.zones), "silent": sorted(d.silent),
                 "duress": sorted(d.duress), "codes": dict(d.codes)},
    }


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

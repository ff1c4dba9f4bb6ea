"""`alarmgw status`: one screen that answers "is it working?", running or not.

With the service running, the status document comes from it over the
control socket (`Service.status()`).
With the service down, `offline_status` builds the same shape from what can
be read without it: the store on disk (read-only), the clock, the disk, the
config, the versions and, where systemd runs, what systemd says of the unit.
`render_status` turns either into the text a technician reads over SSH.
What systemd says of the unit (`systemd_unit_state`, `service_user`) is read here
for `logs` and `check-config` too.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from gateway import __version__
from gateway.cli.common import EXIT_FAIL, EXIT_NOT_RUNNING, EXIT_OK
from gateway.clock import Clock
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.events import PROTOCOL_VERSION

UNIT = "alarmgw.service"


def systemd_unit_state(unit: str = UNIT) -> dict[str, str] | None:
    """What systemd says of the unit, or None where systemd does not run or answer."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        res = subprocess.run(
            [systemctl, "show", unit, "--no-pager",
             "--property=LoadState,ActiveState,SubState,Result,ExecMainStatus,NRestarts,"
             "StateChangeTimestamp,MainPID,User"],
            capture_output=True, text=True, timeout=5.0, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    props = dict(line.partition("=")[::2] for line in res.stdout.splitlines() if "=" in line)
    if props.get("LoadState") in (None, "", "not-found"):
        return None
    return props


def service_user(unit: str = UNIT) -> str | None:
    """The user systemd runs the unit as ("" for root), or None where no unit says so."""
    props = systemd_unit_state(unit)
    return None if props is None else props.get("User", "")


def offline_status(config: Config, error: str) -> dict[str, Any]:
    """The status document of a service that is not running, from the disk alone."""
    # gateway.service pulls the whole service (pymodbus, paho, gpiozero) with it: imported
    # only when a status is built, so that the parser and `alarmgw --version` stay light.
    from gateway.service import store_path
    from gateway.service.status import clock_info, disk_info, oldest_waiting, versions
    from gateway.store import read_queue_offline

    doc: dict[str, Any] = {
        "running": False,
        "error": error,
        "version": __version__,
        "protocol": PROTOCOL_VERSION,
        "site": config.gateway.site,
        "gateway": config.gateway.id,
        "config": str(config.path),
        "queue": None,
        "store_error": None,
    }
    try:
        stats, _ = read_queue_offline(store_path(config), 0)
        lanes = {n: vars(v) for n, v in stats.lanes.items()}
        doc["queue"] = {"waiting": stats.waiting, "lanes": lanes, "next_seq": stats.next_seq,
                        "acked_kept": stats.acked_kept, "bytes_total": stats.bytes_total,
                        "oldest_waiting": oldest_waiting(lanes), "read_from": "store"}
    except GatewayError as exc:
        doc["store_error"] = str(exc)
    doc["clock"] = clock_info(Clock(config.clock.sync_source), config)
    doc["disk"] = disk_info(config.gateway.state_dir, store_path(config))
    doc["inputs"] = [{"id": i.id, "name": i.name, "location": i.location, "kind": i.kind,
                      "source": i.source, "active": None} for i in config.inputs] + [
        {"id": m.id, "name": m.name, "location": m.location, "kind": m.kind,
         "source": m.source, "active": None} for m in config.modbus.points]  # GPIO, Modbus
    doc["outputs"] = []
    doc["faults"] = None
    doc["inspection"] = _offline_untested(config)
    doc["versions"] = versions()
    doc["systemd_unit"] = systemd_unit_state()
    return doc


def _offline_untested(config: Config) -> dict[str, Any]:
    """The points not proven for more than max_untested_days, from the store's record and
    the clocks now: as the running service would compute them (gateway.inspection)."""
    from gateway.events import Point
    from gateway.inspection.record import untested
    from gateway.service import store_path
    from gateway.store import read_proven_offline

    max_days = config.inspection.max_untested_days
    out: dict[str, Any] = {"window": None, "untested": None, "max_untested_days": max_days,
                           "error": None}
    points = [Point(i.id, i.name, i.location, i.kind, i.source) for i in config.inputs] + [
        Point(p.id, p.name, p.location, p.kind, p.source) for p in config.modbus.points]
    try:
        records = read_proven_offline(store_path(config))
    except GatewayError as exc:
        out["error"] = str(exc)
        return out
    clock = Clock(config.clock.sync_source)
    wall, mono = clock.now()
    out["untested"] = untested(records, [p for p in points if p.kind in ("panic", "tamper")],
                               wall_ns=wall, mono_ns=mono, boot_id=clock.boot_id,
                               synced=clock.is_synced(), max_days=max_days)
    return out


# -- text --------------------------------------------------------------------------------

def fmt_lane(name: str, lane: dict[str, Any]) -> str:
    oldest = f", oldest {lane['oldest_created_at']}" if lane.get("oldest_created_at") else ""
    return f"{name} {lane['ready']} ready / {lane['in_flight']} in flight{oldest}"


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def fmt_waited(seconds: float | None, clock: str | None, boot_id: str | None) -> str:
    """How long a row has waited, as `gateway.service.status.waited` tells it: by the boot
    clock as a plain age; by the wall clock marked so, since NTP may have stepped it
    between then and now."""
    if clock != "wall":
        return fmt_age(seconds)
    return f"~{fmt_age(seconds)} by the wall clock" + (", from an earlier boot" if boot_id
                                                        else "")


def _fmt_mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.0f} MB" if n >= 10e6 else f"{n / 1e6:.1f} MB"


def input_lines(points: list[dict[str, Any]]) -> list[str]:
    """One line per input: its state and what the wire says (a GPIO pin's level and
    glitches, a Modbus input's bit, contact and module)."""
    lines = []
    for p in points:
        state = "ACTIVE" if p["active"] else ("normal" if p["active"] is not None else "unknown")
        wire = p.get("wire") or {}
        if "device" in wire:  # a Modbus input
            bit = "-" if wire.get("bit") is None else wire["bit"]
            extra = f" bit {bit} {wire['contact']} module {wire['device']} {wire['device_state']}"
        elif wire:
            extra = f" level {wire.get('level')} glitches {wire.get('glitches')}" + (
                f" missed edges {wire['missed_edges']}" if wire.get("missed_edges") else "")
        else:
            extra = ""
        lines.append(f"  {p['id']:<16} {p['kind']:<7} {p['source']:<9} {state:<7}{extra}"
                     f"  {p['name']}")
    return lines


def _versions_line(v: dict[str, Any]) -> str:
    from gateway.service.status import DISTRIBUTIONS

    parts = [f"alarmgw {v.get('alarmgw')} (protocol {v.get('protocol')})",
             f"Python {v.get('python')}"]
    for dist in DISTRIBUTIONS:
        if dist in v:
            parts.append(f"{dist} {v[dist] or 'MISSING'}")
    parts += [f"SQLite {v.get('sqlite')}", str(v.get("openssl"))]
    if v.get("os"):
        parts.append(str(v["os"]))
    if v.get("board"):
        parts.append(str(v["board"]))
    return "versions: " + ", ".join(parts)


def _queue_lines(q: dict[str, Any] | None, store_error: str | None,
                 offline: bool) -> list[str]:
    if q is None:
        return [f"queue:   cannot read the store: {store_error}"]
    head = "queue:   " + ("(read from the store directly) " if offline else "")
    lines = [head + "; ".join(fmt_lane(n, lane) for n, lane in q["lanes"].items())
             + f"; next seq {q['next_seq']}"]
    oldest = q.get("oldest_waiting")
    if oldest is None:
        lines.append("oldest:  nothing waits for the platform")
    else:
        what = oldest.get("event_id") or "a message"
        age = fmt_waited(oldest.get("age_s"), oldest.get("age_clock"), oldest.get("boot_id"))
        lines.append(f"oldest:  {what} in the {oldest['lane']} lane, waiting since"
                     f" {oldest['created_at']} ({age})")
    return lines


def _clock_line(clock: dict[str, Any]) -> str:
    how = f" ({clock.get('method')})" if clock.get("method") else ""
    if clock["synced"]:
        return f"clock:   synced{how}"
    since = clock.get("unsynced_for_s")
    extra = f" for {fmt_age(since)}" if since is not None else ""
    return (f"clock:   NOT SYNCED{extra}{how}: event times are uncertain; check timedatectl"
            " and that NTP (UDP 123) is reachable")


def _disk_line(disk: dict[str, Any]) -> str:
    free = disk.get("free_bytes")
    if free is None:
        return f"disk:    unknown (cannot read {disk.get('path')})"
    store = disk.get("store_bytes")
    tail = f" (store {_fmt_mb(store)})" if store is not None else ""
    return f"disk:    {free / 1e6:.0f} MB free on {disk['path']}{tail}"


def modbus_lines(buses: list[dict[str, Any]], frames: int = 6) -> list[str]:
    lines: list[str] = []
    if not buses:
        return []
    lines.append("modbus:")
    for b in buses:
        c = b["counters"]
        link = {"up": "UP", "down": "DOWN", "closed": "not open yet"}.get(b["link"], b["link"])
        rtt = (f"rtt mean {c['rtt_mean_ms']} ms max {c['rtt_max_ms']} ms"
               if c["rtt_mean_ms"] is not None else "no replies yet")
        lines.append(
            f"  {b['id']:<10} {b['type']} {b['where']}  {link}  cycle {c['last_cycle_ms']} ms"
            f" (max {c['max_cycle_ms']}, interval {b['poll_interval_ms']})  requests"
            f" {c['requests']}  timeouts {c['timeouts']}  crc {c['crc_errors']}  exceptions"
            f" {c['exceptions']}  wrong unit {c['wrong_unit']}  malformed {c['malformed']}"
            f"  {rtt}")
        if b.get("link_error"):
            lines.append(f"             {b['link_error']}")
        for d in b["devices"]:
            err = f"  last error: {d['last_error']}" if d["state"] != "ok" and d["last_error"] \
                else ""
            lines.append(
                f"    {d['id']:<14} unit {d['unit']:<3} {d['state'].upper():<8} requests"
                f" {d['requests']} failures {d['failures']}  {d['name']}{err}")
        if b["frames"]:
            lines.append("    last frames:")
            for f in b["frames"][-frames:]:
                unit = "-" if f["unit"] is None else f["unit"]
                lines.append(
                    f"      {-f['ago_ms']:>9.1f} ms  {f['dir']}  unit {unit:<3} {f['hex']:<32}"
                    f"  {f['note']}")
    return lines


def output_lines(outputs: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    if not outputs:
        return []
    lines.append("outputs:")
    for o in outputs:
        state = ("ON" if o["on"] else "off") + ("" if o["state"] == "ok" else
                                                 f" ({o['state'].upper()})")
        held = "; ".join(f"{h['by']} ({h['until']})" for h in o["held_by"])
        err = f"  last error: {o['last_error']}" if o["state"] == "faulty" else ""
        lines.append(f"  {o['id']:<16} {o['source']:<22} {state:<12} {o['name']}"
              + (f"  held by {held}" if held else "") + err)
    return lines


def camera_lines(cameras: list[dict[str, Any]]) -> list[str]:
    if not cameras:
        return []
    lines = ["cameras:"]
    for c in cameras:
        if c["state"] in ("faulty", "failing"):
            how = f"{c['failures_in_a_row']} failed in a row: {c['last_error']}"
        elif c["last_ok_at"]:
            how = f"last picture {c['last_ok_at']} in {c['last_duration_ms']} ms"
        else:
            how = "not tried yet"
        ring = f"; ring {c['ring']}/{c['pre_frames']}" if c["pre_frames"] else ""
        lines.append(f"  {c['id']:<16} {c['state'].upper() if c['state'] != 'ok' else 'ok':<7}"
                     f" {c['where']}  {how}{ring}; sent {c['stored']} pictures,"
                     f" {c['failed_records']} failed  {c['name']}")
    return lines


def _police_lines(police: dict[str, Any]) -> list[str]:
    cmds = police.get("commands")
    if cmds is None:
        lines = ["police:  platform commands OFF (no [commands] in the config): no ack lamp"]
    else:
        counters = ", ".join(f"{k} {v}" for k, v in sorted(cmds["counters"].items())) or "none"
        lines = [f"police:  commands {'signed' if cmds['signed'] else 'UNSIGNED (insecure)'};"
                 f" received: {counters}"]
    esc = police.get("escalation")
    if esc is not None:
        waiting = esc["waiting_for_ack"]
        lines.append(f"         {len(waiting)} alarm(s) waiting for the platform's ack,"
                     f" {esc['escalated_total']} escalated since start"
                     + ("; SMS MODEM FAULTY" if esc["modem_faulty"] else ""))
        lines += [f"           {w['point']:<16} waiting {w['waiting_s']:.0f} s"
                  + (" ESCALATED" if w["escalated"] else "") for w in waiting]
    return lines


def untested_lines(untested: list[dict[str, Any]], max_days: float) -> list[str]:
    """The points not proven for more than max_untested_days."""
    if not untested:
        return [f"untested: every panic and tamper input proven within {max_days:g} days"]
    lines = [f"untested: {len(untested)} input(s) not proven for more than {max_days:g} days"
             " (alarmgw inspect start --by NAME):"]
    for u in untested:
        when = (f"last proven {u['proven_at']} by {u.get('by') or '?'}" if u.get("proven_at")
                else f"never proven (known since {u.get('unproven_since')})")
        lines.append(f"  {u['point']:<16} {u['days']:.0f} days: {when}  {u['name']}")
    return lines


def inspection_lines(st: dict[str, Any]) -> list[str]:
    """The text of `alarmgw inspect status` (and the inspection lines of `alarmgw status`)."""
    w = st.get("window")
    if w is None:
        lines = ["inspection: none running"]
    else:
        left = w.get("remaining_s")
        lines = [f"inspection: {w['id']} by {w['by']} ({w['origin']}) until {w['deadline_at']}"
                 + (f" ({left / 60:.1f} min left)" if left is not None else "")
                 + ("; test presses sound the sounder" if w.get("sounder") else "")]
        for pid in w["points"]:
            r = w["results"].get(pid, {})
            if pid in w["so_far"]["passed"]:
                state = "passed"
            elif pid in w["so_far"]["failed"] and (r.get("fault_open") or r.get("fault")):
                state = f"FAULT: {(r.get('fault') or {}).get('reason', 'device in fault')}"
            elif r.get("active"):
                state = "pressed, waiting for its return to normal"
            elif r.get("presses"):
                state = "pressed, waiting for the platform's broker"
            else:
                state = "not pressed yet"
            presses = f" ({r['presses']} presses)" if int(r.get("presses") or 0) > 1 else ""
            lines.append(f"  {pid:<16} {state}{presses}")
    lines += untested_lines(st.get("untested") or [], float(st.get("max_untested_days") or 0))
    return lines


def path_lines(paths: dict[str, Any]) -> list[str]:
    """The transmission paths: each one's role, the DC-09 path's receiver, last ACK, round
    trip, queue and next supervision message."""
    d = paths["dc09"]
    faults = paths.get("faults") or {}
    ats = f"category {paths['ats']}" if paths.get("ats") else "no category named"
    lines = [f"paths:   MQTT {paths['mqtt']['role']}"
             f"{' IN FAULT' if faults.get('mqtt') else ''}, DC-09 {d['role']}"
             f"{' IN FAULT' if faults.get('dc09') else ''}; {ats}, a path is a fault after"
             f" {paths['path_fail_s']:g} s without delivering"]
    q = d.get("queue") or {}
    queue = (f"{q['waiting']} waiting" if "waiting" in q else f"queue unreadable: {q.get('error')}")
    if q.get("age_s") is not None:
        queue += f", the oldest for {fmt_age(q['age_s'])}"
    rtt = f", round trip {d['rtt_ms']:g} ms" if d.get("rtt_ms") is not None else ""
    state = ("works" if d.get("failing_for_s") is None
             else f"FAILING for {fmt_age(d['failing_for_s'])}: {d.get('last_error')}")
    lines.append(f"  dc09    {d['endpoint']}{' AES' if d.get('encrypted') else ' unencrypted'}:"
                 f" {state}; last ACK {d.get('last_ack_at') or 'none yet'}{rtt}; {queue};"
                 f" supervision every {fmt_age(d['supervision_interval_s'])}"
                 f"{' (failover)' if d.get('failover') else ''}, next in"
                 f" {fmt_age(d['supervision_due_in_s'])}")
    counts = ", ".join(f"{k} {d[k]}" for k in ("sent", "acked", "nak", "duh", "timeout", "error")
                       if d.get(k))
    bad = d.get("bad_replies") or {}
    if counts or bad:
        lines.append(f"          {counts or 'nothing sent yet'}"
                     + (f"; bad replies: {', '.join(f'{k} {v}' for k, v in bad.items())}"
                        if bad else ""))
    for r in d.get("refused") or []:
        lines.append(f"          REFUSED (DUH) {r['contact_id']} of event {r['event_id']}"
                     f" at {r['at']}")
    return lines


def render_status(st: dict[str, Any]) -> list[str]:
    """The text of `alarmgw status` for a running service's document."""
    lines = [f"alarmgw {st['version']} {st['site']}/{st['gateway']}: running (pid {st['pid']},"
             f" up {fmt_age(st['uptime_s'])}){'  [SIMULATOR]' if st['simulator'] else ''}"]
    up = st["uplink"] or {}
    if up.get("connected"):
        peer = up.get("tls_peer") or {}
        tls = f" {peer.get('version')} peer {peer.get('subject')}" if peer else (
            " TLS" if up.get("tls") else " PLAINTEXT")
        lines.append(f"uplink:  CONNECTED to {up['broker']}{tls} since {up['since']};"
                     f" last PUBACK {up.get('last_puback_at') or 'none yet'}")
    else:
        lines.append(f"uplink:  DOWN ({up.get('broker')}) since {up.get('since') or 'start'}:"
                     f" {up.get('last_error') or 'connecting'}")
    lines += _queue_lines(st["queue"], None, offline=False)
    if st.get("paths") is not None:
        lines += path_lines(st["paths"])
    lines.append(_clock_line(st["clock"]))
    lines.append(_disk_line(st["disk"]))
    faults = st.get("faults") or []
    if faults:
        lines.append(f"faults:  {len(faults)} open")
        lines += [f"  {f['device']:<16} {f.get('source', ''):<14} since {f.get('since')}:"
                  f" {f.get('reason')}" for f in faults]
    else:
        lines.append("faults:  none")
    lines += _police_lines(st.get("police") or {})
    if st.get("inspection") is not None:
        lines += inspection_lines(st["inspection"])
    sd = st.get("systemd")
    if sd is None or not sd.get("notify_socket"):
        lines.append("systemd: not started by systemd (no NOTIFY_SOCKET)")
    else:
        wd = f"watchdog every {sd['watchdog_s'] / 2:.0f} s ({sd['pings']} pings" \
             f"{', ' + str(sd['withheld']) + ' WITHHELD' if sd['withheld'] else ''})" \
            if sd.get("watchdog_s") else "no watchdog"
        lines.append(f"systemd: READY, {wd}; status \"{sd.get('status')}\"")
    if st.get("versions"):
        lines.append(_versions_line(st["versions"]))
    lines.append("inputs:")
    lines += input_lines(st["inputs"])
    lines += modbus_lines(st.get("modbus") or [])
    lines += camera_lines(st.get("cameras") or [])
    outputs = st.get("outputs") or []
    lines += output_lines(outputs) if outputs else ["outputs: none configured"]
    return lines


def render_offline(st: dict[str, Any]) -> list[str]:
    """The text of `alarmgw status` when the service is down."""
    lines = [f"alarmgw {st['version']} {st['site']}/{st['gateway']}: NOT RUNNING"
             f" ({st['error']})"]
    unit = st.get("systemd_unit")
    if unit:
        lines.append(f"systemd: {unit.get('ActiveState')} ({unit.get('SubState')}, result"
                     f" {unit.get('Result')}, last exit status {unit.get('ExecMainStatus')},"
                     f" {unit.get('NRestarts', '?')} restarts) since"
                     f" {unit.get('StateChangeTimestamp') or '?'}")
    lines += _queue_lines(st["queue"], st.get("store_error"), offline=True)
    lines.append(_clock_line(st["clock"]))
    lines.append(_disk_line(st["disk"]))
    lines.append(_versions_line(st["versions"]))
    ids = ", ".join(p["id"] for p in st["inputs"])
    lines.append(f"inputs:  not read while the service is down ({len(st['inputs'])} configured:"
                 f" {ids})")
    insp = st.get("inspection") or {}
    if insp.get("untested") is not None:
        lines += untested_lines(insp["untested"], float(insp.get("max_untested_days") or 0))
    elif insp.get("error"):
        lines.append(f"untested: cannot read the maintenance record: {insp['error']}")
    lines.append("start it with: systemctl start alarmgw; why it stopped: alarmgw logs")
    return lines


def status_exit_code(st: dict[str, Any]) -> int:
    """0 running and healthy; 1 running but the uplink is down, a fault is open or a button
    has not been proven working for longer than inspection.max_untested_days; 3 not
    running."""
    if not st.get("running"):
        return EXIT_NOT_RUNNING
    if not (st.get("uplink") or {}).get("connected") or st.get("faults"):
        return EXIT_FAIL
    if (st.get("inspection") or {}).get("untested"):
        return EXIT_FAIL
    return EXIT_OK

#!/usr/bin/env python3
"""Boot to armed: from the start of `alarmgw run` to "inputs read, first heartbeat at the
platform", and to "a button latched before boot has its alarm at the platform".

How. A private Mosquitto on 127.0.0.1 and a raw paho subscriber (QoS 1) on the gateway's
`health` and `event` topics, which timestamps each message on arrival. Each run starts
`alarmgw run` as a real child process (`python -m gateway -c CONFIG run`, as systemd's
ExecStart= would, log to a file), on the simulator's pins with three panic inputs and a
tamper loop, one of the panic buttons latched before the process starts (the simulator's
ALARMGW_SIM_LATCHED), the product's defaults otherwise. The clock starts just before the
child is spawned; the run ends with SIGTERM once both have arrived. The state directory is
kept from run to run, as on a gateway that reboots (the first run makes the store).
`--cpus 0` starts the child under `taskset -c 0`: one core, a rough stand-in for a Pi.

The start-up costs that come before any of the gateway's own work are measured apart, each
the median of `--runs` fresh interpreters: the bare interpreter (`python -c pass`),
`alarmgw --version` (the CLI's imports), and the imports of the service with its drivers.

    .venv/bin/python bench/boot.py [--runs 10] [--cpus 0] [--python PATH]

`--python /opt/alarmgw/venv/bin/python` (or that of a package unpacked with `dpkg-deb -x`
and compiled as its postinst does) measures the package's layout: Debian's interpreter,
the bytecode made at install, no editable-install finder.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Subscriber, print_machine, print_table, write_config

from hw_sim.broker import Mosquitto

GATEWAY = "gw-boot"
SITE = "bench-school"
LATCHED = "gate-panic"
INPUTS = [
    {"id": "gate-panic", "name": "South gate", "location": "gate", "kind": "panic",
     "gpio": 17, "contact": "NO", "pull": "up"},
    {"id": "office-panic", "name": "Office", "location": "admin", "kind": "panic",
     "gpio": 27, "contact": "NC", "pull": "up"},
    {"id": "hall-panic", "name": "Hall", "location": "hall", "kind": "panic",
     "gpio": 5, "contact": "NO", "pull": "up"},
    {"id": "box-tamper", "name": "Box lid", "location": "guard room", "kind": "tamper",
     "gpio": 22, "contact": "NC", "pull": "up"},
]


def taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def interpreter_ms(argv: list[str], runs: int, cpus: str | None) -> float:
    """The median wall time of `argv` in a fresh process, in ms."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        subprocess.run([*taskset(cpus), *argv], check=True, cwd="/",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times)


def first_after(sub: Subscriber, topic: str, t0: int, want: dict[str, str],
                timeout: float) -> int:
    """The arrival time of the first message on `topic` after `t0` whose document has the
    fields in `want` (a dotted key reaches into a sub-document)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = sub.received(topic)
        for t, payload in seen:
            if t < t0:
                continue
            doc = json.loads(payload)
            if all(_field(doc, k) == v for k, v in want.items()):
                return t
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"nothing like {want} on {topic} within {timeout} s")
        sub.wait_count(topic, len(seen) + 1, left)


def _field(doc: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        doc = doc.get(part, {}) if isinstance(doc, dict) else {}
    return doc


def one_boot(config: Path, sub: Subscriber, log: Path, *, cpus: str | None, python: str,
             timeout: float) -> tuple[float, float, float]:
    health_topic = f"alarmgw/v1/{SITE}/{GATEWAY}/health"
    event_topic = f"alarmgw/v1/{SITE}/{GATEWAY}/event"
    status_topic = f"alarmgw/v1/{SITE}/{GATEWAY}/status"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ALARMGW_SIM_LATCHED": LATCHED}
    with log.open("ab") as out:
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen([*taskset(cpus), python, "-m", "gateway", "-c",
                                 str(config), "run"], cwd=config.parent, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        t_online = first_after(sub, status_topic, t0, {"state": "online"}, timeout)
        t_health = first_after(sub, health_topic, t0, {}, timeout)
        t_alarm = first_after(sub, event_topic, t0, {"type": "alarm", "point.id": LATCHED},
                              timeout)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return (t_online - t0) / 1e6, (t_health - t0) / 1e6, (t_alarm - t0) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cpus", help="taskset CPU list for the child, e.g. 0 (one core)")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter of the gateway under test, e.g. the package's"
                    " /opt/alarmgw/venv/bin/python (default: this one)")
    args = ap.parse_args()
    print_machine()
    print(f"child CPUs: {args.cpus or 'all'}; {args.runs} runs; python {args.python}")

    py = [args.python]
    bare = interpreter_ms([*py, "-c", "pass"], args.runs, args.cpus)
    version = interpreter_ms([*py, "-m", "gateway", "--version"], args.runs, args.cpus)
    service = interpreter_ms([*py, "-c", "import gateway.cli.program, gateway.service,"
                              " gateway.drivers.gpio, hw_sim.backends"], args.runs, args.cpus)
    with tempfile.TemporaryDirectory(prefix="alarmgw-boot-") as tmp:
        work = Path(tmp)
        with Mosquitto(work / "broker") as broker:
            config = write_config(work / "gw", broker_port=broker.port, inputs=INPUTS,
                                  gateway=GATEWAY, site=SITE,
                                  broker={"reconnect_min_s": 0.1})
            sub = Subscriber(broker.host, broker.port,
                             [f"alarmgw/v1/{SITE}/{GATEWAY}/{t}"
                              for t in ("status", "health", "event")], "bench-boot")
            sub.start()
            try:
                results = [one_boot(config, sub, work / "gateway.log", cpus=args.cpus,
                                    python=args.python, timeout=args.timeout)
                           for _ in range(args.runs)]
            finally:
                sub.stop()
    rows = []
    for i, what in enumerate(["connected: retained \"online\" status at the platform",
                              "inputs read, first heartbeat at the platform",
                              "latched button's alarm at the platform"]):
        ms = [r[i] for r in results]
        rows.append([what, f"{statistics.median(ms):.0f}", f"{min(ms):.0f}",
                     f"{max(ms):.0f}", f"{ms[0]:.0f}"])
    print()
    print_table(["what (ms from process start)", "median", "min", "max", "first run"], rows)
    print()
    print_table(["start-up cost (median, ms)", "ms"], [
        ["python -c pass", f"{bare:.0f}"],
        ["alarmgw --version (the CLI's imports)", f"{version:.0f}"],
        ["import the service, GPIO driver, simulator", f"{service:.0f}"],
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())

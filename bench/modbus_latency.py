"""Benchmark: a press on a simulated Modbus RTU unit -> the alarm at a platform subscriber.

    .venv/bin/python bench/modbus_latency.py [--samples 200] [--bauds 9600,115200]
                                             [--units 1,8] [--interval-ms 50]

For each baud rate and number of units on the bus, the whole gateway runs in this process
on hw_sim's modules (a real pymodbus server on a socat pty pair, replies held back as long
as the line would take at that baud rate), with a real Mosquitto and the reference
platform console. A button on a random unit is pressed at a random moment of the poll
cycle; the latency is from the press to the alarm event arriving at the console. Each
press is released (and its restore awaited) before the next.

Printed beside p50 and p99: the theoretical bound, the poll interval plus the bus time of
one cycle (every request and reply frame, the 3.5-character gap after each, and the
simulated modules' turnaround), and p99 / bound (target: at most 1.5). "seen" is the part
of the latency until the driver read the press (the event's mono_ns); the rest is the
engine's commit (fsync) and MQTT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.clock import mono_ns
from gateway.config import load_config
from gateway.config.modbus import cycle_wire_s, plan_reads
from gateway.service import Service
from hw_sim.broker import Mosquitto
from hw_sim.modbus import DEFAULT_TURNAROUND_S, SimModbus
from hw_sim.platform import PlatformConsole

WAIT_S = 10.0


@dataclass
class Result:
    baud: int
    units: int
    samples: int
    interval_ms: float
    bound_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    sampled_p50_ms: float
    sampled_p99_ms: float
    after_p50_ms: float
    after_p99_ms: float

    @property
    def ratio(self) -> float:
        return self.p99_ms / self.bound_ms


def code_version() -> str:
    """The commit this runs on, and whether gateway/ or hw_sim/ had uncommitted changes."""
    repo = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "gateway", "hw_sim"], cwd=repo,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {rev}" + (" (gateway/ or hw_sim/ modified)" if dirty else "")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def write_config(directory: Path, broker_port: int, baud: int, units: int,
                 interval_ms: int) -> Path:
    lines = [
        "[gateway]", 'site = "bench-school"', 'id = "gw-bench"', 'state_dir = "state"',
        'runtime_dir = "run"', "",
        "[broker]", 'host = "127.0.0.1"', f"port = {broker_port}", "plaintext = true", "",
        "[clock]", 'sync_source = "assume-synced"', "",
        "[gpio]", 'backend = "mock"', "",
        "[modbus]", "simulator = true", "",
        "[[modbus.buses]]", 'id = "rs485"', 'type = "rtu"', 'port = "run/ttyRS485"',
        f"baud = {baud}", f"poll_interval_ms = {interval_ms}",
    ]
    for u in range(1, units + 1):
        lines += ["", "[[modbus.devices]]", f'id = "io{u}"', 'bus = "rs485"', f"unit = {u}"]
    for u in range(1, units + 1):
        lines += ["", "[[inputs]]", f'id = "panic-{u}"', 'kind = "panic"',
                  f'modbus = {{ device = "io{u}", table = "di", address = 0 }}',
                  'contact = "NO"']
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_case(workdir: Path, broker: Mosquitto, console: PlatformConsole, *, baud: int,
             units: int, interval_ms: int, samples: int, rng: random.Random) -> Result:
    cfg = load_config(write_config(workdir / f"b{baud}-u{units}", broker.port, baud, units,
                                   interval_ms))
    bus = cfg.modbus.buses[0]
    blocks = plan_reads(cfg.modbus.points, cfg.modbus.devices)
    cycle_s = cycle_wire_s(bus, blocks, DEFAULT_TURNAROUND_S)
    bound_s = interval_ms / 1000 + cycle_s
    period_s = max(interval_ms / 1000, cycle_s)
    service = Service(cfg)
    service.start()
    total: list[float] = []
    seen: list[float] = []
    after_commit: list[float] = []
    try:
        assert service.modbus is not None and service.modbus.wait_first_cycle(WAIT_S)
        sim = service.modbus_sim
        assert isinstance(sim, SimModbus)
        for i in range(samples):
            point = f"panic-{rng.randint(1, units)}"
            time.sleep(rng.uniform(0, period_s))  # a random moment of the poll cycle
            n_alarms = len(console.events_of("alarm"))
            pressed_ns = mono_ns()
            pressed = time.monotonic()
            sim.press(point)
            if not console.wait_for(lambda c, n=n_alarms: len(c.events_of("alarm")) > n,
                                    WAIT_S):
                raise TimeoutError(f"press {i} of {point}: no alarm within {WAIT_S} s")
            alarm = console.events_of("alarm")[-1]
            rec = next(r for r in reversed(console.raw)
                       if r.topic.endswith("/event") and alarm["id"].encode() in r.payload)
            total.append(rec.arrived_mono - pressed)
            seen.append((alarm["mono_ns"] - pressed_ns) / 1e9)
            after_commit.append(total[-1] - seen[-1])
            n_restores = len(console.events_of("restore"))
            sim.release(point)
            if not console.wait_for(lambda c, n=n_restores: len(c.events_of("restore")) > n,
                                    WAIT_S):
                raise TimeoutError(f"release {i} of {point}: no restore within {WAIT_S} s")
    finally:
        service.stop()
    ms = [t * 1000 for t in total]
    seen_ms = [t * 1000 for t in seen]
    return Result(baud=baud, units=units, samples=samples, interval_ms=interval_ms,
                  bound_ms=bound_s * 1000, p50_ms=percentile(ms, 50), p99_ms=percentile(ms, 99),
                  max_ms=max(ms), sampled_p50_ms=percentile(seen_ms, 50),
                  sampled_p99_ms=percentile(seen_ms, 99),
                  after_p50_ms=statistics.median(after_commit) * 1000,
                  after_p99_ms=percentile(after_commit, 99) * 1000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=200, help="presses per case (default 200)")
    ap.add_argument("--bauds", default="9600,115200", help="baud rates (default 9600,115200)")
    ap.add_argument("--units", default="1,8", help="units on the bus (default 1,8)")
    ap.add_argument("--interval-ms", type=int, default=50, help="poll interval (default 50)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    rng = random.Random(args.seed)
    bauds = [int(b) for b in args.bauds.split(",")]
    unit_counts = [int(u) for u in args.units.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="alarmgw-bench-modbus-"))
    print(f"alarmgw Modbus latency: {args.samples} presses per case, poll interval"
          f" {args.interval_ms} ms, turnaround {DEFAULT_TURNAROUND_S * 1000:.0f} ms per"
          f" request; {platform.python_implementation()} {platform.python_version()},"
          f" {platform.system()} {platform.release()}, {os.cpu_count()} CPUs; {code_version()};"
          f" loadavg {loadavg()}; store on {workdir}", flush=True)
    header = (f"{'baud':>6} {'units':>5} {'bound ms':>9} {'p50 ms':>8} {'p99 ms':>8}"
              f" {'max ms':>8} {'p99/bound':>9} {'sampled p50':>11} {'p99':>6}"
              f" {'after p50':>9} {'p99':>6}")
    print(header, flush=True)
    results: list[Result] = []
    try:
        with Mosquitto(workdir / "broker") as broker, \
                PlatformConsole(broker.host, broker.port, persistent=False) as console:
            for baud in bauds:
                for units in unit_counts:
                    r = run_case(workdir, broker, console, baud=baud, units=units,
                                 interval_ms=args.interval_ms, samples=args.samples, rng=rng)
                    results.append(r)
                    print(f"{r.baud:>6} {r.units:>5} {r.bound_ms:>9.1f} {r.p50_ms:>8.1f}"
                          f" {r.p99_ms:>8.1f} {r.max_ms:>8.1f} {r.ratio:>9.2f}"
                          f" {r.sampled_p50_ms:>11.1f} {r.sampled_p99_ms:>6.1f}"
                          f" {r.after_p50_ms:>9.1f} {r.after_p99_ms:>6.1f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    worst = max(r.ratio for r in results)
    print(f"worst p99/bound: {worst:.2f} (target: at most 1.50); loadavg at the end"
          f" {loadavg()}")
    if args.json is not None:
        doc: list[dict[str, Any]] = [{**vars(r), "ratio": round(r.ratio, 3)} for r in results]
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())

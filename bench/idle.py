#!/usr/bin/env python3
"""Idle footprint: memory, CPU and disk writes of `alarmgw run` doing nothing for a minute.

How. A private Mosquitto on 127.0.0.1 and `alarmgw run` as a real child process
(`python -m gateway -c CONFIG run`, stdout and stderr to a log file, as systemd would
send them to journald) with 8 GPIO panic inputs on the simulator's pins (BCM 4, 5, 6, 12,
13, 16, 17, 27) and the product's defaults otherwise (debounce 30 ms, health heartbeat
every 30 s, keepalive 10 s). Once the control socket answers and the gateway's retained
"online" status has arrived, `--settle` seconds pass, then the window of `--seconds`
begins. Read from /proc/PID, nothing inside the gateway:

- memory: VmRSS at the start and end of the window, its maximum over samples taken every
  `--interval` seconds, and VmHWM (the lifetime peak, start-up included);
- CPU: utime + stime deltas over the window / wall time, in % of one core; plus the
  voluntary context switches (wake-ups) per second and the thread count;
- disk: /proc/PID/io write_bytes delta (bytes this process sent toward the block layer),
  wchar delta (all write syscalls, sockets included, for scale), and every file in the
  state directory (size and mtime) before and after: there should be no change. The log
  file's growth is reported too (on a Pi it goes to journald, not to the SD card's
  state directory).

A raw paho subscriber in this process counts the heartbeats the gateway publishes during
the window.

    .venv/bin/python bench/idle.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import REPO, Subscriber, loadavg, print_machine, print_table, write_config

from gateway.config import load_config
from gateway.control import request
from gateway.errors import ServiceNotRunningError
from gateway.service import socket_path
from hw_sim.broker import Mosquitto

SITE = "bench-school"
GATEWAY = "gw-idle"
PINS = (4, 5, 6, 12, 13, 16, 17, 27)
TARGET_RSS_MB = 60.0
TARGET_CPU_PCT = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    mono: float
    rss_kb: int
    hwm_kb: int
    threads: int
    ticks: int
    """utime + stime, in clock ticks."""
    voluntary_switches: int
    """Summed over the process's threads (/proc/PID/task/*/status)."""
    cpu_ns: int
    """Time on CPU summed over the live threads (/proc/PID/task/*/schedstat), in ns."""
    write_bytes: int
    wchar: int


def sample(pid: int) -> Sample:
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    switches = 0
    cpu_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches += int(line.split()[1])
            cpu_ns += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended while we looked
    stat = Path(f"/proc/{pid}/stat").read_text()
    # "pid (comm) state ppid ...": comm may hold spaces; fields after it are fixed.
    fields = stat[stat.rfind(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    io: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        io[key] = int(value)
    return Sample(
        mono=time.monotonic(),
        rss_kb=int(status["VmRSS"].split()[0]),
        hwm_kb=int(status["VmHWM"].split()[0]),
        threads=int(status["Threads"]),
        ticks=utime + stime,
        voluntary_switches=switches,
        cpu_ns=cpu_ns,
        write_bytes=io["write_bytes"],
        wchar=io["wchar"],
    )


def files(directory: Path) -> dict[str, tuple[int, int]]:
    """name -> (size in bytes, mtime in ns) of every file in `directory`."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(directory.iterdir()) if p.is_file()}


def wait_serving(proc: subprocess.Popen[bytes], sock: Path, timeout: float,
                 log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}; see {log_path}:\n"
                               + log_path.read_text(errors="replace")[-3000:])
        try:
            request(sock, {"cmd": "ping"}, timeout=1.0)
            return
        except ServiceNotRunningError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway not serving after {timeout} s") from None
            # The control socket is the only readiness signal seen from outside.
            time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0,
                    help="length of the idle window, in seconds (default 60)")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="wait after the gateway is online before the window, in seconds"
                         " (default 2)")
    ap.add_argument("--interval", type=float, default=1.0,
                    help="RSS sampling interval, in seconds (default 1)")
    args = ap.parse_args(argv)

    print_machine()
    inputs = [{"id": f"panic-{pin}", "name": f"一键报警 GPIO{pin}", "location": "Guard room",
               "kind": "panic", "gpio": pin, "contact": "NO", "pull": "up"} for pin in PINS]
    with tempfile.TemporaryDirectory(prefix="alarmgw-bench-idle-") as tmpname:
        tmp = Path(tmpname)
        broker = Mosquitto(tmp / "broker")
        broker.start()
        try:
            cfg_path = write_config(tmp / GATEWAY, broker_port=broker.port, inputs=inputs,
                                    gateway=GATEWAY)
            config = load_config(cfg_path)
            root = f"alarmgw/v1/{SITE}/{GATEWAY}"
            sub = Subscriber(broker.host, broker.port, [f"{root}/status", f"{root}/health",
                                                        f"{root}/event"], "bench-idle")
            sub.start()
            log_path = tmp / "gateway.log"
            proc: subprocess.Popen[bytes] | None = None
            try:
                with log_path.open("ab") as log:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "gateway", "-c", str(cfg_path), "run"],
                        stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
                wait_serving(proc, socket_path(config), 20.0, log_path)
                if not sub.wait_count(f"{root}/status", 1, 10.0):
                    raise RuntimeError("the gateway did not say 'online'")
                time.sleep(args.settle)  # deliberate: let start-up writes finish
                state_dir = config.gateway.state_dir
                files_before = files(state_dir)
                log_before = log_path.stat().st_size
                health_before = sub.count(f"{root}/health")
                first = sample(proc.pid)
                samples = [first]
                end = first.mono + args.seconds
                while (left := end - time.monotonic()) > 0:
                    time.sleep(min(args.interval, left))  # the sampler's pacing
                    samples.append(sample(proc.pid))
                last = samples[-1]
                files_after = files(state_dir)
                log_after = log_path.stat().st_size
                heartbeats = sub.count(f"{root}/health") - health_before
                events = sub.count(f"{root}/event")
            finally:
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(15.0)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                sub.stop()
        finally:
            broker.stop()

    wall = last.mono - first.mono
    cpu_s = (last.ticks - first.ticks) / CLK_TCK
    cpu_pct = 100.0 * cpu_s / wall
    sched_pct = 100.0 * (last.cpu_ns - first.cpu_ns) / 1e9 / wall
    rss_max = max(s.rss_kb for s in samples) / 1024
    wakeups = (last.voluntary_switches - first.voluntary_switches) / wall
    write_bytes = last.write_bytes - first.write_bytes
    changed = sorted(name for name in set(files_before) | set(files_after)
                     if files_before.get(name) != files_after.get(name))

    print()
    print(f"idle window {wall:.1f} s, {len(samples)} samples, {len(PINS)} GPIO panic inputs,"
          f" {last.threads} threads, {heartbeats} heartbeats published, {events} events")
    print_table(
        ["what", "value"],
        [["RSS at start of window, MB", first.rss_kb / 1024],
         ["RSS at end of window, MB", last.rss_kb / 1024],
         ["RSS max over samples, MB", rss_max],
         ["VmHWM (lifetime peak), MB", last.hwm_kb / 1024],
         ["CPU, % of one core (utime+stime)", cpu_pct],
         [f"CPU seconds (utime+stime, 1/{CLK_TCK} s ticks)", cpu_s],
         ["CPU, % of one core, from schedstat (ns)", sched_pct],
         ["voluntary context switches / s (all threads)", wakeups],
         ["write_bytes delta (toward disk), B", write_bytes],
         ["wchar delta (all write syscalls), B", last.wchar - first.wchar],
         ["log file growth (stderr), B", log_after - log_before]])
    print()
    print("state directory, before -> after (size B, mtime):")
    for name in sorted(set(files_before) | set(files_after)):
        b, a = files_before.get(name), files_after.get(name)
        mark = "CHANGED" if b != a else "same"
        print(f"  {name:<22} {_fmt(b)} -> {_fmt(a)}  {mark}")
    print(f"loadavg at the end {loadavg()}")
    print()
    rss_ok = rss_max < TARGET_RSS_MB
    cpu_ok = cpu_pct < TARGET_CPU_PCT
    disk_ok = write_bytes == 0 and not changed
    print(f"SUMMARY idle: RSS max {rss_max:.1f} MB (target < {TARGET_RSS_MB:.0f}:"
          f" {'met' if rss_ok else 'MISSED'}), CPU {cpu_pct:.2f}% of one core (target <"
          f" {TARGET_CPU_PCT:.0f}%: {'met' if cpu_ok else 'MISSED'}), disk write_bytes"
          f" {write_bytes} B, state files changed: {', '.join(changed) or 'none'} (target none:"
          f" {'met' if disk_ok else 'MISSED'})")
    return 0


def _fmt(entry: tuple[int, int] | None) -> str:
    if entry is None:
        return "(absent)"
    size, mtime_ns = entry
    stamp = time.strftime("%H:%M:%S", time.gmtime(mtime_ns / 1e9))
    return f"{size:>8} {stamp}.{mtime_ns % 1_000_000_000 // 1_000_000:03d}"


if __name__ == "__main__":
    sys.exit(main())

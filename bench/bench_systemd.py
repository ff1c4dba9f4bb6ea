"""What the systemd link and the diagnostics cost: prints figures, asserts nothing.

    .venv/bin/python bench/bench_systemd.py [--backlog 10000] [--burst 200]

Measures, on the simulator and a private Mosquitto:
- the watchdog probe (a no-op round trip through the engine thread), idle and
  while the engine commits a burst of alarms (each an fsync);
- building the STATUS= line (uplink state plus the queue depth from SQLite),
  with an empty queue and with a backlog waiting;
- one sd_notify datagram;
- one `status` request over the control socket, and `alarmgw status` as a
  whole process (what the technician waits for).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.config import load_config  # noqa: E402
from gateway.control import request  # noqa: E402
from gateway.drivers import InputChange  # noqa: E402
from gateway.service import Service, socket_path  # noqa: E402
from gateway.systemd.notify import Notifier  # noqa: E402
from hw_sim.broker import Mosquitto  # noqa: E402

CONFIG = """
[gateway]
site = "bench"
id = "gw"
state_dir = "state"
runtime_dir = "run"

[broker]
host = "127.0.0.1"
port = {port}
plaintext = true
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[clock]
sync_source = "assume-synced"

[gpio]
backend = "mock"
debounce_ms = 0

[[inputs]]
id = "gate-panic"
kind = "panic"
gpio = 17
"""


def figures(name: str, samples_s: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples_s)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{name:<46} n={len(ms):<6} p50 {statistics.median(ms):8.3f} ms   p99 {p99:8.3f} ms"
          f"   max {ms[-1]:8.3f} ms")


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backlog", type=int, default=10000, help="rows waiting for STATUS=")
    ap.add_argument("--burst", type=int, default=200, help="alarms committed during probes")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # one line per committed alarm is not a figure
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, state on"
          f" {tempfile.gettempdir()}")
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        cfg_path = Path(tmp) / "config.toml"
        cfg_path.write_text(CONFIG.format(port=broker.port))
        cfg = load_config(cfg_path)
        svc = Service(cfg)
        svc.start()
        try:
            link = svc.systemd
            engine = svc.engine
            assert link is not None and engine is not None
            figures("watchdog probe, engine idle", timed(lambda: link.probe(5.0), 2000))
            probe_timeout = 0.005  # far below the burst's backlog: shows the busy-engine rule

            # Probes while the engine commits a burst of alarm/restore events.
            stop = threading.Event()
            samples: list[float] = []
            results: list[bool] = []

            def prober() -> None:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    results.append(link.probe(probe_timeout))
                    samples.append(time.perf_counter() - t0)

            t = threading.Thread(target=prober)
            t.start()
            t0 = time.perf_counter()
            for i in range(args.burst):
                engine.door(InputChange("gate-panic", i % 2 == 0, time.monotonic_ns()))
            engine.call(lambda: None).result(60)
            burst_s = time.perf_counter() - t0
            stop.set()
            t.join()
            figures(f"watchdog probe (5 ms timeout), {args.burst} commits", samples)
            print(f"{'':<46} {sum(results)} of {len(results)} probes fed the watchdog"
                  " (the engine kept handling messages)")
            print(f"{'':<46} (the burst took {burst_s * 1000:.0f} ms,"
                  f" {burst_s / args.burst * 1000:.2f} ms per fsynced event)")

            figures("STATUS= text, queue empty-ish", timed(link.status_text, 500))
            figures("control socket: status request",
                    timed(lambda: request(socket_path(cfg), {"cmd": "status"}), 200))

            broker.kill()  # a backlog builds up while the broker is down
            for _ in range(args.backlog):
                svc.outbox.put_bulk("telemetry", b"x" * 200)
            figures(f"STATUS= text, {args.backlog} waiting", timed(link.status_text, 200))
            print(f"{'':<46} STATUS={link.status_text()!r}")

            cli = [sys.executable, "-m", "gateway", "-c", str(cfg_path), "status"]
            figures("`alarmgw status` process, service running",
                    timed(lambda: subprocess.run(cli, capture_output=True, check=False), 10))
        finally:
            svc.stop()
        cli = [sys.executable, "-m", "gateway", "-c", str(cfg_path), "status"]
        figures("`alarmgw status` process, service stopped",
                timed(lambda: subprocess.run(cli, capture_output=True, check=False), 10))

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(Path(tmp) / "notify.sock"))
        n = Notifier(str(Path(tmp) / "notify.sock"))

        def ping() -> None:
            n.watchdog()
            sock.recv(64)

        figures("sd_notify WATCHDOG=1 datagram (send + recv)", timed(ping, 5000))
        n.close()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Alarm latency: a panic-button press to the event's arrival at a subscriber, on loopback.

What it measures. The gateway runs in this process (`gateway.service.Service` on the
simulator's GPIO pins) against a private Mosquitto on 127.0.0.1. A raw paho MQTT 5
subscriber (QoS 1), also in this process, timestamps every message on arrival. One
sample is the time from just before `SimPanel.press(point)` to the subscriber's
`on_message` for that alarm: GPIO callback, debounce, engine, the durable SQLite commit
(WAL, synchronous=FULL: one fsync), waking the uplink, the outbox `take`, the MQTT
publish, the broker, the subscriber. The time of release -> restore event is reported
too. Presses alternate between two panic inputs (one normally-open, one normally-closed)
and are paced: press, wait for the alarm's arrival and for the gateway to record its
PUBACK, release, wait for the restore and its PUBACK, next press. No sleeps, unless
`--gap-ms` asks for idle time before each press and release (and each raw publish): back
to back, every thread is still warm; after a pause the wake-ups cost more, as they will
for a real button pressed once in a while.

Rows:
- pipeline, debounce_ms = 0: the gateway's own time (the headline figure);
- pipeline, debounce_ms = 30 (the default), a smaller pass: debounce adds its configured
  time on top, since a level counts only once it has held that long;
- raw paho: on the same broker, in the same run, a raw paho client (loop_start) publishes
  the bytes of one of the gateway's alarm events at QoS 1 and the same subscriber receives
  them, paced the same way (publish, wait for arrival and PUBACK, next);
- bare SQLite commit: one WAL synchronous=FULL commit on the same disk, the floor of a
  durable commit;
- stages: where the pipeline's time goes, from timestamps taken by wrapping the gateway's
  Outbox instance (`commit_event`, `take`, `ack`; about a microsecond per call): press ->
  commit start (GPIO callback, debounce, engine queue and thread wake-up), the commit
  (event JSON, seq, INSERT, fsync), commit end -> the uplink's `take` of the row returns
  (wake-up through a socketpair, one SQLite transaction), taken -> arrival (the uplink's
  second, lower-lane `take`, the publish, the broker, the subscriber).

Warm-up presses/publishes (`--warmup`) are made first and not counted.

    .venv/bin/python bench/latency.py [--presses 1000] [--debounce-presses 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    PANIC_INPUTS,
    CpuTime,
    OutboxProbe,
    Percentiles,
    Publisher,
    Subscriber,
    cpu_time,
    loadavg,
    log_to_file,
    print_machine,
    print_table,
    ratio,
    sqlite_full_commit_ns,
    unlog,
    write_config,
)

from gateway.config import load_config
from gateway.service import Service
from hw_sim.broker import Mosquitto

SITE = "bench-school"
WAIT_S = 10.0
TARGET_P99_MS = 10.0


@dataclass
class PassResult:
    label: str
    alarm_ns: list[int] = field(default_factory=list)
    restore_ns: list[int] = field(default_factory=list)
    stages_ns: dict[str, list[int]] = field(default_factory=dict)
    cpu: CpuTime = field(default_factory=lambda: CpuTime(0, 0))
    """This process's CPU over the pass: on CPU, and runnable but waiting (contention)."""
    payload: bytes = b""
    """One alarm's payload, as the subscriber received it."""


def gateway_pass(tmp: Path, broker: Mosquitto, sub: Subscriber, *, label: str, gateway: str,
                 debounce_ms: int, presses: int, warmup: int, gap_s: float) -> PassResult:
    """Run one in-process gateway and press its buttons `warmup + presses` times."""
    cfg_path = write_config(tmp / gateway, broker_port=broker.port, inputs=PANIC_INPUTS,
                            gateway=gateway, debounce_ms=debounce_ms)
    root = f"alarmgw/v1/{SITE}/{gateway}"
    event_topic, status_topic = f"{root}/event", f"{root}/status"
    handler = log_to_file(tmp / f"{gateway}.log")
    service = Service(load_config(cfg_path))
    result = PassResult(label)
    try:
        probe = OutboxProbe(service.outbox)
        service.start()
        if not sub.wait_count(status_topic, 1, WAIT_S):
            raise RuntimeError(f"gateway {gateway} did not come online; see {tmp}")
        panel = service.sim
        assert panel is not None
        points = [inp["id"] for inp in PANIC_INPUTS]
        stages: dict[str, list[int]] = {"press -> commit start": [], "commit (fsync)": [],
                                        "commit end -> taken by uplink": [],
                                        "taken -> arrival": []}
        n_events = 0
        cpu0 = cpu_time(os.getpid())
        for i in range(warmup + presses):
            point = points[i % len(points)]
            for active in (True, False):
                if gap_s:
                    time.sleep(gap_s)  # deliberate pacing: the gateway idles between events
                t0 = time.perf_counter_ns()
                if active:
                    panel.press(point)
                else:
                    panel.release(point)
                n_events += 1
                if not sub.wait_count(event_topic, n_events, WAIT_S):
                    raise RuntimeError(f"event {n_events} did not arrive within {WAIT_S} s")
                if not probe.wait_acked(n_events, WAIT_S):
                    raise RuntimeError(f"PUBACK {n_events} not recorded within {WAIT_S} s")
                t_arr, payload = sub.received(event_topic)[n_events - 1]
                doc = json.loads(payload)
                expected = "alarm" if active else "restore"
                if doc["type"] != expected or doc["point"]["id"] != point:
                    raise RuntimeError(f"expected {expected} of {point}, got {doc['type']}"
                                       f" of {doc['point']['id']}")
                if i < warmup:
                    continue
                (result.alarm_ns if active else result.restore_ns).append(t_arr - t0)
                if active:
                    seq = int(doc["seq"])
                    result.payload = payload
                    stages["press -> commit start"].append(probe.commit_start[seq] - t0)
                    stages["commit (fsync)"].append(probe.commit_end[seq]
                                                    - probe.commit_start[seq])
                    stages["commit end -> taken by uplink"].append(probe.take_end[seq]
                                                                   - probe.commit_end[seq])
                    stages["taken -> arrival"].append(t_arr - probe.take_end[seq])
        result.stages_ns = stages
        result.cpu = cpu_time(os.getpid()) - cpu0
    finally:
        service.stop()
        unlog(handler)
    return result


def raw_pass(broker: Mosquitto, sub: Subscriber, *, n: int, warmup: int,
             payload: bytes, gap_s: float) -> tuple[list[int], CpuTime]:
    """Raw paho: publish, wait for arrival and PUBACK, next; returns publish -> arrival."""
    topic = "bench/raw/latency"
    pub = Publisher(broker.host, broker.port, "bench-raw-latency")
    pub.start()
    samples: list[int] = []
    cpu0 = cpu_time(os.getpid())
    try:
        for i in range(warmup + n):
            if gap_s:
                time.sleep(gap_s)  # deliberate pacing, as for the gateway
            t0 = time.perf_counter_ns()
            pub.publish(topic, payload)
            if not sub.wait_count(topic, i + 1, WAIT_S):
                raise RuntimeError(f"raw message {i + 1} did not arrive within {WAIT_S} s")
            if not pub.wait_acks(i + 1, WAIT_S):
                raise RuntimeError(f"raw PUBACK {i + 1} not in within {WAIT_S} s")
            if i >= warmup:
                samples.append(sub.received(topic)[i][0] - t0)
        cpu = cpu_time(os.getpid()) - cpu0
    finally:
        pub.stop()
    return samples, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presses", type=int, default=1000,
                    help="counted presses with debounce_ms = 0 (default 1000)")
    ap.add_argument("--debounce-presses", type=int, default=100,
                    help="counted presses with the default debounce_ms = 30 (default 100;"
                         " 0 skips the pass)")
    ap.add_argument("--raw", type=int, default=None,
                    help="counted raw paho publishes (default: same as --presses)")
    ap.add_argument("--warmup", type=int, default=20,
                    help="uncounted presses/publishes made first (default 20)")
    ap.add_argument("--fsync-samples", type=int, default=1000,
                    help="bare SQLite FULL commits for the reference row (default 1000)")
    ap.add_argument("--gap-ms", type=float, default=0.0,
                    help="idle time before each press/release/publish, in ms (default 0:"
                         " back to back)")
    args = ap.parse_args(argv)
    n_raw = args.presses if args.raw is None else args.raw

    print_machine()
    with tempfile.TemporaryDirectory(prefix="alarmgw-bench-latency-") as tmpname:
        tmp = Path(tmpname)
        broker = Mosquitto(tmp / "broker")
        broker.start()
        try:
            sub = Subscriber(broker.host, broker.port,
                             [f"alarmgw/v1/{SITE}/+/event", f"alarmgw/v1/{SITE}/+/status",
                              "bench/raw/#"], "bench-subscriber")
            sub.start()
            try:
                t_start = time.monotonic()
                fast = gateway_pass(tmp, broker, sub, label="pipeline, debounce 0 ms",
                                    gateway="gw-debounce-0", debounce_ms=0,
                                    presses=args.presses, warmup=args.warmup,
                                    gap_s=args.gap_ms / 1000)
                slow = None
                if args.debounce_presses > 0:
                    slow = gateway_pass(tmp, broker, sub, label="pipeline, debounce 30 ms",
                                        gateway="gw-debounce-30", debounce_ms=30,
                                        presses=args.debounce_presses,
                                        warmup=min(args.warmup, 5),
                                        gap_s=args.gap_ms / 1000)
                raw, raw_cpu = raw_pass(broker, sub, n=n_raw, warmup=args.warmup,
                               payload=fast.payload, gap_s=args.gap_ms / 1000)
                wall = time.monotonic() - t_start
            finally:
                sub.stop()
        finally:
            broker.stop()
        fsync = sqlite_full_commit_ns(tmp / "fsync", args.fsync_samples, len(fast.payload))

    p_fast = Percentiles.of_ns(fast.alarm_ns)
    p_raw = Percentiles.of_ns(raw)
    rows: list[list[object]] = []

    def row(name: str, p: Percentiles) -> None:
        rows.append([name, p.n, p.p50, p.p90, p.p99, p.max])

    row("gateway: press -> alarm arrival, debounce 0 ms", p_fast)
    row("gateway: release -> restore arrival, debounce 0 ms", Percentiles.of_ns(fast.restore_ns))
    if slow is not None:
        row("gateway: press -> alarm arrival, debounce 30 ms", Percentiles.of_ns(slow.alarm_ns))
        row("gateway: release -> restore arrival, debounce 30 ms",
            Percentiles.of_ns(slow.restore_ns))
    row(f"raw paho: QoS 1 publish -> arrival ({len(fast.payload)} B)", p_raw)
    row("reference: bare SQLite WAL synchronous=FULL commit", Percentiles.of_ns(fsync))
    print()
    print(f"latency in ms (payload {len(fast.payload)} B, warm-up {args.warmup} not counted,"
          f" idle gap before each event {args.gap_ms:g} ms, run {wall:.1f} s)")
    print_table(["what", "n", "p50", "p90", "p99", "max"], rows)
    print()
    print("where the debounce-0 alarm's time goes (ms):")
    print_table(["stage", "n", "p50", "p90", "p99", "max"],
                [[name, p.n, p.p50, p.p90, p.p99, p.max] for name, p in
                 ((k, Percentiles.of_ns(v)) for k, v in fast.stages_ns.items())])
    print()
    passes = [("gateway, debounce 0", fast.cpu)]
    if slow is not None:
        passes.append(("gateway, debounce 30", slow.cpu))
    passes.append(("raw paho", raw_cpu))
    print("this process's CPU s per pass (on CPU / runnable but waiting for a CPU):"
          + ",".join(f" {k} {c.run_ns / 1e9:.2f}/{c.wait_ns / 1e9:.2f}" for k, c in passes)
          + f"; loadavg at the end {loadavg()}")
    print()
    r50, r99 = ratio(p_fast.p50, p_raw.p50), ratio(p_fast.p99, p_raw.p99)
    verdict = "met" if p_fast.p99 < TARGET_P99_MS else "MISSED"
    print(f"SUMMARY latency: gateway p50 {p_fast.p50:.2f} ms p99 {p_fast.p99:.2f} ms"
          f" (target p99 < {TARGET_P99_MS:.0f} ms: {verdict}); raw paho p50"
          f" {p_raw.p50:.2f} ms p99 {p_raw.p99:.2f} ms; ratio p50 {r50:.1f}x p99 {r99:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

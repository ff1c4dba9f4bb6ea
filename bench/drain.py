#!/usr/bin/env python3
"""Backlog drain: how fast the gateway empties a 10,000-event outbox when the broker returns.

How. A private Mosquitto on 127.0.0.1 and the gateway in this process (`Service` on the
simulator's pins). Once the gateway is online the broker is killed (SIGKILL: an outage).
While it is down, `--events` events are committed through the engine's door, the same
call the GPIO driver makes after debouncing: `InputChange`s alternating active/inactive
on two panic inputs, so half are alarms (alarm lane) and half restores (event lane); each
is one durable SQLite commit (WAL, synchronous=FULL), as a real press is. Then the broker
is started again on the same port and a raw paho MQTT 5 subscriber (QoS 1) subscribes at
once; the clock runs until the subscriber has every event. The subscriber lives in a
child process (started, imports done, before the broker), so that its receiving does not
share a GIL with the gateway; its timestamps are CLOCK_MONOTONIC like ours
(`--in-process-subscriber` keeps it in this process). Timestamps:

- broker start -> broker accepting connections (the harness waits for it);
- -> the gateway's first `take` from the outbox after the restart (its reconnect backoff:
  `--reconnect-max-s`, 0.5 s here, 30 s by the product's default);
- -> the last event's arrival at the subscriber;
- -> the gateway's own view: the last PUBACK recorded in the outbox (0 waiting).

The outbox calls are timed by wrapping the gateway's Outbox instance (`take`, `ack`),
not by changing the gateway; the CPU time of the uplink thread, this process, the
subscriber and Mosquitto comes from /proc/.../schedstat (on CPU, and runnable but waiting
for a CPU: contention). If the gateway connects before the subscriber is subscribed (a
race on a freshly started broker), the trial is void (events would be dropped as "no
matching subscribers") and is run again.

Beside it, on the same broker in the same run: raw paho (loop_start, at most 20 in flight,
the broker's Receive Maximum) publishes the very same payloads at QoS 1 as fast as it can;
timed from the first publish to the last PUBACK and to the last arrival. Mosquitto's
Receive Maximum (max_inflight_messages, default 20) caps the messages in flight for both:
the gateway keeps its window at Receive Maximum - 1 = 19 and reserves a quarter of it for
alarms, so restores drain at most 15 in flight. `--repeat` rounds (default 3) of gateway
then raw paho; the ratio reported is the median of the rounds' ratios.

    .venv/bin/python bench/drain.py [--events 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    PANIC_INPUTS,
    CpuTime,
    OutboxProbe,
    Publisher,
    Subscriber,
    cpu_time,
    loadavg,
    log_to_file,
    print_machine,
    print_table,
    ratio,
    sqlite_full_commit_ns,
    start_subscriber,
    thread_id,
    unlog,
    write_config,
)

from gateway.clock import mono_ns
from gateway.config import load_config
from gateway.drivers import InputChange
from gateway.service import Service
from hw_sim.broker import Mosquitto

SITE = "bench-school"
TARGET_RATIO = 0.5


@dataclass
class GatewayDrain:
    events: int
    commit_s: float
    broker_ready_s: float
    """broker start -> accepting connections."""
    connect_s: float
    """broker start -> first take (the gateway is connected and publishing)."""
    arrived_s: float
    """broker start -> last arrival at the subscriber."""
    acked_s: float
    """broker start -> last PUBACK recorded in the outbox."""
    waiting_after: int
    attempts: int
    payloads: list[bytes]
    unique: int
    takes: int
    acks: int
    receive_maximum: int | None
    """As the broker announced it in CONNACK (read from the gateway's uplink state)."""
    cpu: dict[str, CpuTime]
    """CPU time from broker start to the last PUBACK, by who spent it."""
    outbox_s: dict[str, float]
    """Wall time the uplink spent inside Outbox.take and Outbox.ack, in seconds."""
    take_calls: int
    """Every take, including those that found nothing."""

    @property
    def drain_rate(self) -> float:
        """Events per second from the first take to the last arrival."""
        return self.events / (self.arrived_s - self.connect_s)

    @property
    def ack_rate(self) -> float:
        """Events per second from the first take to the last PUBACK recorded."""
        return self.events / (self.acked_s - self.connect_s)

    @property
    def outage_rate(self) -> float:
        """Events per second from broker start to the last arrival."""
        return self.events / self.arrived_s


@dataclass
class RawDrain:
    events: int
    acked_s: float
    arrived_s: float
    unique: int
    cpu: dict[str, CpuTime]
    """CPU time from the first publish to the last arrival, by who spent it."""

    @property
    def rate(self) -> float:
        return self.events / self.arrived_s

    @property
    def ack_rate(self) -> float:
        return self.events / self.acked_s


def _wait_disconnected(service: Service, timeout: float) -> None:
    # Setup only, not measured: the uplink exposes its state, not an event, so poll it.
    deadline = time.monotonic() + timeout
    assert service.uplink is not None
    while service.uplink.state()["connected"]:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not notice the broker outage")
        time.sleep(0.01)


def _receive_maximum(service: Service) -> int | None:
    # The uplink logs it and keeps it; there is no public accessor, so read the field.
    uplink = service.uplink
    value = getattr(uplink, "_server_receive_max", None) if uplink is not None else None
    return int(value) if value is not None and value != 65535 else None


def gateway_drain(tmp: Path, broker: Mosquitto, *, gateway: str, events: int,
                  reconnect_max_s: float, keep_acked: int | None,
                  attempts: int, timeout: float, in_process: bool) -> GatewayDrain:
    cfg = write_config(tmp / gateway, broker_port=broker.port, inputs=PANIC_INPUTS,
                       gateway=gateway, broker={"reconnect_min_s": 0.1,
                                                "reconnect_max_s": reconnect_max_s},
                       store=None if keep_acked is None else {"keep_acked": keep_acked})
    root = f"alarmgw/v1/{SITE}/{gateway}"
    event_topic, status_topic = f"{root}/event", f"{root}/status"
    handler = log_to_file(tmp / f"{gateway}.log")
    service = Service(load_config(cfg))
    try:
        probe = OutboxProbe(service.outbox, keep_payloads=True)
        status = Subscriber(broker.host, broker.port, [status_topic], "bench-drain-status")
        status.start()
        service.start()
        try:
            if not status.wait_count(status_topic, 1, 10.0):
                raise RuntimeError("the gateway did not come online")
        finally:
            status.stop()
        engine = service.engine
        assert engine is not None
        points = [inp["id"] for inp in PANIC_INPUTS]
        for attempt in range(1, attempts + 1):
            # The outage.
            broker.kill()
            _wait_disconnected(service, 10.0)
            acked_before = probe.acked
            takes_before = len(probe.takes)
            acks_before = len(probe.ack_times)
            take_calls0, take_ns0, ack_ns0 = probe.take_calls, probe.take_ns, probe.ack_ns
            probe.payloads.clear()
            t0 = time.perf_counter()
            for i in range(events):
                # Per point: press, release, press, ...: alarm, alarm, restore, restore, ...
                engine.door(InputChange(points[i % 2], (i // 2) % 2 == 0, mono_ns()))
            engine.call(lambda: None).result(timeout)  # runs after every change handed in
            commit_s = time.perf_counter() - t0
            waiting = service.outbox.stats().waiting
            if waiting != events:
                raise RuntimeError(f"expected {events} events waiting, the outbox has"
                                   f" {waiting}")
            # The broker comes back; the subscriber is there first (or the trial is void).
            sub = start_subscriber(in_process, broker.host, broker.port, event_topic, events)
            try:
                me, uplink_tid = os.getpid(), thread_id("uplink")
                cpu0 = {"gateway uplink thread": cpu_time(me, uplink_tid),
                        "this process (gateway)": cpu_time(me)}
                if sub.pid is not None:
                    cpu0["subscriber process"] = cpu_time(sub.pid)
                t_start = time.perf_counter_ns()
                broker.start()
                t_ready = time.perf_counter_ns()
                sub.connect()
                if len(probe.takes) > takes_before:
                    print(f"trial {attempt}: the gateway connected before the subscriber"
                          " subscribed; trial void, running it again", file=sys.stderr)
                    if not probe.wait_acked(acked_before + events, timeout):
                        raise RuntimeError(f"void trial did not drain within {timeout} s")
                    continue
                arrivals = sub.wait(timeout)
                if not probe.wait_acked(acked_before + events, timeout):
                    raise RuntimeError(f"{probe.acked - acked_before} of {events} PUBACKs"
                                       f" recorded in {timeout} s")
                cpu = {"gateway uplink thread": cpu_time(me, uplink_tid),
                       "this process (gateway)": cpu_time(me)}
                if sub.pid is not None:
                    cpu["subscriber process"] = cpu_time(sub.pid)
                cpu = {k: v - cpu0[k] for k, v in cpu.items()}
                outbox_s = {"take": (probe.take_ns - take_ns0) / 1e9,
                            "ack": (probe.ack_ns - ack_ns0) / 1e9}
                take_calls = probe.take_calls - take_calls0
                assert broker.pid is not None
                cpu["mosquitto (since its start)"] = cpu_time(broker.pid)
            finally:
                sub.stop()
            t_first_take = probe.takes[takes_before][0]
            t_acked = probe.time_acked(acked_before + events)
            assert t_acked is not None
            return GatewayDrain(
                events=events, commit_s=commit_s,
                broker_ready_s=(t_ready - t_start) / 1e9,
                connect_s=(t_first_take - t_start) / 1e9,
                arrived_s=(arrivals.last_ns - t_start) / 1e9,
                acked_s=(t_acked - t_start) / 1e9,
                waiting_after=service.outbox.stats().waiting,
                attempts=attempt,
                payloads=[probe.payloads[k] for k in sorted(probe.payloads)],
                unique=arrivals.unique_seqs,
                takes=len(probe.takes) - takes_before,
                acks=len(probe.ack_times) - acks_before,
                receive_maximum=_receive_maximum(service),
                cpu=cpu, outbox_s=outbox_s, take_calls=take_calls)
        raise RuntimeError(f"every one of {attempts} trials raced the subscriber")
    finally:
        service.stop()
        unlog(handler)


def raw_drain(broker: Mosquitto, payloads: list[bytes], timeout: float,
              in_process: bool, max_inflight: int) -> RawDrain:
    topic = "bench/raw/drain"
    sub = start_subscriber(in_process, broker.host, broker.port, topic, len(payloads))
    try:
        sub.connect()
        # paho does not apply the broker's Receive Maximum itself: set it to match.
        pub = Publisher(broker.host, broker.port, "bench-raw-drain", max_inflight=max_inflight)
        pub.start()
        try:
            me = os.getpid()
            assert broker.pid is not None
            pids = {"this process (raw paho)": me, "mosquitto": broker.pid}
            if sub.pid is not None:
                pids["subscriber process"] = sub.pid
            cpu0 = {k: cpu_time(pid) for k, pid in pids.items()}
            t0 = time.perf_counter_ns()
            for p in payloads:
                pub.publish(topic, p)
            if not pub.wait_acks(len(payloads), timeout):
                raise RuntimeError(f"raw paho: {pub.acks} of {len(payloads)} PUBACKs")
            t_acked = time.perf_counter_ns()
        finally:
            pub.stop()
        arrivals = sub.wait(timeout)
        cpu = {k: cpu_time(pid) - cpu0[k] for k, pid in pids.items()}
    finally:
        sub.stop()
    return RawDrain(len(payloads), (t_acked - t0) / 1e9, (arrivals.last_ns - t0) / 1e9,
                    arrivals.unique_seqs, cpu)


def _cpu(cpu: dict[str, CpuTime]) -> str:
    return ", ".join(f"{k} {v.run_ns / 1e9:.2f}/{v.wait_ns / 1e9:.2f}" for k, v in cpu.items())


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000,
                    help="events committed during the outage (default 10000)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="outage + drain + raw paho rounds; the ratio is the median of the"
                         " rounds' ratios (default 3)")
    ap.add_argument("--reconnect-max-s", type=float, default=0.5,
                    help="the gateway's broker.reconnect_max_s (default 0.5; the product's"
                         " default is 30)")
    ap.add_argument("--keep-acked", type=int, default=None,
                    help="the gateway's store.keep_acked (default: the product's, 1000)")
    ap.add_argument("--receive-maximum", type=int, default=None,
                    help="set the broker's max_inflight_messages (its MQTT 5 Receive Maximum;"
                         " default: Mosquitto's own, 20)")
    ap.add_argument("--in-process-subscriber", action="store_true",
                    help="receive in this process (sharing its GIL with the publisher side)"
                         " instead of a child process")
    ap.add_argument("--attempts", type=int, default=3,
                    help="trials to try when the gateway races the subscriber (default 3)")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="give up waiting for a phase after this many seconds (default 120)")
    args = ap.parse_args(argv)
    if args.events < 2 or args.repeat < 1:
        ap.error("--events must be at least 2 and --repeat at least 1")

    print_machine()
    rounds: list[tuple[GatewayDrain, RawDrain]] = []
    t_begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="alarmgw-bench-drain-") as tmpname:
        tmp = Path(tmpname)
        extra = ("" if args.receive_maximum is None
                 else f"max_inflight_messages {args.receive_maximum}")
        broker = Mosquitto(tmp / "broker", extra_conf=extra)
        broker.start()
        try:
            for i in range(args.repeat):
                gw = gateway_drain(tmp, broker, gateway=f"gw-drain-{i + 1}", events=args.events,
                                   reconnect_max_s=args.reconnect_max_s,
                                   keep_acked=args.keep_acked, attempts=args.attempts,
                                   timeout=args.timeout, in_process=args.in_process_subscriber)
                raw = raw_drain(broker, gw.payloads, args.timeout, args.in_process_subscriber,
                                max_inflight=gw.receive_maximum or 20)
                rounds.append((gw, raw))
        finally:
            broker.stop()
        sizes = sorted(len(p) for p in rounds[0][0].payloads)
        fsync = sqlite_full_commit_ns(tmp / "fsync", 1000, sizes[len(sizes) // 2])
    fsync_ms = sorted(fsync)[len(fsync) // 2] / 1e6
    wall = time.monotonic() - t_begin

    n = args.events
    rm = rounds[0][0].receive_maximum
    where = "this process" if args.in_process_subscriber else "a child process"
    print()
    print(f"{n} events a round ({n // 2} alarms, {n - n // 2} restores), payload"
          f" {sizes[0]}-{sizes[-1]} B, subscriber in {where}, broker Receive Maximum {rm}"
          f" (raw paho max in flight {rm or 20}), store.keep_acked"
          f" {args.keep_acked if args.keep_acked is not None else 'default (1000)'},"
          f" {args.repeat} rounds in {wall:.0f} s")
    print(f"bare SQLite WAL synchronous=FULL commit on this disk: p50 {fsync_ms:.3f} ms"
          f" ({1000 / fsync_ms:.0f}/s)")
    for i, (gw, raw) in enumerate(rounds, 1):
        print(f"round {i}: gateway trial {gw.attempts}, {gw.take_calls} take transactions"
              f" ({gw.takes} with rows, {n / gw.takes:.1f} rows each) taking"
              f" {gw.outbox_s['take']:.2f} s, {gw.acks} ack transactions taking"
              f" {gw.outbox_s['ack']:.2f} s; distinct seqs at the subscriber {gw.unique}, outbox"
              f" waiting after {gw.waiting_after}; raw paho distinct payloads {raw.unique}")
        print(f"  CPU s (on CPU / runnable but waiting) during the gateway's drain"
              f" ({gw.acked_s:.2f} s): {_cpu(gw.cpu)}")
        print(f"  CPU s during raw paho's ({raw.arrived_s:.2f} s): {_cpu(raw.cpu)}")
    print()

    def line(what: str, values: list[float]) -> list[object]:
        return [what, *values, _median(values)]

    r_drain = [ratio(g.drain_rate, r.rate) for g, r in rounds]
    r_outage = [ratio(g.outage_rate, r.rate) for g, r in rounds]
    r_ack = [ratio(g.ack_rate, r.ack_rate) for g, r in rounds]
    print_table(
        ["what", *(f"#{i}" for i in range(1, len(rounds) + 1)), "median"],
        [line("backlog commits/s (Engine.door, fsync each)",
              [n / g.commit_s for g, _ in rounds]),
         line("s: broker start -> accepting", [g.broker_ready_s for g, _ in rounds]),
         line("s: broker start -> gateway's first take", [g.connect_s for g, _ in rounds]),
         line("s: broker start -> all arrived", [g.arrived_s for g, _ in rounds]),
         line("s: broker start -> 0 waiting (all PUBACKs)", [g.acked_s for g, _ in rounds]),
         line("events/s gateway, broker start -> all arrived",
              [g.outage_rate for g, _ in rounds]),
         line("events/s gateway, first take -> all arrived",
              [g.drain_rate for g, _ in rounds]),
         line("events/s gateway, first take -> all PUBACKs", [g.ack_rate for g, _ in rounds]),
         line("events/s raw paho, first publish -> all arrived", [r.rate for _, r in rounds]),
         line("events/s raw paho, first publish -> all PUBACKs",
              [r.ack_rate for _, r in rounds]),
         line("ratio gateway/raw, arrivals (drain proper)", r_drain),
         line("ratio gateway/raw, from broker start", r_outage),
         line("ratio gateway/raw, PUBACKs", r_ack)])
    print(f"loadavg at the end {loadavg()}")
    print()
    r = _median(r_drain)
    verdict = "met" if r >= TARGET_RATIO else "MISSED"
    print(f"SUMMARY drain: gateway {_median([g.drain_rate for g, _ in rounds]):.0f} events/s"
          f" from reconnect to last arrival"
          f" ({_median([g.outage_rate for g, _ in rounds]):.0f}/s from broker start), raw paho"
          f" {_median([r.rate for _, r in rounds]):.0f}/s; ratio {r:.2f}"
          f" ({_median(r_outage):.2f} from broker start, {_median(r_ack):.2f} by PUBACKs;"
          f" medians of {len(rounds)}), target >= {TARGET_RATIO}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

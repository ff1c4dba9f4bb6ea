#!/usr/bin/env python3
"""The second path: a panic press to the DC-09 receiver's ACK, beside a raw socket, and what
the DC-09 path costs the MQTT alarm.

What it measures. Everything runs in this process on loopback: a private Mosquitto on
127.0.0.1 with a raw paho MQTT 5 subscriber (QoS 1, as in bench/latency.py), the ARC
simulator (`hw_sim.arc.ArcReceiver`: pysiaalarm, TCP and UDP on one port; account 1234,
AES-256 unless `--no-key`), and the gateway (`gateway.service.Service` on the simulator's
pins, debounce_ms = 0). Two gateways, each with its own state directory kept from block to
block (a restart, not a new store): "dc09 on" has [paths.dc09] for that receiver
(supervision every hour, so that no NULL poll lands in the figures), "dc09 off" has no
[paths] at all. Presses alternate between a normally-open and a normally-closed panic
input, each released before the next press: press, wait for everything the press causes
(the alarm's arrival at the subscriber, its PUBACK recorded in the outbox and, with the
path, its ACK from the receiver taken off the path's queue), release, wait the same way
for the restore, next press. The waits are on Conditions; there are no sleeps.

One sample starts at `time.perf_counter_ns()` just before `SimPanel.press(point)` (the
input edge). It ends:

- press -> DC-09 ACK: when the path's `Dc09Link.send` returned "ack" for the alarm's
  message (the link has read the receiver's ACK frame, decrypted and matched it), timed
  by wrapping `send` on the path's link instance. That is the gateway's own moment of
  delivery, taken in the path's thread: exact, not polled. Two neighbours are printed: the
  delivery hook (`Dc09Path.on_delivered`, which gives escalation its "arc_ack"; it runs
  after the queue row's delete), and the moment the receiver accepted the message
  (`ArcReceiver(on_event=...)`, called in its loop before the ACK is written back).
- press -> MQTT arrival: the subscriber's `on_message` for the alarm, as in
  bench/latency.py.

The raw DC-09 row: a plain socket (TCP with TCP_NODELAY, kept open, or a connected UDP
socket, as the link uses) sends a frame built beforehand with `gateway.dc09.frames`
(same account, receiver, line and key, the same Contact ID data as the gateway's alarm
of the first input, a fresh sequence number each) and reads until the receiver's answer
frame is complete (checked to be the ACK of that sequence afterwards, outside the timing).

The passes alternate in `--rounds` rounds: each round runs one block of each of "dc09
off", "dc09 on" and the raw socket (the order reversed every other round), so that drift in
the machine's load falls on all three alike. Each gateway block starts its gateway, makes
`--warmup` uncounted presses, the block's counted presses, and stops it; a raw block makes
`--warmup` uncounted sends first. Only ratios from one run mean anything: compare them,
not milliseconds.

Targets (the issue): press -> DC-09 ACK p99 under 2x the raw socket's p99; MQTT
press -> arrival with the path enabled under 1.1x the figure without it.

    .venv/bin/python bench/dc09_latency.py [--presses 1000] [--transport tcp|udp]
        [--key | --no-key] [--rounds 10] [--warmup 5] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    PANIC_INPUTS,
    CpuTime,
    OutboxProbe,
    Percentiles,
    Subscriber,
    cpu_time,
    loadavg,
    log_to_file,
    machine_info,
    print_machine,
    print_table,
    ratio,
    unlog,
    write_config,
)

from gateway.config import load_config
from gateway.dc09.contactid import NEW, PANIC, ContactId
from gateway.dc09.frames import Identity, ReplyBuffer, build_message, key_from_text, parse_reply
from gateway.dc09.link import Outcome
from gateway.dc09.path import Dc09Path
from gateway.service import Service
from gateway.store import Outbox
from gateway.store.paths import PathRow
from hw_sim.arc import ArcReceiver, write_key_file
from hw_sim.broker import Mosquitto
from hw_sim.gpio import SimPanel

SITE = "bench-school"
WAIT_S = 10.0
ACCOUNT, RECEIVER, LINE = "1234", "1", "2"
KEY_TEXT = "0123456789ABCDEF0123456789ABCDEF"
"""AES-256: the receivers' convention takes the 32 characters' bytes as the key."""
ZONES = {"gate-panic": 7, "office-panic": 8}
PARTITION = 1
#: Sequence numbers of the raw sends: 9000-9999, where the gateway numbers no event.
RAW_SEQ_FIRST = 9000
TARGET_DC09_RATIO = 2.0
TARGET_MQTT_RATIO = 1.1
GATEWAYS = {"on": "gw-dc09-on", "off": "gw-dc09-off"}


# -- the config -----------------------------------------------------------------------------


def gateway_config(tmp: Path, broker_port: int, arc_port: int, *, dc09: bool, transport: str,
                   key: bool) -> Path:
    gateway = GATEWAYS["on" if dc09 else "off"]
    cfg = write_config(tmp / gateway, broker_port=broker_port, inputs=PANIC_INPUTS,
                       gateway=gateway, site=SITE, debounce_ms=0)
    if not dc09:
        return cfg
    zones = ", ".join(f"{k} = {v}" for k, v in ZONES.items())
    lines = ["", "[paths]", "", "[paths.dc09]", 'host = "127.0.0.1"', f"port = {arc_port}",
             f'transport = "{transport}"', f'account = "{ACCOUNT}"',
             f'receiver = "{RECEIVER}"', f'line = "{LINE}"', "supervision_s = 3600",
             f"partition = {PARTITION}", f"zones = {{ {zones} }}"]
    if key:
        key_file = write_key_file(tmp / "dc09.key", KEY_TEXT)
        lines.append(f'key_file = "{key_file}"')
    with cfg.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return cfg


# -- timing the DC-09 path from outside -------------------------------------------------------


@dataclass
class _Send:
    start_ns: int
    end_ns: int
    outcome: Outcome


class Dc09Probe:
    """Timestamps a running DC-09 path without changing its code: instance attributes
    shadow `Dc09Link.send` on the path's link, `Outbox.path_take` on the store, and the
    path's `on_delivered` hook (each wrapper calls the real one; about a microsecond)."""

    def __init__(self, dc09: Dc09Path, outbox: Outbox) -> None:
        self._cond = threading.Condition()
        self.sends: dict[int, _Send] = {}
        """The last send of each wire sequence number."""
        self.taken: dict[int, int] = {}
        """When `path_take` first returned each wire sequence number."""
        self.delivered: dict[int, tuple[int, int]] = {}
        """Outbox seq -> (when the delivery hook was called, wire seq)."""
        self.n_delivered = 0
        self.n_answered = 0
        """Sends answered ACK (events and polls)."""
        link = dc09.link
        real_send = link.send
        real_take = outbox.path_take
        real_hook = dc09.on_delivered

        def send(token: str, data: str, seq: int, *,
                 wall: Callable[[], float] | None = None) -> Outcome:
            t0 = time.perf_counter_ns()
            outcome = real_send(token, data, seq, wall=wall)
            t1 = time.perf_counter_ns()
            with self._cond:
                self.sends[seq] = _Send(t0, t1, outcome)
                if outcome.kind == "ack":
                    self.n_answered += 1
                    self._cond.notify_all()
            return outcome

        def path_take(path: str, limit: int, skip: set[int]) -> list[PathRow]:
            rows = real_take(path, limit, skip)
            t = time.perf_counter_ns()
            for r in rows:
                self.taken.setdefault(r.wire_seq, t)
            return rows

        def on_delivered(row: PathRow) -> None:
            t = time.perf_counter_ns()
            if real_hook is not None:
                real_hook(row)
            with self._cond:
                if row.seq is not None:
                    self.delivered[row.seq] = (t, row.wire_seq)
                self.n_delivered += 1
                self._cond.notify_all()

        # mypy: assigning to a method is deliberate here (a probe, not a patch of the class).
        link.send = send  # type: ignore[method-assign]
        outbox.path_take = path_take  # type: ignore[method-assign]
        dc09.on_delivered = on_delivered

    def wait_delivered(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.n_delivered >= n, timeout)

    def wait_answered(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.n_answered >= n, timeout)


class ArcTimes:
    """When the receiver accepted each message (its `on_event`, on its loop thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_seq: dict[str, int] = {}

    def on_event(self, event: dict[str, Any]) -> None:
        t = time.perf_counter_ns()
        with self._lock:
            self._by_seq[str(event.get("sequence"))] = t

    def at(self, wire_seq: int) -> int | None:
        with self._lock:
            return self._by_seq.get(f"{wire_seq:04d}")


# -- the passes -----------------------------------------------------------------------------

DC09_STAGES = ("press -> commit start", "commit (fsync)", "commit end -> taken by the path",
               "taken -> link send starts", "link send -> ACK back (frame, AES, receiver)",
               "  of which the link's round trip (sent -> reply matched)",
               "ACK -> delivery hook (queue row deleted)")

MQTT_STAGES = ("press -> commit start", "commit (fsync)", "commit end -> taken by the uplink",
               "taken -> arrival")


@dataclass
class Samples:
    """Everything measured, in ns, by row name."""

    rows: dict[str, list[int]] = field(default_factory=dict)
    cpu: dict[str, CpuTime] = field(default_factory=dict)
    """This process's CPU time per pass, summed over its blocks."""

    def add(self, name: str, value: int) -> None:
        self.rows.setdefault(name, []).append(value)

    def add_cpu(self, name: str, c: CpuTime) -> None:
        old = self.cpu.get(name, CpuTime(0, 0))
        self.cpu[name] = CpuTime(old.run_ns + c.run_ns, old.wait_ns + c.wait_ns)


def wait_online(sub: Subscriber, topic: str, seen: int, gateway: str) -> None:
    """Until a status message after the first `seen` says "online" (this start's)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        got = sub.received(topic)
        if any(json.loads(m).get("state") == "online" for _, m in got[seen:]):
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"gateway {gateway} did not come online within {WAIT_S} s")
        sub.wait_count(topic, len(got) + 1, left)


def gateway_block(tmp: Path, broker: Mosquitto, sub: Subscriber, arc_port: int, *,
                  arc_times: ArcTimes, out: Samples, dc09: bool, transport: str, key: bool,
                  presses: int, warmup: int) -> None:
    """Start one gateway, press its buttons `warmup + presses` times, stop it."""
    label = "on" if dc09 else "off"
    gateway = GATEWAYS[label]
    cfg_path = gateway_config(tmp, broker.port, arc_port, dc09=dc09, transport=transport,
                              key=key)
    root = f"alarmgw/v1/{SITE}/{gateway}"
    event_topic, status_topic = f"{root}/event", f"{root}/status"
    handler = log_to_file(tmp / f"{gateway}.log")
    service = Service(load_config(cfg_path))
    try:
        probe = OutboxProbe(service.outbox)
        seen_status = sub.count(status_topic)
        seen_events = sub.count(event_topic)
        service.start()
        wait_online(sub, status_topic, seen_status, gateway)
        dprobe: Dc09Probe | None = None
        if dc09:
            second = service.second
            assert second is not None
            dprobe = Dc09Probe(second.dc09, service.outbox)
            # The path's first exchange (its NULL poll at start): connected and answered.
            # That send may have begun before the probe was in place, so the path's own
            # count is read too, between short waits (start-up only, nothing is timed).
            deadline = time.monotonic() + WAIT_S
            while not second.dc09.state["acked"] and not dprobe.wait_answered(1, 0.05):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the DC-09 path of {gateway} got no ACK; see {tmp}")
        panel = service.sim
        assert isinstance(panel, SimPanel)
        points = [inp["id"] for inp in PANIC_INPUTS]
        n_events = seen_events
        n_acked = probe.acked
        n_dc09 = 0
        cpu0 = cpu_time(os.getpid())
        for i in range(warmup + presses):
            point = points[i % len(points)]
            for active in (True, False):
                t0 = time.perf_counter_ns()
                if active:
                    panel.press(point)
                else:
                    panel.release(point)
                n_events += 1
                n_acked += 1
                if not sub.wait_count(event_topic, n_events, WAIT_S):
                    raise RuntimeError(f"event {n_events} did not arrive within {WAIT_S} s")
                if not probe.wait_acked(n_acked, WAIT_S):
                    raise RuntimeError(f"PUBACK {n_acked} not recorded within {WAIT_S} s")
                if dprobe is not None:
                    n_dc09 += 1
                    if not dprobe.wait_delivered(n_dc09, WAIT_S):
                        raise RuntimeError(f"DC-09 ACK {n_dc09} not in within {WAIT_S} s")
                t_arr, payload = sub.received(event_topic)[n_events - 1]
                doc = json.loads(payload)
                expected = "alarm" if active else "restore"
                if doc["type"] != expected or doc["point"]["id"] != point:
                    raise RuntimeError(f"expected {expected} of {point}, got {doc['type']}"
                                       f" of {doc['point']['id']}")
                if i < warmup:
                    continue
                what = "press" if active else "release"
                out.add(f"mqtt {label} {what}", t_arr - t0)
                seq = int(doc["seq"])
                if active:
                    for name, v in zip(MQTT_STAGES, [
                            probe.commit_start[seq] - t0,
                            probe.commit_end[seq] - probe.commit_start[seq],
                            probe.take_end[seq] - probe.commit_end[seq],
                            t_arr - probe.take_end[seq]], strict=True):
                        out.add(f"mqtt stage {label} {name}", v)
                if dprobe is None:
                    continue
                t_hook, wire = dprobe.delivered[seq]
                send = dprobe.sends[wire]
                if send.outcome.kind != "ack":
                    raise RuntimeError(f"DC-09 message {wire:04d}: {send.outcome.detail}")
                out.add(f"dc09 ack {what}", send.end_ns - t0)
                out.add(f"dc09 hook {what}", t_hook - t0)
                t_arc = arc_times.at(wire)
                if t_arc is not None and t0 < t_arc <= send.end_ns:
                    out.add(f"dc09 arc {what}", t_arc - t0)
                taken = dprobe.taken.pop(wire)
                if active:
                    stages = [probe.commit_start[seq] - t0,
                              probe.commit_end[seq] - probe.commit_start[seq],
                              taken - probe.commit_end[seq],
                              send.start_ns - taken,
                              send.end_ns - send.start_ns,
                              int((send.outcome.rtt_s or 0.0) * 1e9),
                              t_hook - send.end_ns]
                    for name, v in zip(DC09_STAGES, stages, strict=True):
                        out.add(f"stage {name}", v)
        cpu = cpu_time(os.getpid()) - cpu0
        out.add_cpu(f"gateway dc09 {label}", cpu)
    finally:
        service.stop()
        unlog(handler)


def alarm_data() -> str:
    """The data block of the gateway's alarm for the first input (as `contactid` makes it)."""
    return ContactId(NEW, PANIC, PARTITION, ZONES[PANIC_INPUTS[0]["id"]]).data(ACCOUNT)


class RawClient:
    """A plain socket to the receiver: send a finished frame, read the answer frame."""

    def __init__(self, port: int, transport: str) -> None:
        self.transport = transport
        kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.settimeout(WAIT_S)
        if transport == "tcp":
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = ReplyBuffer()

    def exchange(self, frame: bytes) -> tuple[int, bytes]:
        """Send `frame`; the time the answer was complete (perf_counter_ns) and the answer."""
        if self.transport == "udp":
            self.sock.send(frame)
            data = self.sock.recv(4096)
            return time.perf_counter_ns(), data
        self.sock.sendall(frame)
        while True:
            data = self.sock.recv(4096)
            if not data:
                raise RuntimeError("the receiver closed the raw connection")
            frames = self.buffer.feed(data)
            if frames:
                return time.perf_counter_ns(), frames[0]

    def close(self) -> None:
        self.sock.close()


def raw_block(arc_port: int, out: Samples, ident: Identity, *, transport: str,
              n: int, warmup: int, seq0: int) -> int:
    """`warmup + n` raw exchanges, frames built first; returns the next sequence number."""
    data = alarm_data()
    seqs = [RAW_SEQ_FIRST + (seq0 + i) % 1000 for i in range(warmup + n)]
    now = datetime.now(UTC)
    frames = [build_message("ADM-CID", s, ident, data, now) for s in seqs]
    client = RawClient(arc_port, transport)
    cpu0 = cpu_time(os.getpid())
    try:
        for i, (seq, frame) in enumerate(zip(seqs, frames, strict=True)):
            t0 = time.perf_counter_ns()
            t1, answer = client.exchange(frame)
            reply = parse_reply(answer, ident)
            if reply.kind != "ACK" or reply.seq != seq:
                raise RuntimeError(f"raw message {seq:04d}: answered {answer!r}")
            if i >= warmup:
                out.add("raw", t1 - t0)
    finally:
        client.close()
    cpu = cpu_time(os.getpid()) - cpu0
    out.add_cpu("raw socket", cpu)
    return seq0 + warmup + n


@contextlib.contextmanager
def arc_thread(key: bool, arc_times: ArcTimes) -> Iterator[int]:
    """The receiver in this process (its asyncio loop in a thread); yields its port."""
    with ArcReceiver({ACCOUNT: KEY_TEXT if key else None}, on_event=arc_times.on_event) as arc:
        yield arc.port


@contextlib.contextmanager
def arc_process(tmp: Path, key: bool) -> Iterator[int]:
    """The same receiver as a child process (`python -m hw_sim.arc`), so that its parsing
    does not share this process's GIL, as a real centre's would not; yields its port."""
    log = tmp / "arc.log"
    argv = [sys.executable, "-m", "hw_sim.arc", "--port", "0", "--account", ACCOUNT]
    if key:
        argv += ["--key", KEY_TEXT]
    with log.open("wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            first = log.read_text(errors="replace").split("\n", 1)[0]
            m = re.match(r"ARC listening on 127\.0\.0\.1:(\d+) .*accounts", first)
            if m is not None:
                yield int(m[1])
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the ARC process did not start: {first!r}")
            time.sleep(0.02)  # start-up only: the child says where it listens in its log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presses", type=int, default=1000,
                    help="counted presses per gateway, and raw sends (default 1000)")
    ap.add_argument("--transport", choices=("tcp", "udp"), default="tcp",
                    help="DC-09 transport, for the path and the raw socket (default tcp)")
    ap.add_argument("--key", action=argparse.BooleanOptionalAction, default=True,
                    help="AES-256 encrypted messages (default) or, --no-key, plain ones")
    ap.add_argument("--rounds", type=int, default=10,
                    help="blocks of each pass, alternated (default 10)")
    ap.add_argument("--warmup", type=int, default=5,
                    help="uncounted presses (and raw sends) at the start of each block"
                         " (default 5)")
    ap.add_argument("--arc-process", action="store_true",
                    help="run the receiver as a child process (python -m hw_sim.arc) instead"
                         " of a thread of this one; no 'receiver accepted' row then")
    ap.add_argument("--json", nargs="?", const="-", metavar="FILE",
                    help="also write the figures as JSON to FILE (no FILE: to stdout, last)")
    args = ap.parse_args(argv)
    rounds = max(1, min(args.rounds, args.presses))

    print_machine()
    ident = Identity(ACCOUNT, RECEIVER, LINE, key_from_text(KEY_TEXT) if args.key else None)
    out = Samples()
    arc_times = ArcTimes()
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="alarmgw-bench-dc09-") as tmpname:
        tmp = Path(tmpname)
        arc_cm = (arc_process(tmp, args.key) if args.arc_process
                  else arc_thread(args.key, arc_times))
        with Mosquitto(tmp / "broker") as broker, arc_cm as arc_port:
            sub = Subscriber(broker.host, broker.port,
                             [f"alarmgw/v1/{SITE}/+/event", f"alarmgw/v1/{SITE}/+/status"],
                             "bench-dc09-subscriber")
            sub.start()
            try:
                seq = 0
                for r, n in enumerate(split(args.presses, rounds)):
                    order = ["off", "on", "raw"] if r % 2 == 0 else ["raw", "on", "off"]
                    for what in order:
                        if what == "raw":
                            seq = raw_block(arc_port, out, ident, transport=args.transport,
                                            n=n, warmup=args.warmup, seq0=seq)
                        else:
                            gateway_block(tmp, broker, sub, arc_port, arc_times=arc_times,
                                          out=out, dc09=what == "on", transport=args.transport,
                                          key=args.key, presses=n, warmup=args.warmup)
            finally:
                sub.stop()
    wall = time.monotonic() - t_start

    p = {name: Percentiles.of_ns(v) for name, v in out.rows.items()}
    empty = Percentiles.of_ns([])

    def get(name: str) -> Percentiles:
        return p.get(name, empty)

    enc = "AES-256" if args.key else "plain"
    rows: list[list[object]] = []

    def row(label: str, q: Percentiles) -> None:
        if q.n:
            rows.append([label, q.n, q.p50, q.p90, q.p99, q.max])

    row("dc09 on: press -> DC-09 ACK at the gateway's link", get("dc09 ack press"))
    row("dc09 on: press -> delivery hook (escalation's arc_ack)", get("dc09 hook press"))
    row("dc09 on: press -> receiver accepted (ArcReceiver on_event)", get("dc09 arc press"))
    row("dc09 on: release -> DC-09 ACK (restore)", get("dc09 ack release"))
    row(f"raw socket: pre-built frame -> ACK ({args.transport}, {enc})", get("raw"))
    row("dc09 off: press -> MQTT alarm arrival", get("mqtt off press"))
    row("dc09 on:  press -> MQTT alarm arrival", get("mqtt on press"))
    row("dc09 off: release -> MQTT restore arrival", get("mqtt off release"))
    row("dc09 on:  release -> MQTT restore arrival", get("mqtt on release"))
    print()
    where = "a child process" if args.arc_process else "a thread of this process"
    print(f"latency in ms ({args.transport}, {enc}, receiver in {where}, debounce 0,"
          f" {rounds} rounds alternating off/on/raw, warm-up {args.warmup} per block not"
          f" counted, run {wall:.1f} s)")
    print_table(["what", "n", "p50", "p90", "p99", "max"], rows)
    print()
    print("where the DC-09 alarm's time goes (ms):")
    print_table(["stage", "n", "p50", "p90", "p99", "max"],
                [[name, q.n, q.p50, q.p90, q.p99, q.max] for name, q in
                 ((s, get(f"stage {s}")) for s in DC09_STAGES)])
    print()
    print("where the MQTT alarm's time goes, dc09 off / on (ms):")
    stage_rows: list[list[object]] = []
    for s in MQTT_STAGES:
        a, b = get(f"mqtt stage off {s}"), get(f"mqtt stage on {s}")
        stage_rows.append([s, a.n, f"{a.p50:.3f} / {b.p50:.3f}", f"{a.p90:.3f} / {b.p90:.3f}",
                           f"{a.p99:.3f} / {b.p99:.3f}"])
    print_table(["stage", "n", "p50 off / on", "p90 off / on", "p99 off / on"], stage_rows)
    print()
    print("this process's CPU s per pass (on CPU / runnable but waiting for a CPU):"
          + ",".join(f" {k} {c.run_ns / 1e9:.2f}/{c.wait_ns / 1e9:.2f}"
                     for k, c in out.cpu.items())
          + f"; loadavg at the end {loadavg()}")
    print()
    ack, raw = get("dc09 ack press"), get("raw")
    off, on = get("mqtt off press"), get("mqtt on press")
    d50, d99 = ratio(ack.p50, raw.p50), ratio(ack.p99, raw.p99)
    m50, m99 = ratio(on.p50, off.p50), ratio(on.p99, off.p99)
    d_ok = "met" if d99 < TARGET_DC09_RATIO else "MISSED"
    m_ok = "met" if m99 < TARGET_MQTT_RATIO else "MISSED"
    m50_ok = "met" if m50 < TARGET_MQTT_RATIO else "MISSED"
    print(f"SUMMARY dc09: press -> ACK p50 {ack.p50:.2f} ms p99 {ack.p99:.2f} ms max"
          f" {ack.max:.2f} ms; raw socket p50 {raw.p50:.2f} ms p99 {raw.p99:.2f} ms max"
          f" {raw.max:.2f} ms; ratio p50 {d50:.2f}x p99 {d99:.2f}x"
          f" (target p99 < {TARGET_DC09_RATIO:g}x: {d_ok})")
    print(f"SUMMARY mqtt: press -> arrival, dc09 off p50 {off.p50:.2f} ms p99 {off.p99:.2f} ms;"
          f" dc09 on p50 {on.p50:.2f} ms p99 {on.p99:.2f} ms; ratio p50 {m50:.2f}x"
          f" ({m50_ok}) p99 {m99:.2f}x ({m_ok}) (target < {TARGET_MQTT_RATIO:g}x)")

    if args.json is not None:
        doc = {
            "machine": machine_info(),
            "args": {"presses": args.presses, "transport": args.transport, "key": args.key,
                     "rounds": rounds, "warmup": args.warmup,
                     "arc_process": args.arc_process},
            "run_s": round(wall, 1),
            "ms": {name: vars(q) for name, q in sorted(p.items())},
            "ratios": {"dc09_ack_vs_raw": {"p50": d50, "p99": d99},
                       "mqtt_on_vs_off": {"p50": m50, "p99": m99}},
            "targets": {"dc09_p99_ratio_below": TARGET_DC09_RATIO, "dc09": d_ok,
                        "mqtt_ratio_below": TARGET_MQTT_RATIO, "mqtt_p50": m50_ok,
                        "mqtt_p99": m_ok},
            "cpu_s": {k: {"run": c.run_ns / 1e9, "wait": c.wait_ns / 1e9}
                      for k, c in out.cpu.items()},
        }
        text = json.dumps(doc, indent=2) + "\n"
        if args.json == "-":
            print(text, end="")
        else:
            Path(args.json).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

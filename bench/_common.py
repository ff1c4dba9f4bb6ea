"""Shared pieces of the benchmarks: machine facts, percentiles, a raw paho subscriber and
publisher, an outbox probe, a config writer and a bare SQLite fsync reference.

Nothing here is a test: the benchmarks print figures and never judge them. Every helper
that starts something (a paho network thread, a file handler) has a matching stop.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import platform
import select
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.store import EventDraft, Lane, Outbox, Row
from hw_sim.broker import find_mosquitto

REPO = Path(__file__).resolve().parents[1]

# -- the machine ---------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """What docs/performance.md records about the machine a figure came from."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        out = subprocess.run([str(find_mosquitto()), "-h"], capture_output=True, text=True,
                             timeout=5, check=False).stdout
        mosq = out.splitlines()[0].strip() if out else "unknown"
    except (OSError, FileNotFoundError, subprocess.TimeoutExpired):
        mosq = "unknown"
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "gateway",
                                "hw_sim"], capture_output=True, text=True, timeout=5,
                               check=True).stdout.strip()
        tree = f"{rev}{' + uncommitted changes in gateway/ or hw_sim/' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        tree = "not a git checkout"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "code": tree,
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "paho-mqtt": paho.mqtt.__version__,
        "broker": mosq,
        "loadavg": loadavg(),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def print_machine() -> None:
    info = machine_info()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))


# -- figures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles of a sample, in milliseconds."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of_ns(cls, samples_ns: Sequence[int]) -> Percentiles:
        s = sorted(samples_ns)
        if not s:
            return cls(0, math.nan, math.nan, math.nan, math.nan)

        def rank(q: float) -> float:
            return s[max(0, math.ceil(q * len(s)) - 1)] / 1e6

        return cls(len(s), rank(0.50), rank(0.90), rank(0.99), s[-1] / 1e6)


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else math.nan


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table; floats get 3 decimals."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.3f}"
        return str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))


# -- config ------------------------------------------------------------------------------------

PANIC_INPUTS: list[dict[str, Any]] = [
    {"id": "gate-panic", "name": "南门门卫室一键报警", "location": "South gate", "kind": "panic",
     "gpio": 17, "contact": "NO", "pull": "up"},
    {"id": "office-panic", "name": "行政楼值班室", "location": "Admin building", "kind": "panic",
     "gpio": 27, "contact": "NC", "pull": "up"},
]


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)


def write_config(directory: Path, *, broker_port: int, inputs: Sequence[dict[str, Any]],
                 gateway: str, broker: dict[str, Any] | None = None,
                 store: dict[str, Any] | None = None, debounce_ms: int | None = None,
                 health_interval_s: float | None = None, site: str = "bench-school") -> Path:
    """Write a simulator config (gpio backend "mock", plaintext loopback broker) in
    `directory`, with state/ and run/ beside it; keys not given keep the product defaults."""
    directory.mkdir(parents=True, exist_ok=True)
    b: dict[str, Any] = {"host": "127.0.0.1", "port": broker_port, "plaintext": True}
    b.update(broker or {})
    lines = ["[gateway]", f"site = {_toml(site)}", f"id = {_toml(gateway)}",
             'state_dir = "state"', 'runtime_dir = "run"', "", "[broker]"]
    lines += [f"{k} = {_toml(v)}" for k, v in b.items()]
    if store:
        lines += ["", "[store]"] + [f"{k} = {_toml(v)}" for k, v in store.items()]
    lines += ["", "[clock]", 'sync_source = "assume-synced"']
    if health_interval_s is not None:
        lines += ["", "[health]", f"interval_s = {_toml(float(health_interval_s))}"]
    lines += ["", "[gpio]", 'backend = "mock"']
    if debounce_ms is not None:
        lines.append(f"debounce_ms = {debounce_ms}")
    for inp in inputs:
        lines += ["", "[[inputs]]"] + [f"{k} = {_toml(v)}" for k, v in inp.items()]
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def log_to_file(path: Path) -> logging.Handler:
    """Send the gateway's log (INFO, as `alarmgw run` logs) to a file instead of the
    terminal, so the formatting and write cost stays in the figures but off the screen."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def unlog(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()


# -- raw paho clients ------------------------------------------------------------------------


def _connect_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    return props


class Subscriber:
    """A raw paho MQTT 5 subscriber (QoS 1) that timestamps every message on arrival.

    `on_message` takes `time.perf_counter_ns()` first and appends (t_ns, payload) per topic.
    A waiter registers the count it waits for, and only that count wakes it, so a
    10,000-message drain does not wake the main thread 10,000 times.
    """

    def __init__(self, host: str, port: int, topics: Sequence[str], client_id: str) -> None:
        self._cond = threading.Condition()
        self._by_topic: dict[str, list[tuple[int, bytes]]] = {}
        self._want: tuple[str, int] | None = None
        self._subscribed = threading.Event()
        self._topics = list(topics)
        self.host = host
        self.port = port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; returns once the SUBACK is in."""
        self.client.connect(self.host, self.port, keepalive=60, clean_start=True,
                            properties=_connect_props())
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"subscriber not subscribed to {self.host}:{self.port}")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None) -> None:
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in self._topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      rcs: list[ReasonCode], props: Properties | None) -> None:
        if not any(rc.is_failure for rc in rcs):
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        t = time.perf_counter_ns()
        with self._cond:
            got = self._by_topic.setdefault(msg.topic, [])
            got.append((t, bytes(msg.payload)))
            if self._want is not None and self._want[0] == msg.topic \
                    and len(got) >= self._want[1]:
                self._cond.notify_all()

    def count(self, topic: str) -> int:
        with self._cond:
            return len(self._by_topic.get(topic, ()))

    def wait_count(self, topic: str, n: int, timeout: float) -> bool:
        """Block until `topic` has had at least `n` messages, or `timeout` seconds."""
        with self._cond:
            self._want = (topic, n)
            try:
                return self._cond.wait_for(lambda: len(self._by_topic.get(topic, ())) >= n,
                                           timeout)
            finally:
                self._want = None

    def received(self, topic: str) -> list[tuple[int, bytes]]:
        with self._cond:
            return list(self._by_topic.get(topic, ()))


class Publisher:
    """A raw paho MQTT 5 publisher with paho's own network thread (`loop_start`);
    counts PUBACKs and lets a waiter block on a count."""

    def __init__(self, host: str, port: int, client_id: str, max_inflight: int = 20) -> None:
        self._cond = threading.Condition()
        self._acks = 0
        self._want: int | None = None
        self._connected = threading.Event()
        self.host = host
        self.port = port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.receive_maximum: int | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.client.connect(self.host, self.port, keepalive=60, clean_start=True,
                            properties=_connect_props())
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            raise TimeoutError(f"publisher not connected to {self.host}:{self.port}")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None) -> None:
        rmax = getattr(props, "ReceiveMaximum", None) if props else None
        self.receive_maximum = int(rmax) if rmax else None
        self._connected.set()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode,
                    props: Properties) -> None:
        with self._cond:
            self._acks += 1
            if self._want is not None and self._acks >= self._want:
                self._cond.notify_all()

    @property
    def acks(self) -> int:
        with self._cond:
            return self._acks

    def publish(self, topic: str, payload: bytes) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        props.PayloadFormatIndicator = 1
        info = self.client.publish(topic, payload, qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"paho publish failed: {mqtt.error_string(info.rc)}")

    def wait_acks(self, n: int, timeout: float) -> bool:
        with self._cond:
            self._want = n
            try:
                return self._cond.wait_for(lambda: self._acks >= n, timeout)
            finally:
                self._want = None


# -- the outbox probe ----------------------------------------------------------------------


class OutboxProbe:
    """Timestamps the outbox calls of a running gateway, without changing the gateway.

    It wraps three methods of one `Outbox` instance (instance attributes shadow the class's
    methods; the gateway's code is untouched): `commit_event` (engine thread: start and end,
    keyed by the seq it returns), `take` (uplink thread: end, keyed by each row's seq) and
    `ack` (uplink thread: rows acknowledged so far, and when). The wrappers cost about a
    microsecond per call.
    """

    def __init__(self, outbox: Outbox, *, keep_payloads: bool = False) -> None:
        """`keep_payloads`: keep every taken row's payload by seq (in `payloads`)."""
        self.outbox = outbox
        self.payloads: dict[int, bytes] = {}
        self._cond = threading.Condition()
        self.commit_start: dict[int, int] = {}
        self.commit_end: dict[int, int] = {}
        self.take_end: dict[int, int] = {}
        self.takes: list[tuple[int, int]] = []
        """(t_ns, rows) of every take that returned rows."""
        self.acked = 0
        self.ack_times: list[tuple[int, int]] = []
        """(t_ns, acked total) after every ack call."""
        self.take_calls = 0
        """Every take, with or without rows."""
        self.take_ns = 0
        self.ack_ns = 0
        """Wall time spent inside take and ack, in ns."""
        self._want: int | None = None
        real_commit = outbox.commit_event
        real_take = outbox.take
        real_ack = outbox.ack

        def commit_event(lane: Lane, make: Callable[[int], EventDraft],
                         properties: dict[str, Any] | None = None,
                         **kw: Any) -> tuple[int, EventDraft]:
            t0 = time.perf_counter_ns()
            seq, draft = real_commit(lane, make, properties, **kw)
            t1 = time.perf_counter_ns()
            self.commit_start[seq] = t0
            self.commit_end[seq] = t1
            return seq, draft

        def take(limit: int, max_lane: Lane = Lane.BULK) -> list[Row]:
            t0 = time.perf_counter_ns()
            rows = real_take(limit, max_lane)
            t = time.perf_counter_ns()
            self.take_calls += 1
            self.take_ns += t - t0
            if rows:
                self.takes.append((t, len(rows)))
                for r in rows:
                    if r.seq is not None:
                        self.take_end.setdefault(r.seq, t)
                        if keep_payloads:
                            self.payloads.setdefault(r.seq, r.payload)
            return rows

        def ack(rowids: list[int]) -> int:
            t0 = time.perf_counter_ns()
            done = real_ack(rowids)
            t = time.perf_counter_ns()
            self.ack_ns += t - t0
            with self._cond:
                self.acked += done
                self.ack_times.append((t, self.acked))
                if self._want is not None and self.acked >= self._want:
                    self._cond.notify_all()
            return done

        # mypy: assigning to a method is deliberate here (a probe, not a patch of the class).
        outbox.commit_event = commit_event  # type: ignore[method-assign]
        outbox.take = take  # type: ignore[method-assign]
        outbox.ack = ack  # type: ignore[method-assign]

    def wait_acked(self, n: int, timeout: float) -> bool:
        """Block until the uplink has recorded `n` PUBACKs in the outbox, or `timeout`."""
        with self._cond:
            self._want = n
            try:
                return self._cond.wait_for(lambda: self.acked >= n, timeout)
            finally:
                self._want = None

    def time_acked(self, n: int) -> int | None:
        """When the acked total first reached `n` (perf_counter_ns), if it did."""
        with self._cond:
            for t, total in self.ack_times:
                if total >= n:
                    return t
        return None


# -- CPU accounting -----------------------------------------------------------------------


@dataclass(frozen=True)
class CpuTime:
    """From /proc/PID/task/TID/schedstat: time on a CPU and time runnable but waiting for
    one (CPU contention), in ns."""

    run_ns: int
    wait_ns: int

    def __sub__(self, other: CpuTime) -> CpuTime:
        return CpuTime(self.run_ns - other.run_ns, self.wait_ns - other.wait_ns)


def cpu_time(pid: int, tid: int | None = None) -> CpuTime:
    """CPU time of one thread (`tid`) or summed over the live threads of process `pid`."""
    tasks = [Path(f"/proc/{pid}/task/{tid}")] if tid is not None else \
        list(Path(f"/proc/{pid}/task").iterdir())
    run = wait = 0
    for task in tasks:
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue  # the thread ended while we looked
        run += int(fields[0])
        wait += int(fields[1])
    return CpuTime(run, wait)


def thread_id(name: str) -> int | None:
    """The kernel thread id of this process's Python thread called `name`."""
    for t in threading.enumerate():
        if t.name == name:
            return t.native_id
    return None


# -- the disk reference --------------------------------------------------------------------


def sqlite_full_commit_ns(directory: Path, n: int, payload_bytes: int) -> list[int]:
    """Time `n` bare SQLite commits (WAL, synchronous=FULL, one ~payload-sized row each) in
    `directory`: the disk's floor for one durably committed event."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-reference.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    samples: list[int] = []
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        blob = b"x" * payload_bytes
        for _ in range(n):
            t0 = time.perf_counter_ns()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (payload) VALUES (?)", (blob,))
            db.execute("COMMIT")
            samples.append(time.perf_counter_ns() - t0)
    finally:
        db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return samples


# -- a subscriber in its own process -------------------------------------------------------

_CHILD = """
import sys
sys.path.insert(0, {bench!r})
from _common import _subscriber_child
sys.exit(_subscriber_child({host!r}, {port!r}, {topic!r}, {count!r}))
"""


def _subscriber_child(host: str, port: int, topic: str, count: int) -> int:
    """The child's side of `SubscriberProcess`: say "ready"; on a line from stdin subscribe
    and say "subscribed"; when `count` messages have arrived say "done COUNT UNIQUE T_FIRST_NS
    T_LAST_NS"; exit on stdin EOF."""
    print("ready", flush=True)
    if not sys.stdin.readline():
        return 1
    sub = Subscriber(host, port, [topic], f"bench-subscriber-{os.getpid()}")
    sub.start()
    eof = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        eof.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("subscribed", flush=True)
    try:
        while not sub.wait_count(topic, count, 0.2):
            if eof.is_set():
                return 1
        got = sub.received(topic)[:count]
        print(f"done {len(got)} {_unique_seqs(got)} {got[0][0]} {got[-1][0]}", flush=True)
        eof.wait()
    finally:
        sub.stop()
    return 0


def _unique_seqs(got: Sequence[tuple[int, bytes]]) -> int:
    """Distinct event `seq`s among payloads; -1 when some payload is not an event."""
    seqs: set[Any] = set()
    for _, payload in got:
        try:
            seqs.add(json.loads(payload).get("seq"))
        except (ValueError, AttributeError):
            seqs.add(None)
    return len(seqs) if None not in seqs else -1


@dataclass(frozen=True)
class Arrivals:
    count: int
    unique_seqs: int
    """Distinct `seq` values among the payloads (-1: payloads are not events)."""
    first_ns: int
    last_ns: int
    """`time.perf_counter_ns()` in the child: CLOCK_MONOTONIC, the same clock as ours."""


class SubscriberProcess:
    """A raw paho subscriber (QoS 1) in a child Python process, so that its receiving does
    not share a GIL with what is measured. Its timestamps are CLOCK_MONOTONIC, like ours.

    The child starts (and imports) at construction and connects only at `connect()`, so
    that connecting right after a broker start takes milliseconds, not an interpreter start.
    """

    def __init__(self, host: str, port: int, topic: str, count: int) -> None:
        code = _CHILD.format(bench=str(Path(__file__).parent), host=host, port=port,
                             topic=topic, count=count)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self._expect("ready", 30.0)

    def _expect(self, word: str, timeout: float) -> list[str]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().split() if ready else []
        if not line or line[0] != word:
            self.stop()
            raise RuntimeError(f"subscriber process: expected {word!r} within {timeout} s,"
                               f" got {line!r}")
        return line

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def connect(self) -> None:
        """Connect and subscribe; returns once the SUBACK is in."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self._expect("subscribed", 10.0)

    def wait(self, timeout: float) -> Arrivals:
        """Block until the child has every message it waits for (RuntimeError after
        `timeout` seconds)."""
        line = self._expect("done", timeout)
        return Arrivals(*(int(x) for x in line[1:5]))

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(10.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class InProcessSubscriber:
    """`SubscriberProcess`'s interface over a `Subscriber` in this process."""

    def __init__(self, host: str, port: int, topic: str, count: int) -> None:
        self.topic = topic
        self.count = count
        self.sub = Subscriber(host, port, [topic], "bench-subscriber-in-process")
        self._started = False

    @property
    def pid(self) -> int | None:
        return None  # this process

    def connect(self) -> None:
        self.sub.start()
        self._started = True

    def wait(self, timeout: float) -> Arrivals:
        if not self.sub.wait_count(self.topic, self.count, timeout):
            raise RuntimeError(f"subscriber: {self.sub.count(self.topic)} of {self.count}"
                               f" messages arrived in {timeout} s")
        got = self.sub.received(self.topic)[:self.count]
        return Arrivals(len(got), _unique_seqs(got), got[0][0], got[-1][0])

    def stop(self) -> None:
        if self._started:
            self.sub.stop()


def start_subscriber(in_process: bool, host: str, port: int, topic: str,
                     count: int) -> SubscriberProcess | InProcessSubscriber:
    """A subscriber to `topic` that reports when `count` messages have arrived; call
    `connect()` on it to subscribe."""
    if in_process:
        return InProcessSubscriber(host, port, topic, count)
    return SubscriberProcess(host, port, topic, count)

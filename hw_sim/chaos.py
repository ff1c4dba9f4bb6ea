"""The chaos run: faults at random while buttons are pressed at random, then count every press.

The gateway's central promise is that no committed press is ever lost and that an alarm
outruns everything else. This module proves it the way alarm-transmission equipment is
proven: for a given duration and seed, it runs the real gateway (``python -m gateway run``,
a child process on the GPIO simulator) against a real Mosquitto (with persistence, so the
platform's session survives a SIGKILL, as a production broker's would) through
:class:`hw_sim.netfault.NetFault`, with the reference :class:`hw_sim.platform.PlatformConsole`
recording, and injects one fault at a time, chosen at random:

- ``broker_kill``: SIGKILL the broker, bring it back after a while on the same port;
- ``blackhole``: the proxy drops every byte, connections stay open (a half-open link);
- ``cut``: the proxy resets every connection, and refuses new ones for a while;
- ``latency``: the proxy holds every byte for 200-1500 ms each way;
- ``gateway_kill``: SIGKILL the gateway and start it again, as systemd's Restart=always would.

Meanwhile a second thread presses and releases the simulated buttons (two panic buttons,
one tamper switch) through the control socket, at random. When the time is up the faults
stop, the run waits for the gateway's outbox to drain (control command ``queue``), and checks
the console's record against the store: every seq from 1 to ``next_seq - 1`` arrived, no id
twice after de-duplication, no seq under two ids, no gap. Alarm latency (the event's
CLOCK_BOOTTIME stamp to its first arrival at the console) is reported as p50/p99 for alarms
committed while the link was up (no fault active and none in the last ``settle_s``, plus
1.5 x keepalive after a black hole), and for all alarms.

``python -m hw_sim.chaos --duration 600 --seed 7`` prints one summary line and exits 1 on any
loss (``scripts/chaos`` wraps it). Only loopback, only processes it started, all stopped at
the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.control import request
from gateway.errors import GatewayError
from gateway.service import socket_path
from hw_sim.broker import Mosquitto
from hw_sim.netfault import NetFault
from hw_sim.platform import PlatformConsole

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SITE = "chaos-school"
GATEWAY = "gw-chaos"

#: The simulated inputs: (id, kind, gpio, contact).
INPUTS: tuple[tuple[str, str, int, str], ...] = (
    ("gate-panic", "panic", 17, "NO"),
    ("office-panic", "panic", 27, "NC"),
    ("box-tamper", "tamper", 22, "NC"),
)

#: The simulated Modbus modules: (device id, unit) on one RS-485 bus.
MODBUS_DEVICES: tuple[tuple[str, int], ...] = (("io3", 3), ("io4", 4))
#: The Modbus panic buttons: (id, device, discrete input, contact).
MODBUS_INPUTS: tuple[tuple[str, str, int, str], ...] = (
    ("hall-panic", "io3", 2, "NO"),
    ("gym-panic", "io4", 0, "NC"),
)
#: Every input the presses choose from.
POINTS: tuple[str, ...] = tuple(p[0] for p in INPUTS) + tuple(p[0] for p in MODBUS_INPUTS)

FAULTS: tuple[str, ...] = ("broker_kill", "blackhole", "cut", "latency", "gateway_kill",
                           "modbus_silent")


@dataclass
class ChaosResult:
    """What a chaos run counted."""

    seed: int
    duration_s: float
    faults: dict[str, int]
    presses: int
    """Press or release requests the gateway accepted."""
    refused: int
    """Press or release requests made while the gateway was down (not committed: not lost)."""
    committed: int
    """Events the store committed (next_seq - 1)."""
    delivered: int
    """Unique events at the console."""
    lost: list[int]
    """Committed seqs the console never received."""
    seq_twice: list[int]
    """Seqs that arrived under two different ids."""
    gaps: list[int]
    redelivered: int
    """Copies the console received and de-duplicated (at-least-once delivery at work)."""
    device_faults: int = 0
    """`fault` events the platform received (each must be matched by a `fault_cleared`)."""
    unpaired_faults: dict[str, int] = field(default_factory=dict)
    """Device -> `fault` events minus `fault_cleared` events, where not zero."""
    alarm_latency_up_ms: list[float] = field(default_factory=list)
    alarm_latency_all_ms: list[float] = field(default_factory=list)
    drained: bool = True

    @property
    def ok(self) -> bool:
        return self.drained and not (self.lost or self.seq_twice or self.gaps
                                     or self.unpaired_faults)

    def summary(self) -> str:
        up = sorted(self.alarm_latency_up_ms)
        every = sorted(self.alarm_latency_all_ms)
        faults = " ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        return (f"chaos {'PASS' if self.ok else 'FAIL'}: seed={self.seed}"
                f" duration={self.duration_s:.0f}s faults[{faults}]"
                f" presses={self.presses} refused={self.refused}"
                f" committed={self.committed} delivered={self.delivered}"
                f" lost={len(self.lost)} seq_twice={len(self.seq_twice)}"
                f" gaps={len(self.gaps)} redelivered={self.redelivered}"
                f" device_faults={self.device_faults}"
                f" unpaired_faults={sum(abs(v) for v in self.unpaired_faults.values())}"
                f" drained={'yes' if self.drained else 'NO'}"
                f" alarm_latency_link_up(n={len(up)}) p50={_pct(up, 50)} p99={_pct(up, 99)}"
                f" max={_pct(up, 100)} ms; all alarms(n={len(every)})"
                f" p50={_pct(every, 50)} max={_pct(every, 100)} ms")


def _pct(values: list[float], p: float) -> str:
    if not values:
        return "-"
    k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return f"{sorted(values)[k]:.0f}"


def write_config(directory: Path, proxy_port: int, keepalive_s: int) -> Path:
    """The gateway's config: GPIO simulator, broker through the proxy, fast reconnects."""
    lines = ["[gateway]", f'site = "{SITE}"', f'id = "{GATEWAY}"', 'state_dir = "state"',
             'runtime_dir = "run"', "", "[broker]", 'host = "127.0.0.1"',
             f"port = {proxy_port}", "plaintext = true", f"keepalive_s = {keepalive_s}",
             "reconnect_min_s = 0.1", "reconnect_max_s = 1.0", "connect_timeout_s = 3.0",
             "", "[clock]", 'sync_source = "assume-synced"',
             "", "[gpio]", 'backend = "mock"', "debounce_ms = 0"]
    for point, kind, pin, contact in INPUTS:
        lines += ["", "[[inputs]]", f'id = "{point}"', f'name = "{point}"',
                  'location = "chaos"', f'kind = "{kind}"', f"gpio = {pin}",
                  f'contact = "{contact}"', 'pull = "up"']
    # Modbus modules simulated inside the gateway (pymodbus over a socat pty pair):
    # a fault after 2 failed requests, probes every 0.2 s. The port is absolute: a
    # relative one is resolved through the simulator's pty link.
    tty = directory.resolve() / "run" / "ttyRS485"
    lines += ["", "[modbus]", "simulator = true", "fail_after = 2", "probe_interval_s = 0.2",
              "", "[[modbus.buses]]", 'id = "rs485"', 'type = "rtu"',
              f'port = "{tty}"', "baud = 115200", "timeout_ms = 30",
              "poll_interval_ms = 20"]
    for dev, unit in MODBUS_DEVICES:
        lines += ["", "[[modbus.devices]]", f'id = "{dev}"', 'bus = "rs485"', f"unit = {unit}",
                  f'name = "{dev}"', 'location = "chaos"']
    for point, dev, address, contact in MODBUS_INPUTS:
        lines += ["", "[[inputs]]", f'id = "{point}"', f'name = "{point}"',
                  'location = "chaos"', 'kind = "panic"',
                  f'modbus = {{ device = "{dev}", table = "di", address = {address} }}',
                  f'contact = "{contact}"']
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Gateway:
    """`python -m gateway run` as a child process that can be SIGKILLed and restarted."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.socket = socket_path(load_config(config))
        self.log_path = config.parent / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "-c", str(self.config), "run"],
                stdout=logf, stderr=subprocess.STDOUT, cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chaos: gateway exited with {self.proc.returncode};"
                                   f" see {self.log_path}")
            try:
                self.control({"cmd": "ping"}, timeout=1.0)
                return
            except (GatewayError, OSError):
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(f"chaos: gateway not serving after {timeout} s;"
                                       f" see {self.log_path}") from None
            # The control socket is the only readiness signal a child gives.
            time.sleep(0.05)

    def control(self, req: dict[str, Any], timeout: float = 5.0) -> Any:
        return request(self.socket, req, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the gateway, and then what it had started (the simulator's socat).

        On a Pi the gateway starts no processes; on the simulator the Modbus bus is a socat
        pty pair, which would outlive a SIGKILLed gateway and keep the pty link alive.
        """
        if self.proc is None:
            return
        orphans = _descendants(self.proc.pid) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 5.0
        while any(_alive(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.02)  # not our children: nothing to wait() on

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _descendants(pid: int) -> list[int]:
    """The pids of `pid`'s children, grandchildren and so on (from /proc)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


class ChaosRun:
    """One seeded run; :meth:`run` returns the counts.

    Args:
        workdir: where the broker, the gateway's state and the logs go.
        duration_s: how long faults and presses go on, in seconds.
        seed: the random seed (faults, their lengths, presses).
        keepalive_s: the gateway's MQTT keepalive, in seconds.
        settle_s: how long after a fault ends the link does not yet count as up, in seconds.
        drain_timeout_s: how long the run waits for the outbox to drain at the end, in s.
    """

    def __init__(self, workdir: Path, duration_s: float, seed: int, *, keepalive_s: int = 2,
                 settle_s: float = 2.0, drain_timeout_s: float = 120.0) -> None:
        self.workdir = workdir
        self.duration_s = duration_s
        self.seed = seed
        self.keepalive_s = keepalive_s
        self.settle_s = settle_s
        self.drain_timeout_s = drain_timeout_s
        self.rng = random.Random(seed)
        self.press_rng = random.Random(seed + 1)
        self.faults: dict[str, int] = {f: 0 for f in FAULTS}
        self.windows: list[tuple[int, int]] = []
        """(start, end) of each fault and its recovery, CLOCK_BOOTTIME ns."""
        self.presses = 0
        self.refused = 0
        self._stop = threading.Event()
        self.broker = Mosquitto(workdir / "broker", extra_conf=(
            f"persistence true\npersistence_location {workdir / 'broker-db'}/\n"
            # Save the platform's queued messages at once: a production broker keeps
            # them durable, and a SIGKILL a second after a PUBACK must not lose them.
            "autosave_on_changes true\nautosave_interval 1\n"))
        (workdir / "broker-db").mkdir(parents=True, exist_ok=True)
        self.proxy: NetFault | None = None
        self.console: PlatformConsole | None = None
        self.gateway: Gateway | None = None

    # -- the run ----------------------------------------------------------

    def run(self) -> ChaosResult:
        try:
            self.broker.start()
            self.proxy = NetFault(self.broker.host, self.broker.port).start()
            self.console = PlatformConsole(self.broker.host, self.broker.port,
                                           client_id="alarmgw-chaos-platform")
            self.console.start()
            cfg = write_config(self.workdir / "gw", self.proxy.port, self.keepalive_s)
            self.gateway = Gateway(cfg)
            self.gateway.start()
            presser = threading.Thread(target=self._press_loop, name="chaos-presses")
            presser.start()
            try:
                self._fault_loop()
            finally:
                self._stop.set()
                presser.join()
            return self._finish()
        finally:
            if self.gateway is not None:
                self.gateway.stop()
            if self.console is not None:
                self.console.stop()
            if self.proxy is not None:
                self.proxy.stop()
            self.broker.stop()

    def _press_loop(self) -> None:
        """Press and release random inputs at random intervals until stopped."""
        assert self.gateway is not None
        held: set[str] = set()
        while not self._stop.wait(self.press_rng.uniform(0.05, 0.6)):
            point = self.press_rng.choice(POINTS)
            action = "release" if point in held else "press"
            try:
                self.gateway.control({"cmd": "sim", "action": action, "input": point},
                                     timeout=2.0)
            except (GatewayError, OSError) as exc:
                self.refused += 1
                log.debug("chaos: %s %s refused: %s", action, point, exc)
                continue
            self.presses += 1
            held ^= {point}

    def _fault_loop(self) -> None:
        """One fault at a time from a shuffled deck, so each kind recurs every six faults."""
        assert self.proxy is not None and self.gateway is not None
        end = time.monotonic() + self.duration_s
        deck: list[str] = []
        while not self._stop.wait(self.rng.uniform(2.0, 6.0)):
            if time.monotonic() >= end:
                return
            if not deck:
                deck = list(FAULTS)
                self.rng.shuffle(deck)
            fault = deck.pop()
            length = min(self.rng.uniform(0.5, 3.0 * self.keepalive_s + 2),
                         max(0.0, end - time.monotonic()))
            start = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            log.info("chaos: %s for %.1f s", fault, length)
            self.faults[fault] += 1
            self._inject(fault, length)
            stop = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            # A black-holed connection stays dead after the path heals until the gateway's
            # silence check (1.5 x keepalive) gives it up: the link is down until then.
            settle = self.settle_s + (1.5 * self.keepalive_s if fault == "blackhole" else 0.0)
            self.windows.append((start, stop + int(settle * 1e9)))

    def _inject(self, fault: str, length: float) -> None:
        assert self.proxy is not None and self.gateway is not None
        assert self.console is not None
        if fault == "broker_kill":
            # A broker is not killed again before it has saved the platform's session.
            while not self.console.connected.wait(0.5) and not self._stop.is_set():
                pass
            self.broker.kill()
            self._stop.wait(length)
            self.broker.start()
            self.console.connected.wait(10)
        elif fault == "blackhole":
            self.proxy.blackhole()
            self._stop.wait(length)
            self.proxy.pass_()
        elif fault == "cut":
            self.proxy.cut()
            self._stop.wait(length)
            self.proxy.pass_()
        elif fault == "latency":
            self.proxy.latency(self.rng.uniform(200, 1500))
            self._stop.wait(length)
            self.proxy.pass_()
        elif fault == "modbus_silent":
            dev = self.rng.choice(MODBUS_DEVICES)[0]
            self._modbus_fault(dev, "silent")
            self._stop.wait(length)
            self._modbus_fault(dev, "ok")
        elif fault == "gateway_kill":
            self.gateway.kill()
            # systemd restarts it (RestartSec is 5 s in production; shortened here).
            self._stop.wait(min(length, 1.0))
            self.gateway.start()

    def _modbus_fault(self, device: str, mode: str) -> None:
        """Make a simulated module misbehave (or mend it); the modules live in the gateway."""
        assert self.gateway is not None
        try:
            self.gateway.control({"cmd": "sim", "action": "modbus-fault", "device": device,
                                  "mode": mode})
        except (GatewayError, OSError) as exc:
            log.warning("chaos: cannot set module %s %s: %s", device, mode, exc)

    # -- the count ----------------------------------------------------------

    def _finish(self) -> ChaosResult:
        assert self.gateway is not None and self.console is not None
        console = self.console
        deadline = time.monotonic() + self.drain_timeout_s
        drained = False
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            stats = self.gateway.control({"cmd": "queue", "limit": 1})["stats"]
            if stats["waiting"] == 0:
                drained = True
                break
            # The outbox lives in another process: its control socket is the only view.
            time.sleep(0.2)
        committed = int(stats.get("next_seq", 1)) - 1
        want = set(range(1, committed + 1))  # the platform must have every one of these
        gw = f"{SITE}/{GATEWAY}"

        def have_all(c: PlatformConsole) -> bool:
            rec = c.gateways.get(gw)
            return rec is not None and want <= rec.seqs

        console.wait_for(have_all, 30)
        events = console.ordered(gw)
        offset = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
        first: dict[str, float] = {}
        with console._cond:
            raws = list(console.raw)
        for r in raws:
            if r.topic.endswith("/event"):
                try:
                    eid = json.loads(r.payload)["id"]
                except (ValueError, KeyError):
                    continue
                first.setdefault(eid, r.arrived_mono * 1e9 + offset)
        result = tally(committed, events, first, self.windows)
        result.seed, result.duration_s = self.seed, self.duration_s
        result.faults, result.presses, result.refused = dict(self.faults), self.presses, \
            self.refused
        result.redelivered, result.drained = console.duplicates, drained
        return result


def tally(committed: int, events: list[dict[str, Any]], first_arrival_ns: dict[str, float],
          windows: list[tuple[int, int]]) -> ChaosResult:
    """Count what the platform received against what the store committed.

    Args:
        committed: events the store committed (its next_seq - 1).
        events: the unique events the platform received (one gateway).
        first_arrival_ns: event id -> first arrival, CLOCK_BOOTTIME ns.
        windows: (start, end) of each fault and its recovery, CLOCK_BOOTTIME ns.
    """
    want = set(range(1, committed + 1))
    by_seq: dict[int, set[str]] = {}
    for e in events:
        by_seq.setdefault(int(e["seq"]), set()).add(str(e["id"]))
    lost = sorted(want - set(by_seq))
    seq_twice = sorted(s for s, ids in by_seq.items() if len(ids) > 1)
    top = max(by_seq, default=0)
    gaps = [s for s in range(1, top + 1) if s not in by_seq]
    balance: dict[str, int] = {}
    for e in events:
        if e.get("type") in ("fault", "fault_cleared"):
            dev = str(e.get("point", {}).get("id"))
            balance[dev] = balance.get(dev, 0) + (1 if e["type"] == "fault" else -1)
    up: list[float] = []
    every: list[float] = []
    for e in events:
        if e.get("type") != "alarm" or e["id"] not in first_arrival_ns:
            continue
        t = int(e["mono_ns"])
        ms = (first_arrival_ns[e["id"]] - t) / 1e6
        every.append(ms)
        if not any(s <= t <= end for s, end in windows):
            up.append(ms)
    return ChaosResult(seed=0, duration_s=0.0, faults={}, presses=0, refused=0,
                       committed=committed, delivered=len(events), lost=lost,
                       seq_twice=seq_twice, gaps=gaps, redelivered=0,
                       alarm_latency_up_ms=up, alarm_latency_all_ms=every,
                       device_faults=sum(1 for e in events if e.get("type") == "fault"),
                       unpaired_faults={d: n for d, n in balance.items() if n})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw_sim.chaos", description=__doc__.split(
        "\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of faults (60)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument("--keepalive", type=int, default=2, help="gateway MQTT keepalive, s (2)")
    p.add_argument("--workdir", type=Path, help="keep broker, state and logs here"
                   " (default: a temporary directory, removed unless the run fails)")
    p.add_argument("-v", "--verbose", action="store_true", help="log each fault")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.duration <= 0:
        p.error("--duration must be > 0")
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="alarmgw-chaos-")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    result = ChaosRun(workdir, args.duration, args.seed, keepalive_s=args.keepalive).run()
    print(result.summary(), flush=True)
    if not result.ok:
        if result.lost:
            print(f"lost seqs: {result.lost[:50]}", flush=True)
        if tmp is not None:
            print(f"kept for inspection: {workdir}", flush=True)
            tmp._finalizer.detach()  # type: ignore[attr-defined]
        return 1
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The service: builds the parts from the config, starts them in order, stops them in reverse.

Start order keeps the promises: the outbox opens first (putting rows left in
flight back to READY), then the engine, then the uplink (so a latched alarm
found at start is published at once), then the drivers (whose initial
readings go through the engine like any change), and the control socket last.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from gateway import __version__
from gateway.clock import Clock, mono_ns, utc_iso
from gateway.config import Config
from gateway.control import SOCKET_NAME, ControlServer
from gateway.drivers.gpio import GpioInputs, make_pin_factory
from gateway.engine import Committed, Engine
from gateway.errors import GatewayError, StoreError
from gateway.events import PROTOCOL_VERSION, Point
from gateway.snapshots import SnapshotLane
from gateway.store import Outbox
from gateway.uplink.mqtt import Uplink
from gateway.uplink.protocol import Topics, status_document

log = logging.getLogger(__name__)

STORE_NAME = "outbox.sqlite3"
LOCK_NAME = "alarmgw.lock"


def store_path(config: Config) -> Path:
    return config.gateway.state_dir / STORE_NAME


def socket_path(config: Config) -> Path:
    return config.gateway.runtime_dir / SOCKET_NAME


class Service:
    """One running gateway."""

    def __init__(self, config: Config, *, pin_factory: Any | None = None,
                 sim: Any | None = None) -> None:
        """`pin_factory`: a gpiozero pin factory to use instead of the configured backend;
        `sim`: the hw_sim SimPanel wired to that factory (tests set contacts before start)."""
        self.config = config
        self.clock = Clock(config.clock.sync_source)
        self.started_at = utc_iso(time.time_ns())
        self.started_mono = time.monotonic()
        self.topics = Topics(config.gateway.site, config.gateway.id)
        self.outbox = Outbox(store_path(config), max_bytes=config.store.max_bytes,
                             keep_acked=config.store.keep_acked)
        self.pin_factory = pin_factory
        self._lock_fd: int | None = None
        self.engine: Engine | None = None
        self.uplink: Uplink | None = None
        self.gpio: GpioInputs | None = None
        self.control: ControlServer | None = None
        self.cameras: SnapshotLane | None = None
        self.sim: Any | None = sim
        self._own_factory = pin_factory is None
        self._stopped = threading.Event()
        self._listeners: list[Callable[[Committed], None]] = []
        """Called in the engine thread after each commit; must not block."""
        self.control_commands: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": lambda req: {"pid": os.getpid()},
            "status": lambda req: self.status(),
            "inputs": lambda req: self.status()["inputs"],
            "queue": self._control_queue,
            "test-alarm": self._control_test_alarm,
            "sim": self._control_sim,
        }
        """Control socket commands by name; features add theirs."""

    def points(self) -> list[Point]:
        """Every configured input, as the engine knows it."""
        return [Point(i.id, i.name, i.location, i.kind, i.source) for i in self.config.inputs]

    def add_listener(self, fn: Callable[[Committed], None]) -> None:
        """Call `fn` in the engine thread after every commit (it must not block)."""
        self._listeners.append(fn)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        cfg = self.config
        self._take_lock()
        self.outbox.open()
        self.cameras = SnapshotLane(cfg, self.outbox, self.clock)
        self.engine = Engine(cfg.gateway.site, cfg.gateway.id, self.points(),
                             outbox=self.outbox, clock=self.clock,
                             on_committed=self._committed, plan_snapshots=self.cameras.plan)
        self.engine.start()
        self.uplink = Uplink(cfg.broker, self.topics, self.outbox, status_doc=self._status_doc,
                             health_doc=self.health_doc, health_interval_s=cfg.health.interval_s)
        self.uplink.start()
        # Cameras before inputs: a button latched at start gets its pictures too.
        self.add_listener(self.cameras.on_committed)
        self.control_commands.update(self.cameras.control_commands())
        self.cameras.start(self.engine.door, self.uplink.wake)
        if self.pin_factory is None:
            self.pin_factory = make_pin_factory(cfg.gpio.backend)
        if cfg.gpio.backend == "mock" and self.sim is None:
            from hw_sim.gpio import SimPanel

            self.sim = SimPanel(self.pin_factory, cfg.inputs)
        self.gpio = GpioInputs(cfg.inputs, self.pin_factory, self.engine.door)
        self.gpio.start()
        self.control = ControlServer(socket_path(cfg), self.handle_control)
        self.control.start()
        log.info("alarmgw %s started: site %s gateway %s, %d inputs, broker %s:%d%s", __version__,
                 cfg.gateway.site, cfg.gateway.id, len(cfg.inputs), cfg.broker.host,
                 cfg.broker.port, "" if cfg.broker.tls else " (PLAINTEXT, loopback only)")

    def _take_lock(self) -> None:
        state_dir = self.config.gateway.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise StoreError(f"cannot use the state directory {state_dir}: {exc.strerror};"
                             " check gateway.state_dir and its permissions") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"another alarmgw is running on {state_dir} (it holds"
                             f" {LOCK_NAME}); stop it first") from None
        self._lock_fd = fd

    def stop(self) -> None:
        """Stop in reverse order; the engine finishes committing what was handed in."""
        if self.control is not None:
            self.control.stop()
            self.control = None
        if self.gpio is not None:
            self.gpio.stop()
            self.gpio = None
        if self.engine is not None:
            self.engine.stop()
        if self.cameras is not None:
            self.cameras.stop()  # after the engine: its last alarms' shots are recorded
            self.cameras = None
        if self.uplink is not None:
            self.uplink.stop()
            self.uplink = None
        if self.pin_factory is not None and self._own_factory:
            self.pin_factory.close()
            self.pin_factory = None
        self.outbox.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._stopped.set()

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT."""
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    # -- glue --------------------------------------------------------------

    def _committed(self, committed: Committed) -> None:
        if self.uplink is not None:
            self.uplink.wake()
        for fn in self._listeners:
            try:
                fn(committed)
            except Exception:
                log.exception("listener %r failed on event seq %d", fn, committed.seq)

    def _status_doc(self, state: str, reason: str | None = None) -> dict[str, Any]:
        return status_document(state=state, version=__version__, started_at=self.started_at,
                               boot_id=self.clock.boot_id, time_synced=self.clock.is_synced(),
                               reason=reason)

    def health_doc(self) -> dict[str, Any]:
        """The heartbeat: built in memory, published QoS 0, never written to disk."""
        assert self.engine is not None
        stats = self.outbox.stats()
        inputs = []
        gpio_status = {s["id"]: s for s in (self.gpio.status() if self.gpio else [])}
        for p in self.engine.points_status():
            g = gpio_status.get(p["id"], {})
            inputs.append({"id": p["id"], "active": bool(p["active"]),
                           "glitches": g.get("glitches", 0)})
        uplink = self.uplink.state() if self.uplink else {}
        return {
            "v": PROTOCOL_VERSION,
            "at": utc_iso(time.time_ns()),
            "mono_ns": mono_ns(),
            "boot_id": self.clock.boot_id,
            "time_synced": self.clock.is_synced(),
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "inputs": inputs,
            "faults": self.engine.open_faults(),
            "queue": {name: lane.ready + lane.in_flight for name, lane in stats.lanes.items()},
            "last_puback_at": uplink.get("last_puback_at"),
            "disk_free_bytes": _disk_free(self.config.gateway.state_dir),
        }

    def status(self) -> dict[str, Any]:
        assert self.engine is not None
        points = self.engine.call(self.engine.points_status).result(5.0)
        gpio_status = {s["id"]: s for s in (self.gpio.status() if self.gpio else [])}
        for p in points:
            p["wire"] = gpio_status.get(p["id"])
        stats = self.outbox.stats()
        return {
            "running": True,
            "pid": os.getpid(),
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "site": self.config.gateway.site,
            "gateway": self.config.gateway.id,
            "config": str(self.config.path),
            "started_at": self.started_at,
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "uplink": self.uplink.state() if self.uplink else None,
            "queue": _stats_dict(stats),
            "engine": self.engine.stats(),
            "faults": self.engine.call(self.engine.open_faults).result(5.0),
            "clock": {"synced": self.clock.is_synced(), "source": self.clock.source,
                      "boot_id": self.clock.boot_id},
            "disk": {"path": str(self.config.gateway.state_dir),
                     "free_bytes": _disk_free(self.config.gateway.state_dir)},
            "inputs": points,
            "cameras": self.cameras.status() if self.cameras else [],
            "simulator": self.sim is not None,
        }

    def handle_control(self, req: dict[str, Any]) -> Any:
        cmd = req["cmd"]
        handler = self.control_commands.get(cmd)
        if handler is None:
            known = ", ".join(sorted(self.control_commands))
            raise ValueError(f"unknown command {cmd!r} (known: {known})")
        return handler(req)

    def _control_queue(self, req: dict[str, Any]) -> Any:
        limit = int(req.get("limit", 100))
        return {"stats": _stats_dict(self.outbox.stats()), "waiting": self.outbox.waiting(limit)}

    def _control_test_alarm(self, req: dict[str, Any]) -> Any:
        engine = self.engine
        assert engine is not None
        point = str(req.get("point", ""))
        drill = bool(req.get("drill", False))
        committed = engine.call(
            lambda: engine.raise_test(point, drill, "alarmgw test-alarm")).result(10.0)
        return {"seq": committed.seq, "id": committed.event_id, "type": committed.type,
                "point": committed.point_id}

    def _control_sim(self, req: dict[str, Any]) -> Any:
        if self.sim is None:
            raise ValueError("this gateway is not running on the simulator"
                             " (gpio.backend is not \"mock\")")
        action = req.get("action")
        point = str(req.get("input", ""))
        if action == "press":
            self.sim.press(point)
        elif action == "release":
            self.sim.release(point)
        elif action == "bounce":
            self.sim.bounce(point, int(req.get("edges", 3)))
        else:
            raise ValueError(f"unknown sim action {action!r} (press, release, bounce)")
        return {"input": point, "active": self.sim.is_active(point)}


def _disk_free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _stats_dict(stats: Any) -> dict[str, Any]:
    return {
        "waiting": stats.waiting,
        "lanes": {name: vars(lane) for name, lane in stats.lanes.items()},
        "acked_kept": stats.acked_kept,
        "bytes_total": stats.bytes_total,
        "budget_bytes": stats.budget_bytes,
        "next_seq": stats.next_seq,
        "evicted_total": stats.evicted_total,
        "refused_total": stats.refused_total,
    }


__all__ = ["GatewayError", "Service", "socket_path", "store_path"]

"""The service: builds the parts from the config, starts them in order, stops them in reverse.

Start order keeps the promises: the outbox opens first (putting rows left in
flight back to READY), then the engine, then the uplink (so a latched alarm
found at start is published at once), then the drivers (whose initial
readings go through the engine like any change), and the control socket last.
Only then is systemd told READY=1 (gateway/systemd/watchdog.py).

The hardware behind each driver is looked up by name in `gateway.drivers.backends`
(the real ones, or the simulator's "sim"): the service never names a simulator
class. The police loop (commands, drills, escalation) is wired in
`gateway.service.police`; the facts of the status document in
`gateway.service.status`. Inspection windows (gateway.inspection) start after the
commands and before the uplink and the drivers: a window left open by a previous process
resumes (or ends) before any press is read.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.clock import Clock, mono_ns, utc_iso
from gateway.config import Config
from gateway.control import ControlServer
from gateway.drivers import backends
from gateway.drivers.backends import Simulated, SimulatedBuses
from gateway.drivers.gpio import GpioInputs
from gateway.drivers.modem import Modem
from gateway.engine import Committed, Engine
from gateway.errors import ConfigError, StoreError
from gateway.events import PROTOCOL_VERSION, Point
from gateway.inspection import BLINK_S, Inspections
from gateway.outputs import Outputs
from gateway.police.dispatcher import CommandDispatcher
from gateway.police.drills import DrillLog
from gateway.police.escalation import Escalation
from gateway.service.paths import LOCK_NAME, lock_path, socket_path, store_path
from gateway.service.police import PoliceLoop
from gateway.service.status import (
    clock_info,
    disk_free,
    disk_info,
    oldest_waiting,
    stats_dict,
    versions,
)
from gateway.snapshots import SnapshotLane
from gateway.store import Outbox
from gateway.supervision.clock_watch import ClockWatch
from gateway.supervision.disk_watch import DiskWatch
from gateway.supervision.input_feed import InputFeed
from gateway.systemd.watchdog import SystemdLink
from gateway.uplink.mqtt import Uplink
from gateway.uplink.protocol import Topics, status_document

if TYPE_CHECKING:
    # Imported when a config has Modbus buses: pymodbus and the driver cost a gateway
    # without them about 0.1 s of its start (docs/performance.md, section 12).
    from gateway.drivers.modbus import ModbusInputs

    # Imported when a config has [paths.dc09]: the DC-09 path and its AES (cryptography)
    # cost a gateway without it about 35 ms of its start.
    from gateway.service.second_path import SecondPath

log = logging.getLogger(__name__)


def _second_path_routes(config: Config) -> dict[str, frozenset[str]]:
    """The event types each second path carries, for the Outbox (none without DC-09)."""
    if config.paths.dc09 is None:
        return {}
    from gateway.service.second_path import path_routes

    return path_routes(config)


class Service:
    """One running gateway."""

    def __init__(self, config: Config, *, pin_factory: Any | None = None,
                 sim: Simulated | None = None,
                 modbus_sim: SimulatedBuses | None = None) -> None:
        """Hardware made by the caller, used instead of the configured backends (and
        not closed or stopped by the service): `pin_factory`, a gpiozero pin factory, and
        `sim`, the simulator wired to it (tests set contacts before start);
        `modbus_sim`, a started simulator of the Modbus modules, used when the config
        says `modbus.simulator = true`."""
        self.config = config
        self.clock = Clock(config.clock.sync_source)
        self.started_at = utc_iso(time.time_ns())
        self.started_mono = time.monotonic()
        self.topics = Topics(config.gateway.site, config.gateway.id)
        self.outbox = Outbox(store_path(config), max_bytes=config.store.max_bytes,
                             keep_acked=config.store.keep_acked,
                             reserve_bytes=config.store.reserve_bytes,
                             paths=_second_path_routes(config))
        self.pin_factory = pin_factory
        self._lock_fd: int | None = None
        self.engine: Engine | None = None
        self.police: PoliceLoop | None = None
        self.inspections: Inspections | None = None
        self.uplink: Uplink | None = None
        self.second: SecondPath | None = None
        """The DC-09 path and the watch over both paths ([paths.dc09] only)."""
        self.gpio: GpioInputs | None = None
        self.control: ControlServer | None = None
        self.cameras: SnapshotLane | None = None
        self.sim: Simulated | None = sim
        """The simulator behind the GPIO pins, when the backend has one."""
        self.systemd: SystemdLink | None = None
        self.clockwatch: ClockWatch | None = None
        self.diskwatch: DiskWatch | None = None
        self.input_feed = InputFeed()
        """Live input changes and glitches for `alarmgw inputs --watch`."""
        self.modbus: ModbusInputs | None = None
        self.modbus_sim: Simulated | None = modbus_sim
        """The simulator behind the Modbus buses, when the transport has one."""
        self._caller_modbus_sim = modbus_sim
        self._own_modbus_sim = modbus_sim is None
        self.outputs: Outputs | None = None
        self._own_factory = pin_factory is None
        self._stopped = threading.Event()
        self._listeners: list[Callable[[Committed], None]] = []
        self._early_listeners: list[Callable[[Committed], None]] = []
        """Called in the engine thread after each commit; must not block."""
        self.control_commands: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": lambda req: {"pid": os.getpid()},
            "status": lambda req: self.status(),
            "inputs": lambda req: self.status()["inputs"],
            "queue": self._control_queue,
            "test-alarm": self._control_test_alarm,
            "sim": self._control_sim,
            "drills": lambda req: self.outbox.drills(int(req.get("limit", 100))),
            "input-watch": self._control_input_watch,
            "outputs": lambda req: self.outputs.status() if self.outputs else [],
            "output": self._control_output,
            "inspect-start": self._control_inspect_start,
            "inspect-stop": self._control_inspect_stop,
            "inspect-status": lambda req: self._inspections().status(),
            "inspect-report": self._control_inspect_report,
        }
        """Control socket commands by name; features add theirs."""

    def points(self) -> list[Point]:
        """Every configured input, as the engine knows it."""
        return ([Point(i.id, i.name, i.location, i.kind, i.source) for i in self.config.inputs]
                + [Point(p.id, p.name, p.location, p.kind, p.source)
                   for p in self.config.modbus.points])

    @property
    def commands(self) -> CommandDispatcher | None:
        return self.police.commands if self.police else None

    @property
    def drills(self) -> DrillLog | None:
        return self.police.drills if self.police else None

    @property
    def escalation(self) -> Escalation | None:
        return self.police.escalation if self.police else None

    @property
    def modem(self) -> Modem | None:
        return self.police.modem if self.police else None

    def add_listener(self, fn: Callable[[Committed], None], *,
                     before_uplink: bool = False) -> None:
        """Call `fn` in the engine thread after every commit (it must not block).

        `before_uplink`: call it before the uplink is woken for the event, for a record
        that the uplink's delivery hooks then update (drill timelines).
        """
        (self._early_listeners if before_uplink else self._listeners).append(fn)

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
        self.engine.observers.append(self.input_feed.record)
        self.engine.start()
        self.police = PoliceLoop(cfg, engine=self.engine, outbox=self.outbox, clock=self.clock,
                                 points=self.points(), add_listener=self.add_listener,
                                 wake_uplink=self._wake_uplink, ping_info=self.ping_info)
        self.police.start_commands()
        self._start_inspections()
        self.uplink = Uplink(cfg.broker, self.topics, self.outbox, status_doc=self._status_doc,
                             health_doc=self.health_doc, health_interval_s=cfg.health.interval_s,
                             on_command=self.commands.submit if self.commands else None,
                             on_delivery=self._on_delivery,
                             on_fault=self.engine.door)
        self.uplink.start()
        if cfg.paths.dc09 is not None:
            from gateway.service.second_path import SecondPath

            # Before the inputs: a button latched at start goes out on both paths.
            self.second = SecondPath(cfg, self.outbox, on_delivered=self._dc09_delivered)
            self.second.start(self.uplink, self.engine.door)
            # After the uplink's wake: MQTT takes the alarm first, DC-09 right after.
            self.add_listener(self.second.on_committed)
        # Cameras before inputs: a button latched at start gets its pictures too.
        self.add_listener(self.cameras.on_committed)
        self.control_commands.update(self.cameras.control_commands())
        self.cameras.start(self.engine.door, self.uplink.wake)
        # A GPIO backend only where GPIO points need it (a Modbus-only gateway may have no
        # lgpio); the simulator's costs nothing and keeps `alarmgw sim` its panel.
        needs_pins = bool(cfg.inputs) or any(o.gpio is not None for o in cfg.outputs)
        if self.pin_factory is None and (needs_pins or cfg.gpio.backend == "mock"):
            pins = backends.gpio(cfg.gpio.backend)(cfg.inputs)
            self.pin_factory, self.sim = pins.factory, pins.simulated
        self._start_modbus_and_outputs()
        self.police.link(self.outputs, self.cameras)
        self._inspections().blink = self._blink_lamp
        # After the outputs (its sounder) and before the inputs (a latched alarm found at
        # start must be watched for its ack like any other).
        self.police.start_escalation(self.outputs, cfg.gateway.runtime_dir)
        self.gpio = GpioInputs(cfg.inputs, self.pin_factory, self.engine.door,
                               on_glitch=self.input_feed.record_glitch)
        self.gpio.start()
        if self.modbus is not None:
            self.modbus.start()
        self.clockwatch = ClockWatch(self.clock, self.engine.door,
                                     fault_after_s=cfg.clock.unsynced_fault_s)
        self.clockwatch.start()
        self.diskwatch = DiskWatch(self.outbox, self.engine.door)
        self.diskwatch.start()
        self.control = ControlServer(socket_path(cfg), self.handle_control)
        self.control.start()
        self.systemd = SystemdLink(engine=self.engine, outbox=self.outbox, uplink=self.uplink,
                                   add_listener=self.add_listener)
        self.systemd.start()
        log.info("alarmgw %s started: site %s gateway %s, %d inputs, broker %s:%d%s", __version__,
                 cfg.gateway.site, cfg.gateway.id, len(cfg.inputs) + len(cfg.modbus.points),
                 cfg.broker.host,
                 cfg.broker.port, "" if cfg.broker.tls else " (PLAINTEXT, loopback only)")

    def _take_lock(self) -> None:
        """Create the state directory and lock it for this service. A directory that
        cannot be created or written is a config error (ConfigError naming
        gateway.state_dir: `alarmgw run` exits 2, which systemd does not restart on);
        a lock another alarmgw holds is a StoreError."""
        state_dir = self.config.gateway.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path(self.config), os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise ConfigError(self.config.path, "gateway.state_dir",
                              f"cannot use the state directory {state_dir}:"
                              f" {exc.strerror or exc}; give a directory the service's user"
                              f" (uid {os.getuid()}) may create and write") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"another alarmgw is running on {state_dir} (it holds"
                             f" {LOCK_NAME}); stop it first") from None
        self._lock_fd = fd

    def stop(self) -> None:
        """Stop in reverse order; the engine finishes committing what was handed in."""
        if self.systemd is not None:
            self.systemd.stop()
            self.systemd = None
        self.input_feed.close()
        if self.control is not None:
            self.control.stop()
            self.control = None
        if self.gpio is not None:
            self.gpio.stop()
            self.gpio = None
        if self.clockwatch is not None:
            self.clockwatch.stop()
            self.clockwatch = None
        if self.diskwatch is not None:
            self.diskwatch.stop()
            self.diskwatch = None
        if self.police is not None:
            self.police.stop()
        if self.inspections is not None:
            self.inspections.stop()
        self._stop_modbus_and_outputs()
        if self.engine is not None:
            self.engine.stop()
        if self.cameras is not None:
            self.cameras.stop()  # after the engine: its last alarms' shots are recorded
            self.cameras = None
        if self.second is not None:
            self.second.stop()
            self.second = None
        if self.uplink is not None:
            self.uplink.stop()
            self.uplink = None
        if self.pin_factory is not None and self._own_factory:
            self.pin_factory.close()
            self.pin_factory = None
            if self.sim is not None:
                self.sim.stop()
                self.sim = None
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

    def _on_delivery(self, step: str, rows: list[Any]) -> None:
        if self.police is not None:
            self.police.on_delivery(step, rows)
        if self.inspections is not None:
            self.inspections.on_delivery(step, rows)

    def _dc09_delivered(self, row: Any) -> None:
        """The receiving centre ACKed an event: for escalation, the alarm is delivered."""
        esc = self.escalation
        if esc is not None:
            esc.on_delivery("arc_ack", [row.event_id])

    def _wake_uplink(self) -> None:
        if self.uplink is not None:
            self.uplink.wake()

    def ping_info(self) -> dict[str, Any]:
        """What the platform's `ping` command is answered with."""
        stats = self.outbox.stats()
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "queue": {name: lane.ready + lane.in_flight for name, lane in stats.lanes.items()},
            "clock": {"synced": self.clock.is_synced(), "boot_id": self.clock.boot_id,
                      "mono_ns": mono_ns()},
        }

    def _committed(self, committed: Committed) -> None:
        for fn in self._early_listeners:
            try:
                fn(committed)
            except Exception:
                log.exception("listener %r failed on event seq %d", fn, committed.seq)
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
        """The heartbeat: built in memory, published QoS 0, never written to disk.

        Called in the uplink thread: the engine's state is the copy it published after its
        last change (`Engine.view`), whole and consistent, read without waiting for it."""
        assert self.engine is not None
        view = self.engine.view()
        stats = self.outbox.stats()
        inputs = []
        gpio_status = {s["id"]: s for s in (self.gpio.status() if self.gpio else [])}
        for p in view.points:
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
            "faults": [dict(f) for f in view.faults],
            "queue": {name: lane.ready + lane.in_flight for name, lane in stats.lanes.items()},
            "last_puback_at": uplink.get("last_puback_at"),
            "disk_free_bytes": disk_free(self.config.gateway.state_dir),
            # As the inspection thread's last tick found them: memory only.
            "untested": self.inspections.untested(now=False) if self.inspections else [],
        }

    def status(self) -> dict[str, Any]:
        assert self.engine is not None
        points = self.engine.call(self.engine.points_status).result(5.0)
        gpio_status = {s["id"]: s for s in (self.gpio.status() if self.gpio else [])}
        if self.modbus is not None:
            gpio_status.update({s["id"]: s for s in self.modbus.point_status()})
        for p in points:
            p["wire"] = gpio_status.get(p["id"])
        stats = self.outbox.stats()
        return self._status_extras({
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
            "queue": stats_dict(stats),
            "engine": self.engine.stats(),
            "faults": self.engine.call(self.engine.open_faults).result(5.0),
            "clock": {"synced": self.clock.is_synced(), "source": self.clock.source,
                      "boot_id": self.clock.boot_id},
            "disk": {"path": str(self.config.gateway.state_dir),
                     "free_bytes": disk_free(self.config.gateway.state_dir)},
            "inputs": points,
            "simulator": self.sim is not None or self.modbus_sim is not None,
            "modbus": self.modbus_status(),
            "outputs": self.outputs.status() if self.outputs else [],
            "police": self.police_status(),
            "cameras": self.cameras.status() if self.cameras else [],
        })

    def _status_extras(self, doc: dict[str, Any]) -> dict[str, Any]:
        """What the technician's screen shows beyond the core keys (which stay as they are
        for scripts that read them)."""
        cfg = self.config
        doc["versions"] = versions()
        doc.setdefault("outputs", [])
        doc["queue"]["oldest_waiting"] = oldest_waiting(doc["queue"]["lanes"])
        doc["clock"].update(clock_info(self.clock, cfg))
        if self.clockwatch is not None:
            doc["clock"]["unsynced_for_s"] = self.clockwatch.unsynced_for_s()
        doc["disk"] = disk_info(cfg.gateway.state_dir, store_path(cfg))
        doc["systemd"] = self.systemd.state() if self.systemd is not None else None
        doc["control_socket"] = str(socket_path(cfg))
        doc["inspection"] = self.inspections.status() if self.inspections else None
        doc["paths"] = self.second.status() if self.second is not None else None
        return doc

    def police_status(self) -> dict[str, Any]:
        """Commands, acknowledgements and escalation, for `alarmgw status`."""
        if self.police is None:
            return {"commands": None, "escalation": None}
        return self.police.status()

    def handle_control(self, req: dict[str, Any]) -> Any:
        cmd = req["cmd"]
        handler = self.control_commands.get(cmd)
        if handler is None:
            known = ", ".join(sorted(self.control_commands))
            raise ValueError(f"unknown command {cmd!r} (known: {known})")
        return handler(req)

    def _control_queue(self, req: dict[str, Any]) -> Any:
        limit = int(req.get("limit", 100))
        return {"stats": stats_dict(self.outbox.stats()), "waiting": self.outbox.waiting(limit)}

    def _control_test_alarm(self, req: dict[str, Any]) -> Any:
        engine = self.engine
        assert engine is not None
        point = str(req.get("point", ""))
        drill = bool(req.get("drill", False))
        if req.get("path") == "dc09":
            if self.second is None:
                raise ValueError(f"no DC-09 path is configured in {self.config.path}: add"
                                 " [paths.dc09] (docs/protocol/dc09.md)")
            if drill:
                raise ValueError("a drill goes to the platform: --path dc09 sends a test only")
            return self.second.send_test(point)
        committed = engine.call(
            lambda: engine.raise_test(point, drill, "alarmgw test-alarm")).result(10.0)
        return {"seq": committed.seq, "id": committed.event_id, "type": committed.type,
                "point": committed.point_id}

    def _control_input_watch(self, req: dict[str, Any]) -> Any:
        after = req.get("after")
        if after is None:
            # The first call: the current state of every input, and where the feed is.
            return {"cursor": self.input_feed.cursor, "inputs": self.status()["inputs"],
                    "entries": [], "missed": 0, "closed": False, "reset": False}
        return self.input_feed.read(int(after), float(req.get("wait_s", 5.0)))

    # -- inspection ------------------------------------------------------------------------

    def _start_inspections(self) -> None:
        """Inspection windows: after the commands (their `inspect_*` handlers), before the
        uplink and the drivers (a window left open resumes first, so that a point latched
        at start under a resumed window is a test)."""
        assert self.engine is not None
        self.inspections = Inspections(self.config, engine=self.engine, outbox=self.outbox,
                                       clock=self.clock, tick_s=self.config.health.interval_s)
        # Before the uplink is woken: a test press's PUBACK must find its record.
        self.add_listener(self.inspections.on_committed, before_uplink=True)
        if self.commands is not None:
            self.commands.handlers.update(self.inspections.command_handlers())
        self.inspections.start()

    def _inspections(self) -> Inspections:
        if self.inspections is None:
            raise ValueError("the service is not started")
        return self.inspections

    def _blink_lamp(self, point_id: str) -> None:
        """The point's ack lamp blinks once: the broker has its test press."""
        cfg = self.config
        lamp = cfg.commands.lamp_for(point_id) if cfg.commands is not None else None
        if lamp is None or self.outputs is None:
            return
        self.outputs.set(lamp, True, BLINK_S, by=f"inspection: test press of {point_id}"
                         " delivered")

    def _control_inspect_start(self, req: dict[str, Any]) -> Any:
        points = req.get("points")
        return self._inspections().open(
            [str(p) for p in points] if points is not None else None,
            minutes=float(req.get("minutes", 30)), by=str(req.get("by") or ""),
            origin=str(req.get("origin") or "cli"))

    def _control_inspect_stop(self, req: dict[str, Any]) -> Any:
        return self._inspections().close(by=str(req.get("by") or "alarmgw inspect stop"))

    def _control_inspect_report(self, req: dict[str, Any]) -> Any:
        insp = self._inspections()
        return {"running": insp.summary(), "report": insp.last_report()}

    def _control_sim(self, req: dict[str, Any]) -> Any:
        """`alarmgw sim ...`: handed to the simulator it is for (Modbus modules first)."""
        for sim in (self.modbus_sim, self.sim):
            if sim is not None and sim.handles(req):
                res = sim.control(req)
                if self.engine is not None and "input" in res:
                    # Whether the press is a test: the point is under an inspection.
                    res["inspection"] = next(
                        (p["inspection"] for p in self.engine.view().points
                         if p["id"] == res["input"]), None)
                return res
        if req.get("action") == "modbus-fault":
            raise ValueError("this gateway has no simulated Modbus modules (modbus.simulator is"
                             " not true)")
        raise ValueError("this gateway is not running on the simulator"
                         " (gpio.backend is not \"mock\")")

    # -- Modbus and outputs --------------------------------------------------------

    def _start_modbus_and_outputs(self) -> None:
        """The Modbus driver (started after the GPIO inputs) and the outputs (started now,
        so that an alarm found at start already drives its links)."""
        cfg = self.config
        assert self.engine is not None
        if cfg.modbus.buses:
            from gateway.drivers.modbus import ModbusInputs

            endpoints = None
            if cfg.modbus.simulator and self._caller_modbus_sim is not None:
                # The caller's simulator: its endpoints, as the "sim" transport would give.
                endpoints = self._caller_modbus_sim.endpoints()
            else:
                transport = backends.modbus("sim" if cfg.modbus.simulator else "wire")(
                    cfg.modbus, cfg.outputs)
                endpoints = transport.endpoints
                if transport.simulated is not None:
                    self.modbus_sim = transport.simulated
            self.modbus = ModbusInputs(cfg.modbus, self.engine.door, endpoints=endpoints)
        if cfg.outputs:
            modbus = self.modbus

            def coil_wait_s(device: str) -> float:
                assert modbus is not None
                return 2 * modbus.bus_of(device).timeout_s + 1.0

            self.outputs = Outputs(cfg.outputs, cfg.links, door=self.engine.door,
                                   pin_factory=self.pin_factory,
                                   write_coil=modbus.write_coil if modbus else None,
                                   coil_wait_s=coil_wait_s,
                                   tests_fire_links=cfg.inspection.sounder)
            self.outputs.start()
            self.add_listener(self.outputs.on_committed)

    def _stop_modbus_and_outputs(self) -> None:
        if self.outputs is not None:
            self.outputs.stop()  # switches them off through the Modbus driver: stop it first
            self.outputs = None
        if self.modbus is not None:
            self.modbus.stop()
            self.modbus = None
        if self.modbus_sim is not None and self._own_modbus_sim:
            self.modbus_sim.stop()
            self.modbus_sim = None

    def modbus_status(self) -> list[dict[str, Any]]:
        return self.modbus.status() if self.modbus is not None else []

    def _control_output(self, req: dict[str, Any]) -> Any:
        if self.outputs is None:
            raise ValueError("no [[outputs]] in the config")
        output = str(req.get("output", ""))
        action = req.get("action")
        if action not in ("on", "off"):
            raise ValueError(f"unknown output action {action!r} (on, off)")
        for_s = req.get("for_s")
        self.outputs.set(output, action == "on", float(for_s) if for_s is not None else None,
                         by=str(req.get("by") or "alarmgw output"))
        self.outputs.wait_applied(output, float(req.get("wait_s", 3.0)))
        return self.outputs.status_of(output)


__all__ = ["Service", "socket_path", "store_path"]

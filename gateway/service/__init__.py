"""The service: builds the parts from the config, starts them in order, stops them in reverse.

Start order keeps the promises: the outbox opens first (putting rows left in
flight back to READY), then the engine, then the uplink (so a latched alarm
found at start is published at once), then the drivers (whose initial
readings go through the engine like any change), and the control socket last.
Only then is systemd told READY=1 (gateway/systemd/watchdog.py).
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
from gateway.cli.status import running_extras
from gateway.clock import Clock, mono_ns, utc_iso
from gateway.config import Config, EscalationSettings
from gateway.control import SOCKET_NAME, ControlServer
from gateway.drivers.gpio import GpioInputs, make_pin_factory
from gateway.drivers.modbus import ModbusInputs
from gateway.drivers.modem import Modem
from gateway.engine import Committed, Engine
from gateway.errors import CameraError, GatewayError, StoreError
from gateway.events import PROTOCOL_VERSION, Point
from gateway.outputs import Outputs
from gateway.police.dispatcher import CommandDispatcher
from gateway.police.drills import DrillLog
from gateway.police.escalation import ESCALATING_TYPES, Escalation
from gateway.snapshots import SnapshotLane
from gateway.store import Outbox, Row
from gateway.supervision.clock_watch import ClockWatch
from gateway.supervision.disk_watch import DiskWatch
from gateway.supervision.input_feed import InputFeed
from gateway.systemd.watchdog import SystemdLink
from gateway.uplink.commands import Command, Refusal
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
                 sim: Any | None = None, modbus_sim: Any | None = None) -> None:
        """`pin_factory`: a gpiozero pin factory to use instead of the configured backend;
        `sim`: the hw_sim SimPanel wired to that factory (tests set contacts before start);
        `modbus_sim`: a started hw_sim SimModbus to use (and not stop) when the config
        says `modbus.simulator = true`."""
        self.config = config
        self.clock = Clock(config.clock.sync_source)
        self.started_at = utc_iso(time.time_ns())
        self.started_mono = time.monotonic()
        self.topics = Topics(config.gateway.site, config.gateway.id)
        self.outbox = Outbox(store_path(config), max_bytes=config.store.max_bytes,
                             keep_acked=config.store.keep_acked,
                             reserve_bytes=config.store.reserve_bytes)
        self.pin_factory = pin_factory
        self._lock_fd: int | None = None
        self.engine: Engine | None = None
        self.commands: CommandDispatcher | None = None
        self.drills: DrillLog | None = None
        self.escalation: Escalation | None = None
        self.modem: Modem | None = None
        self.uplink: Uplink | None = None
        self.gpio: GpioInputs | None = None
        self.control: ControlServer | None = None
        self.cameras: SnapshotLane | None = None
        self.sim: Any | None = sim
        self.systemd: SystemdLink | None = None
        self.clockwatch: ClockWatch | None = None
        self.diskwatch: DiskWatch | None = None
        self.input_feed = InputFeed()
        """Live input changes and glitches for `alarmgw inputs --watch`."""
        self.modbus: ModbusInputs | None = None
        self.modbus_sim: Any | None = modbus_sim
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
        }
        """Control socket commands by name; features add theirs."""

    def points(self) -> list[Point]:
        """Every configured input, as the engine knows it."""
        return ([Point(i.id, i.name, i.location, i.kind, i.source) for i in self.config.inputs]
                + [Point(p.id, p.name, p.location, p.kind, p.source)
                   for p in self.config.modbus.points])

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
        self.drills = DrillLog(self.outbox, self.clock)
        # Before the uplink is woken: its PUBACK hook must find the drill's record.
        self.add_listener(self.drills.on_committed, before_uplink=True)
        if cfg.commands is not None:
            self.commands = CommandDispatcher(
                cfg.commands, site=cfg.gateway.site, gateway=cfg.gateway.id, engine=self.engine,
                outbox=self.outbox, clock=self.clock, wake_uplink=self._wake_uplink,
                ping_info=self.ping_info)
            self.add_listener(self.commands.on_committed)
            self.commands.ack_listeners.append(self.drills.on_ack)
            self.commands.start()
        self.uplink = Uplink(cfg.broker, self.topics, self.outbox, status_doc=self._status_doc,
                             health_doc=self.health_doc, health_interval_s=cfg.health.interval_s,
                             on_command=self.commands.submit if self.commands else None,
                             on_delivery=self._on_delivery)
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
        self._start_modbus_and_outputs()
        self._link_commands_to_outputs()
        if cfg.escalation is not None:
            # After the outputs (its sounder) and before the inputs (a latched alarm
            # found at start must be watched for its ack like any other).
            self._start_escalation(cfg.escalation)
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
        self.systemd = SystemdLink(self)
        self.systemd.start()
        log.info("alarmgw %s started: site %s gateway %s, %d inputs, broker %s:%d%s", __version__,
                 cfg.gateway.site, cfg.gateway.id, len(cfg.inputs) + len(cfg.modbus.points),
                 cfg.broker.host,
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
        if self.commands is not None:
            self.commands.stop()
            self.commands = None
        if self.escalation is not None:
            self.escalation.stop()
            self.escalation = None
        if self.modem is not None:
            self.modem.close()
            self.modem = None
        self._stop_modbus_and_outputs()
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

    def _link_commands_to_outputs(self) -> None:
        """The platform's `ack` lights the point's lamp; its `output` command switches one;
        its `snapshot` command takes a picture."""
        commands, outputs, settings = self.commands, self.outputs, self.config.commands
        cameras = self.cameras
        if commands is not None and cameras is not None and self.config.cameras:

            def snapshot(cmd: Command) -> dict[str, Any]:
                camera = str(cmd.args["camera"])
                if camera not in {c.id for c in self.config.cameras}:
                    known = ", ".join(c.id for c in self.config.cameras)
                    raise Refusal("bad_args", f"no camera {camera!r} (cameras: {known})",
                                  cmd.id, cmd.op)
                try:
                    return cameras.take_on_request(camera, cmd.id)
                except CameraError as exc:
                    raise Refusal("failed", f"{exc} ({exc.reason})", cmd.id, cmd.op) from exc

            commands.handlers["snapshot"] = snapshot
        if commands is None or outputs is None or settings is None:
            return

        def light_lamp(event_id: str, point_id: str, ack: dict[str, Any]) -> dict[str, Any]:
            lamp = settings.lamp_for(point_id)
            if lamp is None:
                return {"lamp": None}
            outputs.set(lamp, True, settings.ack_lamp_s, by=f"platform ack by {ack['operator']}")
            # On the commands thread, never the engine's: wait for the wire to say so.
            applied = outputs.wait_applied(lamp, 2.0)
            return {"lamp": lamp, "lamp_on": applied and outputs.status_of(lamp)["on"]}

        def switch(cmd: Command) -> dict[str, Any]:
            output = str(cmd.args["output"])
            if output not in {o.id for o in self.config.outputs}:
                known = ", ".join(o.id for o in self.config.outputs)
                raise Refusal("bad_args", f"no output {output!r} (outputs: {known})", cmd.id,
                              cmd.op)
            duration = cmd.args.get("duration_s")
            outputs.set(output, bool(cmd.args["on"]),
                        float(duration) if duration is not None else None,
                        by=f"platform command {cmd.id}")
            outputs.wait_applied(output, 2.0)
            return outputs.status_of(output)

        commands.ack_listeners.insert(0, light_lamp)
        commands.handlers["output"] = switch

    def _start_escalation(self, settings: EscalationSettings) -> None:
        send_sms: Callable[[str, str], None] | None = None
        check_modem: Callable[[], list[str]] | None = None
        if settings.modem_port is not None:
            modem = Modem(settings.modem_port, settings.modem_baud, pin=settings.modem_pin,
                          send_timeout_s=settings.sms_timeout_s)
            self.modem = modem

            def send_sms(number: str, text: str) -> None:
                # Opened on first use, on the escalation's worker thread: a modem that
                # is missing at start must not keep the gateway from starting.
                if not modem.is_open:
                    modem.open()
                modem.send_sms(number, text)

            def check_modem() -> list[str]:
                if not modem.is_open:
                    modem.open()
                return modem.check().problems()
        set_output: Callable[[str, bool, float | None], None] | None = None
        if self.outputs is not None:
            outputs = self.outputs

            def set_output(output_id: str, on: bool, duration_s: float | None) -> None:
                outputs.set(output_id, on, duration_s, by="escalation")
        assert self.engine is not None
        self.escalation = Escalation(
            settings, engine=self.engine, points={p.id: p for p in self.points()},
            set_output=set_output, send_sms=send_sms, site=self.config.gateway.site,
            gateway=self.config.gateway.id, check_modem=check_modem)
        self.add_listener(self.escalation.on_committed)
        if self.commands is not None:
            self.commands.ack_listeners.append(self.escalation.on_ack)
        self._restore_escalation(self.escalation, settings)
        self.escalation.start()

    def _restore_escalation(self, escalation: Escalation, settings: EscalationSettings) -> None:
        """Watch again the alarms a previous process was watching when it stopped.

        A restart (a crash, a power blip) must not leave an alarm unwatched: one still
        waiting for its PUBACK is watched whatever its age (the platform does not know of
        it; its timers start now when it is from before a reboot); one the broker has,
        only when it is from this boot and recent (younger than twice ack_timeout_s), so
        that turning escalation on does not text the duty phone about last week's alarms.
        Neither when it was acknowledged or its escalation reached its last step."""
        now = mono_ns()
        restored: list[str] = []
        # An escalation cut short (the sounder on, then a SIGKILL before the SMS) is done
        # again; one that reached its last step is not.
        finished = frozenset({"sms_sent", "sms_failed"} if settings.sms_to and
                             settings.modem_port is not None else
                             {"sounder_on", "sounder_failed"})
        for doc, delivered in self.outbox.unanswered_events(ESCALATING_TYPES, finished):
            try:
                same_boot = doc.get("boot_id") == self.clock.boot_id
                age_s = (now - int(doc["mono_ns"])) / 1e9 if same_boot else None
                if delivered and (age_s is None or age_s > 2 * settings.ack_timeout_s):
                    continue
                c = Committed(seq=int(doc["seq"]), event_id=str(doc["id"]),
                              type=str(doc["type"]), point_id=str(doc["point"]["id"]),
                              occurred_mono_ns=int(doc["mono_ns"]))
            except (KeyError, TypeError, ValueError):
                continue
            if escalation.restore(c, age_s=age_s, delivered=delivered):
                restored.append(c.event_id)
        if restored:
            # PUBACKs that came between the read and the restore: the hook found no entry.
            escalation.on_delivery("puback", sorted(self.outbox.delivered(restored)))
            # Acknowledgements that came between the read and the restore, likewise.
            for event_id in restored:
                if self.outbox.acks_for(event_id):
                    escalation.on_ack(event_id, "", {})
            log.warning("escalation: watching %d alarm(s) from before this start for their"
                        " acknowledgement", len(restored))

    def _on_delivery(self, step: str, rows: list[Row]) -> None:
        if self.drills is not None:
            self.drills.on_delivery(step, rows)
        if self.escalation is not None:
            self.escalation.on_delivery(step, [r.event_id for r in rows if r.event_id])

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
        if self.modbus is not None:
            gpio_status.update({s["id"]: s for s in self.modbus.point_status()})
        for p in points:
            p["wire"] = gpio_status.get(p["id"])
        stats = self.outbox.stats()
        return running_extras(self, {
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
            "simulator": self.sim is not None or self.modbus_sim is not None,
            "modbus": self.modbus_status(),
            "outputs": self.outputs.status() if self.outputs else [],
            "police": self.police_status(),
            "cameras": self.cameras.status() if self.cameras else [],
        })

    def police_status(self) -> dict[str, Any]:
        """Commands, acknowledgements and escalation, for `alarmgw status`."""
        return {
            "commands": None if self.commands is None else {
                "signed": self.config.commands is not None
                and self.config.commands.require_signature,
                "counters": dict(self.commands.counters)},
            "escalation": None if self.escalation is None else {
                "waiting_for_ack": self.escalation.pending(),
                "escalated_total": self.escalation.escalated_total,
                "modem_faulty": self.escalation.modem_faulty},
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

    def _control_input_watch(self, req: dict[str, Any]) -> Any:
        after = req.get("after")
        if after is None:
            # The first call: the current state of every input, and where the feed is.
            return {"cursor": self.input_feed.cursor, "inputs": self.status()["inputs"],
                    "entries": [], "missed": 0, "closed": False, "reset": False}
        return self.input_feed.read(int(after), float(req.get("wait_s", 5.0)))

    def _control_sim(self, req: dict[str, Any]) -> Any:
        if self.modbus_sim is not None and (req.get("action") == "modbus-fault" or
                                            self.modbus_sim.has_point(str(req.get("input")))):
            return self._control_modbus_sim(req)
        if req.get("action") == "modbus-fault":
            raise ValueError("this gateway has no simulated Modbus modules (modbus.simulator is"
                             " not true)")
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

    # -- Modbus and outputs --------------------------------------------------------

    def _start_modbus_and_outputs(self) -> None:
        """The Modbus driver (started after the GPIO inputs) and the outputs (started now,
        so that an alarm found at start already drives its links)."""
        cfg = self.config
        assert self.engine is not None
        if cfg.modbus.buses:
            endpoints = None
            if cfg.modbus.simulator:
                if self.modbus_sim is None:
                    from hw_sim.modbus import SimModbus

                    self.modbus_sim = SimModbus(cfg.modbus, cfg.outputs)
                    self.modbus_sim.start()
                endpoints = self.modbus_sim.endpoints()
            self.modbus = ModbusInputs(cfg.modbus, self.engine.door, endpoints=endpoints)
        if cfg.outputs:
            modbus = self.modbus

            def coil_wait_s(device: str) -> float:
                assert modbus is not None
                return 2 * modbus.bus_of(device).timeout_s + 1.0

            self.outputs = Outputs(cfg.outputs, cfg.links, door=self.engine.door,
                                   pin_factory=self.pin_factory,
                                   write_coil=modbus.write_coil if modbus else None,
                                   coil_wait_s=coil_wait_s)
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

    def _control_modbus_sim(self, req: dict[str, Any]) -> Any:
        sim = self.modbus_sim
        assert sim is not None
        action = req.get("action")
        if action == "modbus-fault":
            device = str(req.get("device", ""))
            mode = str(req.get("mode", ""))
            opts: dict[str, Any] = {}
            for key, conv in (("code", int), ("count", int), ("period_s", float),
                              ("delay_s", float)):
                if req.get(key) is not None:
                    opts[key] = conv(req[key])
            sim.set_fault(device, mode, **opts)
            f = sim.fault(device)
            return {"device": device, "mode": f.mode, "count": f.count}
        point = str(req.get("input", ""))
        if action == "press":
            sim.press(point)
        elif action == "release":
            sim.release(point)
        else:
            raise ValueError(f"sim action {action!r} is not for Modbus inputs (press, release)")
        return {"input": point, "active": sim.is_active(point)}


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

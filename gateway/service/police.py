"""The police loop, wired: platform commands, drills and escalation, and what they switch.

`PoliceLoop` owns the parts of `gateway.police` for one running service: the
command dispatcher (when `[commands]` is configured), the drill log, and the
escalation with its modem (when `[escalation]` is). It links them to each other
and to the parts they act on: the platform's `ack` lights the point's lamp and
ends its escalation, `output` switches an output, `snapshot` takes a picture; an
escalation switches the sounder and texts the duty phones. After a restart it
watches again the alarms a previous process was watching.

The service creates it after the engine, starts the commands before the uplink,
and the escalation after the outputs and before the inputs (a latched alarm
found at start is watched for its acknowledgement like any other).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.clock import Clock, mono_ns
from gateway.config import Config, EscalationSettings
from gateway.drivers import backends
from gateway.drivers.backends import Simulated
from gateway.drivers.modem import Modem
from gateway.engine import Committed, Engine
from gateway.errors import CameraError
from gateway.events import Point
from gateway.outputs import Outputs
from gateway.police.dispatcher import CommandDispatcher
from gateway.police.drills import DrillLog
from gateway.police.escalation import ESCALATING_TYPES, Escalation
from gateway.snapshots import SnapshotLane
from gateway.store import Outbox, Row
from gateway.uplink.commands import Command, Refusal, parse_time

log = logging.getLogger(__name__)

#: The value of escalation.modem.port that selects the simulated modem.
SIM_MODEM_PORT = "sim"


def _wall_ns(occurred_at: object) -> int:
    """An event document's `occurred_at` in ns since the epoch; 0 when it has none."""
    if not isinstance(occurred_at, str):
        return 0
    try:
        return round(parse_time(occurred_at) * 1e9)
    except ValueError:
        return 0


class PoliceLoop:
    """Commands, drills and escalation of one service, linked to what they act on."""

    def __init__(self, config: Config, *, engine: Engine, outbox: Outbox, clock: Clock,
                 points: list[Point],
                 add_listener: Callable[..., None],
                 wake_uplink: Callable[[], None],
                 ping_info: Callable[[], dict[str, Any]]) -> None:
        """`add_listener(fn, before_uplink=False)`: the service's commit listeners."""
        self.config = config
        self._engine = engine
        self._outbox = outbox
        self._clock = clock
        self._points = points
        self._add_listener = add_listener
        self._wake_uplink = wake_uplink
        self._ping_info = ping_info
        self.commands: CommandDispatcher | None = None
        self.drills: DrillLog | None = None
        self.escalation: Escalation | None = None
        self.modem: Modem | None = None
        self.modem_sim: Simulated | None = None

    def start_commands(self) -> None:
        """The drill log and the command dispatcher: before the uplink, which hands the
        dispatcher what arrives on the cmd topic."""
        cfg = self.config
        self.drills = DrillLog(self._outbox, self._clock)
        # Before the uplink is woken: its PUBACK hook must find the drill's record.
        self._add_listener(self.drills.on_committed, before_uplink=True)
        if cfg.commands is not None:
            self.commands = CommandDispatcher(
                cfg.commands, site=cfg.gateway.site, gateway=cfg.gateway.id,
                engine=self._engine, outbox=self._outbox, clock=self._clock,
                wake_uplink=self._wake_uplink, ping_info=self._ping_info)
            self._add_listener(self.commands.on_committed)
            self.commands.first_ack_listeners.append(self.drills.on_ack)
            self.commands.start()

    def link(self, outputs: Outputs | None, cameras: SnapshotLane | None) -> None:
        """The platform's `ack` lights the point's lamp; its `output` command switches one;
        its `snapshot` command takes a picture."""
        commands, settings = self.commands, self.config.commands
        camera_ids = [c.id for c in self.config.cameras]
        if commands is not None and cameras is not None and camera_ids:

            def snapshot(cmd: Command) -> dict[str, Any]:
                camera = str(cmd.args["camera"])
                if camera not in camera_ids:
                    raise Refusal("bad_args", f"no camera {camera!r} (cameras:"
                                  f" {', '.join(camera_ids)})", cmd.id, cmd.op)
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

        output_ids = [o.id for o in self.config.outputs]

        def switch(cmd: Command) -> dict[str, Any]:
            output = str(cmd.args["output"])
            if output not in output_ids:
                raise Refusal("bad_args", f"no output {output!r} (outputs:"
                              f" {', '.join(output_ids)})", cmd.id, cmd.op)
            duration = cmd.args.get("duration_s")
            outputs.set(output, bool(cmd.args["on"]),
                        float(duration) if duration is not None else None,
                        by=f"platform command {cmd.id}")
            outputs.wait_applied(output, 2.0)
            return outputs.status_of(output)

        # After the escalation has stopped (a first listener): the lamp may take seconds.
        commands.ack_listeners.append(light_lamp)
        commands.handlers["output"] = switch

    def start_escalation(self, outputs: Outputs | None, workdir: Path) -> None:
        """The escalation, when configured: after the outputs (its sounder), before the
        inputs. `workdir`: where a simulated modem keeps its pty."""
        settings = self.config.escalation
        if settings is None:
            return
        send_sms: Callable[[str, str], None] | None = None
        check_modem: Callable[[], list[str]] | None = None
        if settings.modem_port is not None:
            backend = "sim" if settings.modem_port == SIM_MODEM_PORT else "serial"
            modem, self.modem_sim = backends.modem(backend)(settings, workdir / "modem")
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
        if outputs is not None:
            switched = outputs

            def set_output(output_id: str, on: bool, duration_s: float | None) -> None:
                switched.set(output_id, on, duration_s, by="escalation")
        self.escalation = Escalation(
            settings, engine=self._engine, points={p.id: p for p in self._points},
            set_output=set_output, send_sms=send_sms, site=self.config.gateway.site,
            gateway=self.config.gateway.id, check_modem=check_modem,
            clock_synced=self._clock.is_synced)
        self._add_listener(self.escalation.on_committed)
        if self.commands is not None:
            # The very first thing an ack does: an ack just before ack_timeout_s counts.
            self.commands.first_ack_listeners.insert(0, self.escalation.on_ack)
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
        for doc, delivered in self._outbox.unanswered_events(ESCALATING_TYPES, finished):
            try:
                same_boot = doc.get("boot_id") == self._clock.boot_id
                age_s = (now - int(doc["mono_ns"])) / 1e9 if same_boot else None
                if delivered and (age_s is None or age_s > 2 * settings.ack_timeout_s):
                    continue
                c = Committed(seq=int(doc["seq"]), event_id=str(doc["id"]),
                              type=str(doc["type"]), point_id=str(doc["point"]["id"]),
                              occurred_mono_ns=int(doc["mono_ns"]),
                              occurred_wall_ns=_wall_ns(doc.get("occurred_at")))
            except (KeyError, TypeError, ValueError):
                continue
            # Its SMS gives the alarm's own time, and says when that clock was not synced.
            if escalation.restore(c, age_s=age_s, delivered=delivered,
                                  time_synced=doc.get("time_synced") is True):
                restored.append(c.event_id)
        if restored:
            # PUBACKs that came between the read and the restore: the hook found no entry.
            escalation.on_delivery("puback", sorted(self._outbox.delivered(restored)))
            # Acknowledgements that came between the read and the restore, likewise.
            for event_id in restored:
                if self._outbox.acks_for(event_id):
                    escalation.on_ack(event_id, "", {})
            log.warning("escalation: watching %d alarm(s) from before this start for their"
                        " acknowledgement", len(restored))

    def on_delivery(self, step: str, rows: list[Row]) -> None:
        """The uplink's delivery hook (published, PUBACK): drill steps, escalation timers."""
        if self.drills is not None:
            self.drills.on_delivery(step, rows)
        if self.escalation is not None:
            self.escalation.on_delivery(step, [r.event_id for r in rows if r.event_id])

    def stop(self) -> None:
        """Commands first (nothing new is carried out), then escalation and its modem."""
        if self.commands is not None:
            self.commands.stop()
            self.commands = None
        if self.escalation is not None:
            self.escalation.stop()
            self.escalation = None
        if self.modem is not None:
            self.modem.close()
            self.modem = None
        if self.modem_sim is not None:
            self.modem_sim.stop()
            self.modem_sim = None

    def status(self) -> dict[str, Any]:
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

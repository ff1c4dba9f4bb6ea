"""The service's second path: the DC-09 path to a receiving centre, the watch over both
paths, and what they add to `alarmgw status` and the control socket.

Built only when the config has [paths.dc09]. The store queues every event the path
carries in the transaction that commits it (the service gives the Outbox the event
types); the path's thread is woken after each commit; an ACK from the receiving centre is
a delivery for escalation like a PUBACK (an alarm the centre has is not "undelivered").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.config import Config
from gateway.dc09.contactid import carried_types
from gateway.dc09.path import PATH, Dc09Path
from gateway.engine import Committed
from gateway.events import FaultChange
from gateway.service.status import Now, waited
from gateway.store import Lane, Outbox
from gateway.store.paths import PathRow
from gateway.supervision.path_watch import MqttFailing, PathWatch
from gateway.uplink.mqtt import Uplink

log = logging.getLogger(__name__)


def path_routes(cfg: Config) -> dict[str, frozenset[str]]:
    """The event types each second path carries, for the Outbox (none without DC-09)."""
    if cfg.paths.dc09 is None:
        return {}
    return {PATH: carried_types(cfg.paths.dc09)}


class SecondPath:
    """The DC-09 path and the path watch of one running service."""

    def __init__(self, cfg: Config, outbox: Outbox, *,
                 on_delivered: Callable[[PathRow], None]) -> None:
        assert cfg.paths.dc09 is not None
        self.cfg = cfg
        self.outbox = outbox
        self.types = carried_types(cfg.paths.dc09)
        self.dc09 = Dc09Path(cfg.paths.dc09, outbox, on_delivered=on_delivered)
        self.watch: PathWatch | None = None

    def start(self, uplink: Uplink, door: Callable[[FaultChange], None]) -> None:
        """After the uplink (the watch reads its state) and before the inputs."""
        s = self.cfg.paths
        dc09 = self.dc09
        assert s.dc09 is not None
        dc09.start()
        outbox = self.outbox

        def oldest_wait_s() -> float | None:
            return outbox.oldest_waiting_age(Lane.EVENT)

        mqtt = MqttFailing(lambda: bool(uplink.state().get("connected")), oldest_wait_s)
        broker = self.cfg.broker
        self.watch = PathWatch({"mqtt": mqtt, "dc09": dc09.failing_for},
                               {"mqtt": f"mqtt://{broker.host}:{broker.port}",
                                "dc09": s.dc09.endpoint},
                               door, path_fail_s=s.path_fail_s, on_failed=self._failed)
        self.watch.start()

    def _failed(self, path: str, failed: bool) -> None:
        if path == "mqtt":
            self.dc09.set_failover(failed)

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()
            self.watch = None
        self.dc09.stop()

    def on_committed(self, c: Committed) -> None:
        if c.type in self.types:
            self.dc09.wake()

    def status(self) -> dict[str, Any]:
        s = self.cfg.paths
        dc09 = self.dc09.status()
        q = dc09["queue"]
        if q.get("waiting"):
            # By the boot clock when the oldest row is of this boot (the wall may step).
            q["age_s"], q["age_clock"] = waited(q["oldest_created_at"], q["oldest_mono_ns"],
                                                q["oldest_boot_id"], Now.read())
        return {
            "ats": s.ats, "path_fail_s": s.path_fail_s,
            "faults": self.watch.status() if self.watch is not None else {},
            "mqtt": {"role": s.mqtt_role},
            "dc09": dc09,
        }

    def send_test(self, point: str) -> dict[str, Any]:
        """`alarmgw test-alarm --path dc09`: a 601 on this path alone, and how it went."""
        s = self.cfg.paths.dc09
        assert s is not None
        started = time.monotonic()
        outcome = self.dc09.send_test(point, timeout=s.ack_timeout_s * 3 + 5.0)
        if outcome is None:
            return {"path": PATH, "ok": False, "outcome": "busy",
                    "detail": "the DC-09 path is busy sending its backlog; try again, or see"
                              " `alarmgw status`"}
        return {"path": PATH, "ok": outcome.kind == "ack", "outcome": outcome.kind,
                "detail": outcome.detail, "rtt_ms": None if outcome.rtt_s is None
                else round(outcome.rtt_s * 1000, 1), "endpoint": s.endpoint,
                "zone": s.zones.get(point, 0), "waited_s": round(time.monotonic() - started, 3)}

"""The service's side of systemd's notify protocol (unit `Type=notify`, `WatchdogSec=`).

- READY=1 is sent once, at the end of the service's start: the store is
  open, the engine runs, the uplink thread is trying to connect, the drivers
  report and the control socket answers.
- WATCHDOG=1 is sent only while the engine thread makes progress: a round
  trip through it (a no-op call queued behind whatever it is doing) came back
  in time, or, when it is busy with a backlog (a burst of events, each an
  fsync), its count of handled messages moved since the last look. A stuck
  engine does neither: the pings stop and systemd restarts the service.
- STATUS= says the uplink's state and how many messages wait, e.g.
  "uplink connected, 0 waiting" or "uplink DOWN (broker ... refused the
  connection), 12 waiting (3 alarms)"; it is rebuilt when an event is
  committed or the uplink's state changes (connect, loss, PUBACKs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from gateway.engine import Committed, Engine
from gateway.errors import GatewayError
from gateway.store import Outbox
from gateway.systemd.notify import Heartbeat, Notifier
from gateway.uplink.mqtt import Uplink

log = logging.getLogger(__name__)


class SystemdLink:
    """Tells systemd when the service is ready, alive and how it is doing."""

    def __init__(self, *, engine: Engine, outbox: Outbox, uplink: Uplink | None,
                 add_listener: Callable[[Callable[[Committed], None]], None],
                 notifier: Notifier | None = None) -> None:
        """The parts whose progress the watchdog vouches for, and `add_listener` to hear of
        every commit (the service's). `notifier`: defaults to the one `$NOTIFY_SOCKET`
        names (a no-op without it)."""
        self.engine = engine
        self.outbox = outbox
        self.uplink = uplink
        self._add_listener = add_listener
        self.notifier = notifier if notifier is not None else Notifier.from_environ()
        self.heartbeat = Heartbeat(self.notifier, probe=self.probe, status=self.status_text)
        self._pending: Future[Any] | None = None
        self._last_loops = -1
        self._started = False

    def start(self) -> None:
        """Send READY=1 and start the heartbeat (a no-op when not under systemd)."""
        if not self.notifier.enabled:
            return
        status = self.status_text()
        self.notifier.ready(status)
        self.heartbeat.last_status = status
        if self.uplink is not None:
            self.uplink.add_watcher(self.heartbeat.poke)
        self._add_listener(lambda committed: self.heartbeat.poke())
        self._last_loops = self.engine.loops
        self.heartbeat.start()
        self._started = True
        log.info("systemd: READY=1 sent to %s; watchdog %s", self.notifier.socket_name,
                 f"every {self.heartbeat.ping_every_s:.1f} s" if self.heartbeat.ping_every_s
                 else "off")

    def stop(self) -> None:
        if self._started:
            self.heartbeat.stop()
            self.notifier.stopping("stopping")
            self._started = False
        self.notifier.close()

    def probe(self, timeout_s: float) -> bool:
        """True when the engine thread ran a queued no-op within `timeout_s` seconds, or
        handled other messages since the last probe (busy, but not stuck).

        A probe that timed out is waited for again rather than queued anew, so a
        stuck engine does not collect one probe per period.
        """
        engine = self.engine
        fut = self._pending
        if fut is None:
            fut = engine.call(lambda: None)
            self._pending = fut
        try:
            fut.result(timeout_s)
        except TimeoutError:
            loops = engine.loops
            moved = loops != self._last_loops
            self._last_loops = loops
            return moved
        self._pending = None
        self._last_loops = engine.loops
        return True

    def status_text(self) -> str:
        """The one-line STATUS= text: uplink state and queue depth."""
        up = self.uplink.state() if self.uplink is not None else {}
        try:
            stats = self.outbox.stats()
            alarms = stats.lanes["alarm"]
            n_alarms = alarms.ready + alarms.in_flight
            queue = f"{stats.waiting} waiting" + (f" ({n_alarms} alarms)" if n_alarms else "")
        except GatewayError as exc:
            queue = f"store unreadable: {exc}"
        if up.get("connected"):
            return f"uplink connected, {queue}"
        reason = str(up.get("last_error") or "connecting").split(";")[0]
        return f"uplink DOWN ({reason}), {queue}"

    def state(self) -> dict[str, Any]:
        """For `alarmgw status`."""
        hb = self.heartbeat
        return {
            "notify_socket": self.notifier.socket_name,
            "watchdog_s": self.notifier.watchdog_interval_s,
            "pings": hb.pings,
            "withheld": hb.withheld,
            "status": hb.last_status,
            "errors": self.notifier.errors,
        }

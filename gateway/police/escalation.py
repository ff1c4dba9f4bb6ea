"""Escalation: when the police have not acknowledged an alarm, the gateway acts by itself.

An alarm escalates once, when either
- no platform `ack` for it arrived within `ack_timeout_s` of its commit, or
- the alarm has waited `uplink_down_s` for its PUBACK (the platform cannot
  even know of it): the uplink is down, or its link is half-open and the
  gateway has not noticed yet (that takes 1.5 x keepalive), or the broker
  does not answer. The alarm's own wait is what counts, not what the
  connection's state says.

Escalating switches on the local sounder (an output from the config) and
sends an SMS to each duty number through the serial 4G/GSM modem. Each step
is recorded as an `escalation` event (sounder_on, sms_sent, sms_failed), so
the platform and the school's records see what the gateway did. A modem
that does not answer becomes a `fault`, and the sounder stays on.

Timing uses the monotonic clock; all the work runs on this module's own
threads, never in the engine's or the uplink's: one watches the timers, one switches
the sounders (each alarm's at its own time), one sends the SMS and checks the modem
(serial: there is one modem). An alarm's SMS follows its sounder step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.clock import mono_ns
from gateway.config import EscalationSettings
from gateway.drivers import FaultChange
from gateway.engine import Committed, Engine
from gateway.events import Point

log = logging.getLogger(__name__)

ESCALATING_TYPES = frozenset({"alarm"})


@dataclass
class _Pending:
    committed: Committed
    point: Point
    since: float
    """time.monotonic() of the commit."""
    delivered: bool = False
    escalated: bool = False
    time_synced: bool = True
    """Whether the wall clock that stamped the alarm (committed.occurred_wall_ns) was synced."""


_Sms = tuple[_Pending, str] | str | None
"""An SMS worker's item: (alarm, reason), "check-modem", or None to stop."""


class Escalation:
    """Watches committed alarms for acknowledgement and escalates the ones nobody answers."""

    def __init__(self, settings: EscalationSettings, *, engine: Engine,
                 points: dict[str, Point],
                 set_output: Callable[[str, bool, float | None], None] | None,
                 send_sms: Callable[[str, str], None] | None,
                 site: str, gateway: str,
                 check_modem: Callable[[], list[str]] | None = None,
                 clock_synced: Callable[[], bool] | None = None) -> None:
        """`set_output(output_id, on, duration_s)` switches an output (may raise);
        `send_sms(number, text)` sends one SMS, however many parts (may raise, may
        take seconds); `check_modem()` asks the modem for its SIM, network and signal and
        returns what stands in the way of an SMS (may raise), every modem_check_s;
        `clock_synced()`: whether the wall clock is synced, asked as each alarm is
        committed (None: taken as synced)."""
        self.settings = settings
        self.engine = engine
        self.points = points
        self._set_output = set_output
        self._send_sms = send_sms
        self._check_modem = check_modem
        self._clock_synced = clock_synced
        self._next_check = time.monotonic()
        self.site = site
        self.gateway = gateway
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Two workers: the sounder of every alarm goes on at its own time, never behind an
        # SMS (which can take sms_timeout_s per number) or a modem check; SMS and checks
        # stay serial on the one modem. An alarm's SMS follows its sounder step.
        self._sounder_work: queue.SimpleQueue[tuple[_Pending, str] | None] = \
            queue.SimpleQueue()
        self._sms_work: queue.SimpleQueue[_Sms] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self.escalated_total = 0
        self.modem_faulty = False

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="escalation", daemon=True)
        self._thread.start()
        self._workers = [
            threading.Thread(target=self._do_sounders, name="escalation-sounder", daemon=True),
            threading.Thread(target=self._do_sms, name="escalation-sms", daemon=True)]
        for t in self._workers:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._sounder_work.put(None)  # the sounder worker then stops the SMS worker
        for t in (self._thread, *self._workers):
            if t is not None:
                t.join(self.settings.sms_timeout_s + 5.0)
        self._thread = None
        self._workers = []

    # -- hooks (other threads) -----------------------------------------------

    def on_committed(self, c: Committed) -> None:
        """Service listener (engine thread): start the clock on every alarm."""
        if c.type not in ESCALATING_TYPES:
            return
        point = self.points.get(c.point_id)
        if point is None:
            return
        synced = self._clock_synced() if self._clock_synced is not None else True
        with self._lock:
            self._pending[c.event_id] = _Pending(c, point, time.monotonic(),
                                                 time_synced=synced)
        self._wake.set()

    def restore(self, c: Committed, *, age_s: float | None, delivered: bool,
                time_synced: bool = True) -> bool:
        """Watch an alarm committed before this process started (found in the store).

        `c.occurred_wall_ns`: the alarm's wall time, as its document gives it (0: unknown);
        `time_synced`: whether that clock was synced. `age_s`: how long ago it was
        committed, when known (same boot); otherwise its timers start now. False if its
        point is no longer configured."""
        point = self.points.get(c.point_id)
        if point is None or c.type not in ESCALATING_TYPES:
            return False
        since = time.monotonic() - (age_s if age_s is not None else 0.0)
        with self._lock:
            self._pending.setdefault(c.event_id, _Pending(c, point, since, delivered,
                                                          time_synced=time_synced))
        self._wake.set()
        return True

    def on_ack(self, event_id: str, point_id: str, ack: dict[str, Any]) -> dict[str, Any]:
        """Command dispatcher ack listener: the police have it; stop watching it.
        Never blocks: it runs before anything else the ack does."""
        with self._lock:
            p = self._pending.pop(event_id, None)
        if p is None:
            return {}
        return {"escalated": p.escalated}

    def on_delivery(self, step: str, event_ids: list[str]) -> None:
        """Delivery hook: these events reached the broker (`puback`) or the receiving
        centre of the DC-09 path (`arc_ack`): either way the alarm is out, and it escalates
        only when nobody acknowledges it."""
        if step not in ("puback", "arc_ack"):
            return
        with self._lock:
            for eid in event_ids:
                p = self._pending.get(eid)
                if p is not None:
                    p.delivered = True

    def pending(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [{"event_id": eid, "point": p.point.id, "waiting_s": round(now - p.since, 1),
                     "delivered": p.delivered, "escalated": p.escalated}
                    for eid, p in self._pending.items()]

    # -- watching ------------------------------------------------------------

    def _watch(self) -> None:
        timeout = 0.0
        while not self._stop.is_set():
            self._wake.wait(timeout)
            self._wake.clear()
            now = time.monotonic()
            due: list[tuple[_Pending, str]] = []
            s = self.settings
            # Wake at the next timer that can fire (at most a second away), not on a
            # one-second tick: an alarm escalates at its ack_timeout_s, not up to 1 s later.
            next_at = now + 1.0
            with self._lock:
                for p in self._pending.values():
                    if p.escalated:
                        continue
                    reason = None
                    if now - p.since >= s.ack_timeout_s:
                        reason = "no_ack"
                    elif not p.delivered and now - p.since >= s.uplink_down_s:
                        reason = "uplink_down"
                    if reason is not None:
                        p.escalated = True
                        due.append((p, reason))
                        continue
                    next_at = min(next_at, p.since + s.ack_timeout_s)
                    if not p.delivered:
                        next_at = min(next_at, p.since + s.uplink_down_s)
                # Forget escalated alarms after a day: nobody will ack them any more.
                for eid in [e for e, p in self._pending.items()
                            if p.escalated and now - p.since > 86400]:
                    del self._pending[eid]
            for item in due:
                self._sounder_work.put(item)
            if self._check_modem is not None:
                if now >= self._next_check:
                    self._next_check = now + s.modem_check_s
                    self._sms_work.put("check-modem")
                next_at = min(next_at, self._next_check)
            timeout = max(0.0, next_at - time.monotonic())

    # -- acting (worker threads) -----------------------------------------------

    def _record(self, p: _Pending, step: str, reason: str, **detail: Any) -> None:
        self.engine.door_escalation(p.point, step, {"for_event": p.committed.event_id,
                                                    "for_seq": p.committed.seq,
                                                    "reason": reason, **detail})

    def _do_sounders(self) -> None:
        try:
            while True:
                item = self._sounder_work.get()
                if item is None:
                    return
                p, reason = item
                try:
                    self._sound(p, reason)
                except Exception:
                    log.exception("escalation of event %s failed", p.committed.event_id)
                if self.settings.sms_to and self._send_sms is not None:
                    self._sms_work.put(item)
        finally:
            self._sms_work.put(None)

    def _do_sms(self) -> None:
        while True:
            item = self._sms_work.get()
            if item is None:
                return
            if item == "check-modem":
                self._supervise_modem()
                continue
            assert not isinstance(item, str)
            p, reason = item
            try:
                self._text(p, reason)
            except Exception:
                log.exception("escalation SMS of event %s failed", p.committed.event_id)

    def _sound(self, p: _Pending, reason: str) -> None:
        """The first step (sounder worker): count and log the escalation, switch the
        sounder on."""
        self.escalated_total += 1
        s = self.settings
        why = (f"no acknowledgement from the platform within {s.ack_timeout_s:g} s"
               if reason == "no_ack" else
               f"the alarm not delivered to the broker within {s.uplink_down_s:g} s"
               " (uplink down or not answering)")
        log.critical("ESCALATING alarm seq %d of %s (%s): %s", p.committed.seq, p.point.id,
                     p.point.name, why)
        if s.sounder is not None and self._set_output is not None:
            try:
                self._set_output(s.sounder, True, s.sounder_s)
                self._record(p, "sounder_on", reason, output=s.sounder)
            except Exception as exc:
                log.error("escalation: could not switch on sounder %s: %s", s.sounder, exc)
                self._record(p, "sounder_failed", reason, output=s.sounder, error=str(exc))

    def _text(self, p: _Pending, reason: str) -> None:
        """The second step (SMS worker): an SMS to each duty number, one after another."""
        assert self._send_sms is not None
        text = self.sms_text(p, reason)
        for number in self.settings.sms_to:
            try:
                self._send_sms(number, text)
            except Exception as exc:
                log.error("escalation: SMS to %s failed: %s", _mask(number), exc)
                self._record(p, "sms_failed", reason, to=_mask(number), error=str(exc))
                self._modem_fault(True, str(exc))
            else:
                self._record(p, "sms_sent", reason, to=_mask(number))
                self._modem_fault(False, "")

    def _supervise_modem(self) -> None:
        """A modem nobody checks is found dead on the day an alarm needs it."""
        assert self._check_modem is not None
        try:
            problems = self._check_modem()
        except Exception as exc:
            self._modem_fault(True, str(exc))
            return
        if problems:
            self._modem_fault(True, "; ".join(problems))
        else:
            self._modem_fault(False, "")

    def _modem_fault(self, active: bool, reason: str) -> None:
        if active == self.modem_faulty:
            return
        self.modem_faulty = active
        self.engine.door(FaultChange(
            "modem", "SMS modem", f"modem:{self.settings.modem_port or '-'}", active,
            (f"cannot send SMS: {reason}" if active else ""), mono_ns()))

    def sms_text(self, p: _Pending, reason: str) -> str:
        """The alarm's local wall time as its document has it (restored escalations too),
        marked when the clock that gave it was not synced."""
        wall_ns = p.committed.occurred_wall_ns
        if wall_ns > 0:
            when = time.strftime("%H:%M:%S", time.localtime(wall_ns / 1e9))
            when_cn = when if p.time_synced else f"{when}（时钟未同步）"
            when_en = when if p.time_synced else f"{when} (clock not synced)"
        else:
            when_cn, when_en = "时间不明", "time unknown"
        cause = "平台未确认接警" if reason == "no_ack" else "报警网关与平台断开"
        where = f"（{p.point.location}）" if p.point.location else ""
        return (f"【一键报警】{p.point.name}{where} {when_cn} 报警，{cause}，请立即处置。"
                f" ALARM {p.point.id} at {self.site}/{self.gateway} {when_en}, seq"
                f" {p.committed.seq}: {'no police ack' if reason == 'no_ack' else 'uplink down'}.")


def _mask(number: str) -> str:
    """Phone numbers are personal data: logs and events keep the last four digits."""
    return ("*" * max(0, len(number) - 4)) + number[-4:]

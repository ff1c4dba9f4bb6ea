"""The service's side of systemd's notify protocol (unit `Type=notify`, `WatchdogSec=`).

- READY=1 is sent once, at the end of the service's start: the store is
  open, the engine runs, the uplink thread is trying to connect, the drivers
  report and the control socket answers.
- WATCHDOG=1 is sent only while every part the alarm path needs makes
  progress, so that a stuck one stops the pings and systemd restarts the
  service:
  - the engine thread: a round trip through it (a no-op call queued behind
    whatever it is doing) came back in time, or, when it is busy with a
    backlog (a burst of events, each an fsync), its count of handled messages
    moved since the last look;
  - the store: a read under its lock (`Outbox.stats`, in a thread of its own)
    answered in time, or, when the engine keeps it busy, commits went through
    since the last look; a look that did not answer is waited for again, never
    queued anew, so a wedged store holds one thread, not one per period;
  - the uplink thread, while it has work (rows ready or in flight in the
    store): its loop turned (`Uplink.loop_turns`) within `uplink_stall_s`. An
    idle uplink is not judged; a healthy one turns at least every second while
    connected and once per connection attempt while it is not, so the default
    allows two connect timeouts, the longest reconnect backoff and a margin.
- STATUS= says the uplink's state and how many messages wait, e.g.
  "uplink connected, 0 waiting" or "uplink DOWN (broker ... refused the
  connection), 12 waiting (3 alarms)"; it is rebuilt when an event is
  committed or the uplink's state changes (connect, loss, PUBACKs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from gateway.engine import Committed, Engine
from gateway.store import Outbox, QueueStats
from gateway.systemd.notify import Heartbeat, Notifier
from gateway.uplink.mqtt import Uplink

log = logging.getLogger(__name__)

UPLINK_STALL_MARGIN_S = 10.0
"""Added to the longest gap a healthy uplink loop has between two turns (a name lookup,
a slow handshake), in seconds."""


class SystemdLink:
    """Tells systemd when the service is ready, alive and how it is doing."""

    def __init__(self, *, engine: Engine, outbox: Outbox, uplink: Uplink | None,
                 add_listener: Callable[[Callable[[Committed], None]], None],
                 notifier: Notifier | None = None,
                 uplink_stall_s: float | None = None) -> None:
        """The parts whose progress the watchdog vouches for, and `add_listener` to hear of
        every commit (the service's). `notifier`: defaults to the one `$NOTIFY_SOCKET`
        names (a no-op without it); `uplink_stall_s`: how long the uplink's loop may go
        without a turn while it has work, in seconds (default: from its broker settings)."""
        self.engine = engine
        self.outbox = outbox
        self.uplink = uplink
        self._add_listener = add_listener
        self.notifier = notifier if notifier is not None else Notifier.from_environ()
        self.heartbeat = Heartbeat(self.notifier, probe=self.probe, status=self.status_text)
        self.uplink_stall_s: float = uplink_stall_s if uplink_stall_s is not None else (
            _uplink_stall_s(uplink))
        """How long the uplink's loop may go without a turn while it has work, in seconds."""
        self._pending: Future[Any] | None = None
        self._last_loops = -1
        self._store_look: Future[QueueStats] | None = None
        self._last_commits = -1
        self._uplink_turns = -1
        self._uplink_turned_at = time.monotonic()
        self.stuck: str | None = None
        """What the last probe found stuck (None: nothing)."""
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
        self._last_commits = self.engine.committed_total + self.engine.commit_failures
        if self.uplink is not None:
            self._uplink_turns = self.uplink.loop_turns
        self._uplink_turned_at = time.monotonic()
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
        """True when the engine, the store and the uplink all made progress: each within
        `timeout_s` seconds (engine, store), the uplink as the module docstring says.
        What is stuck is in `stuck`, and logged when it changes."""
        deadline = time.monotonic() + timeout_s
        store = self._look_at_store()  # runs while the engine's round trip is waited for
        stuck: list[str] = []
        if not self._engine_moves(timeout_s):
            stuck.append(f"the engine thread has not answered within {timeout_s:.1f} s")
        answered, stats, _ = self._store_answer(store, deadline - time.monotonic())
        commits = self.engine.committed_total + self.engine.commit_failures
        busy = commits != self._last_commits  # the store took (or refused) commits meanwhile
        self._last_commits = commits
        if not answered and not busy:
            stuck.append("the store has not answered a read within"
                         f" {timeout_s:.1f} s (its lock is held)")
        elif answered and self.uplink is not None:
            # An unreadable store answered too: then the uplink's own count of rows in flight.
            waiting = stats.waiting if stats is not None else int(
                self.uplink.state().get("in_flight", 0))
            stalled = self._uplink_stalled(waiting)
            if stalled is not None:
                stuck.append(stalled)
        self._note_stuck("; ".join(stuck) or None)
        return not stuck

    def _engine_moves(self, timeout_s: float) -> bool:
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

    def _look_at_store(self) -> Future[QueueStats]:
        """A read of the store in a thread of its own; the look still running (a store
        that did not answer) rather than a new one."""
        fut = self._store_look
        if fut is None:
            fut = Future()
            self._store_look = fut

            def read(fut: Future[QueueStats] = fut) -> None:
                try:
                    fut.set_result(self.outbox.stats())
                except BaseException as exc:
                    fut.set_exception(exc)

            threading.Thread(target=read, name="sd-store-probe", daemon=True).start()
        return fut

    def _store_answer(self, fut: Future[QueueStats], timeout_s: float
                      ) -> tuple[bool, QueueStats | None, Exception | None]:
        """(whether the look answered within `timeout_s` seconds, its stats, or the error it
        answered with: an unreadable store is a fault of its own, not a hang)."""
        try:
            stats = fut.result(max(0.0, timeout_s))
        except TimeoutError:
            return False, None, None
        except Exception as exc:
            self._store_look = None
            return True, None, exc
        self._store_look = None
        return True, stats, None

    def _uplink_stalled(self, waiting: int) -> str | None:
        """Why the uplink is stuck, or None: it has work and its loop has not turned for
        longer than `uplink_stall_s`."""
        assert self.uplink is not None
        now = time.monotonic()
        turns = self.uplink.loop_turns
        if turns != self._uplink_turns:
            self._uplink_turns = turns
            self._uplink_turned_at = now
            return None
        still = now - self._uplink_turned_at
        if waiting == 0 or still <= self.uplink_stall_s:
            return None
        return (f"the uplink thread's loop has not turned for {still:.1f} s with {waiting}"
                " messages waiting")

    def _note_stuck(self, stuck: str | None) -> None:
        if stuck == self.stuck:
            return
        if stuck is not None:
            log.critical("systemd: %s; withholding WATCHDOG=1 (systemd restarts the service"
                         " if it stays so)", stuck)
        else:
            log.warning("systemd: every part of the alarm path makes progress again (was: %s)",
                        self.stuck)
        self.stuck = stuck

    def status_text(self) -> str:
        """The one-line STATUS= text: uplink state and queue depth."""
        up = self.uplink.state() if self.uplink is not None else {}
        # Never waits long on the store: the heartbeat thread builds this between pings.
        wait_s = self.heartbeat.probe_timeout_s or 1.0
        answered, stats, error = self._store_answer(self._look_at_store(), wait_s)
        if not answered:
            queue = f"store not answering within {wait_s:.1f} s"
        elif stats is None:
            queue = f"store unreadable: {error}"
        else:
            alarms = stats.lanes["alarm"]
            n_alarms = alarms.ready + alarms.in_flight
            queue = f"{stats.waiting} waiting" + (f" ({n_alarms} alarms)" if n_alarms else "")
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
            "stuck": self.stuck,
        }


def _uplink_stall_s(uplink: Uplink | None) -> float:
    """The longest a healthy uplink goes between two turns of its loop, with a margin: a
    connection attempt (TCP, then TLS, each up to the connect timeout) and the longest
    backoff after it (the reconnect maximum, plus its 20 % jitter)."""
    if uplink is None:
        return UPLINK_STALL_MARGIN_S
    s = uplink.settings
    return 2 * s.connect_timeout_s + 1.2 * s.reconnect_max_s + UPLINK_STALL_MARGIN_S

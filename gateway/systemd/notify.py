"""Telling systemd the truth: the sd_notify protocol, and a heartbeat that earns each ping.

The protocol is one datagram of `KEY=VALUE` lines to the AF_UNIX socket named
in `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading '@').
It is owned here rather than taken from the `sdnotify` package, which
swallows every error: a service whose READY=1 or WATCHDOG=1 silently goes
nowhere is restarted by systemd with nobody knowing why. Here the first
failure is logged at ERROR, naming the socket; repeats are logged at DEBUG
until a send succeeds again.

`Heartbeat` is the thread that sends WATCHDOG=1 and STATUS=. A ping is sent
only when `probe` says the service is making progress (the service's probe,
`gateway.systemd.watchdog.SystemdLink.probe`, looks at the engine, the store
and the uplink), so a stuck part stops the pings and systemd restarts the
service after `WatchdogSec=`. STATUS= is sent when its text changes (`poke()`
asks for a fresh look), never on a disk timer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

#: Longest a notify datagram may wait for room in the socket, in seconds.
SEND_TIMEOUT_S = 1.0


def _address(name: str) -> str | bytes:
    """The socket address of a `$NOTIFY_SOCKET` value: abstract names start with '@'."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode("utf-8")
    return name


class Notifier:
    """Sends sd_notify messages to the service manager; a no-op when not under systemd."""

    def __init__(self, socket_name: str | None, *, watchdog_usec: int | None = None) -> None:
        """`socket_name`: the value of `$NOTIFY_SOCKET` (None: not under systemd);
        `watchdog_usec`: the value of `$WATCHDOG_USEC`, in microseconds (None: no watchdog)."""
        self.socket_name = socket_name or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False
        self.sent = 0
        """Datagrams sent successfully (for status and tests)."""
        self.errors = 0
        """Datagrams that could not be sent."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for through `NOTIFY_SOCKET`, `WATCHDOG_USEC` and
        `WATCHDOG_PID` (a watchdog meant for another process is ignored)."""
        env = os.environ if environ is None else environ
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC")
        if raw:
            try:
                usec = int(raw)
            except ValueError:
                log.error("systemd: WATCHDOG_USEC=%r is not a number; the watchdog is not fed",
                          raw)
            pid = env.get("WATCHDOG_PID")
            if usec is not None and pid and pid.isdigit() and int(pid) != os.getpid():
                usec = None  # meant for another process of this unit
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.socket_name is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """systemd's watchdog timeout, in seconds; None when no watchdog is set."""
        if self.socket_name is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 1e6

    def notify(self, **fields: str | int) -> bool:
        """Send one message, e.g. `notify(READY=1, STATUS="...")`; True if it was sent."""
        text = "\n".join(f"{k}={v}" for k, v in fields.items())
        return self.send(text)

    def send(self, text: str) -> bool:
        if self.socket_name is None:
            return False
        data = text.encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    # A socket nobody reads (full queue) must cost a lost ping, never a
                    # thread blocked with this lock held (the service's stop waits on it).
                    self._sock.settimeout(SEND_TIMEOUT_S)
                self._sock.sendto(data, _address(self.socket_name))
            except OSError as exc:
                self.errors += 1
                first = text.partition("\n")[0]
                if not self._failing:
                    self._failing = True
                    log.error("systemd: cannot send %s to the notify socket %s: %s; systemd"
                              " will not see this service's state (with a watchdog it will"
                              " restart it)", first, self.socket_name, exc.strerror or exc)
                else:
                    log.debug("systemd: notify %s failed again: %s", first, exc)
                return False
            if self._failing:
                self._failing = False
                log.warning("systemd: the notify socket %s accepts messages again",
                            self.socket_name)
            self.sent += 1
            return True

    def ready(self, status: str | None = None) -> bool:
        if status is None:
            return self.notify(READY=1, MAINPID=os.getpid())
        return self.notify(READY=1, MAINPID=os.getpid(), STATUS=_one_line(status))

    def status(self, text: str) -> bool:
        return self.notify(STATUS=_one_line(text))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        if status is None:
            return self.notify(STOPPING=1)
        return self.notify(STOPPING=1, STATUS=_one_line(status))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Heartbeat:
    """Feeds systemd's watchdog while `probe` passes, and keeps STATUS= current.

    One thread. Every half watchdog period it calls `probe(timeout_s)`, which
    must return True only when the service made progress within `timeout_s`
    seconds; only then is WATCHDOG=1 sent. `status()` builds the STATUS= text;
    it is re-read when `poke()` is called (from any thread, never blocking) and
    sent only when it changed, at most every `min_status_gap_s` seconds.
    """

    def __init__(self, notifier: Notifier, *, probe: Callable[[float], bool],
                 status: Callable[[], str], min_status_gap_s: float = 0.2) -> None:
        """`probe(timeout_s)`: True when the service is making progress;
        `status()`: the one-line STATUS= text; `min_status_gap_s`: least time between
        two STATUS= messages, in seconds."""
        self.notifier = notifier
        self._probe = probe
        self._status = status
        self._gap = min_status_gap_s
        interval = notifier.watchdog_interval_s
        self.ping_every_s: float | None = interval / 2 if interval else None
        """Seconds between two watchdog probes (half of WatchdogSec=), or None."""
        self.probe_timeout_s: float = min(self.ping_every_s / 2, 10.0) if self.ping_every_s \
            else 0.0
        """How long the probe may take before the ping is withheld, in seconds."""
        self._cond = threading.Condition()
        self._poked = True
        self._stop = False
        self._thread: threading.Thread | None = None
        self.last_status: str | None = None
        self.pings = 0
        """WATCHDOG=1 messages sent."""
        self.withheld = 0
        """Probes that failed, so that no WATCHDOG=1 was sent."""
        self._stuck_logged = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sd-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.probe_timeout_s + 5.0)
            self._thread = None

    def poke(self) -> None:
        """Something the status shows may have changed: look again soon."""
        with self._cond:
            self._poked = True
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Heartbeat], bool], timeout: float) -> bool:
        """Block until `predicate(self)` holds (checked after each probe or status)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def _run(self) -> None:
        next_ping = time.monotonic()
        last_status_at = -1e9
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    now = time.monotonic()
                    due_ping = self.ping_every_s is not None and now >= next_ping
                    due_status = self._poked and now - last_status_at >= self._gap
                    if due_ping or due_status:
                        break
                    waits = []
                    if self.ping_every_s is not None:
                        waits.append(next_ping - now)
                    if self._poked:
                        waits.append(self._gap - (now - last_status_at))
                    self._cond.wait(max(0.0, min(waits)) if waits else None)
                if due_status:
                    self._poked = False
            if due_status:
                last_status_at = time.monotonic()
                self._send_status()
            if due_ping:
                assert self.ping_every_s is not None
                next_ping = time.monotonic() + self.ping_every_s
                self._ping()

    def _send_status(self) -> None:
        try:
            text = _one_line(self._status())
        except Exception:
            log.exception("systemd: could not build the STATUS= text")
            return
        if text != self.last_status and self.notifier.status(text):
            self.last_status = text
        with self._cond:
            self._cond.notify_all()

    def _ping(self) -> None:
        try:
            alive = self._probe(self.probe_timeout_s)
        except Exception:
            log.exception("systemd: the watchdog probe failed")
            alive = False
        if alive:
            if self._stuck_logged:
                self._stuck_logged = False
                log.warning("systemd: the service makes progress again; feeding the watchdog")
            if self.notifier.watchdog():
                self.pings += 1
        else:
            self.withheld += 1
            if not self._stuck_logged:
                self._stuck_logged = True
                log.critical("systemd: the watchdog probe saw no progress within %.1f s;"
                             " withholding WATCHDOG=1 so that systemd restarts the service if"
                             " it stays stuck", self.probe_timeout_s)
        with self._cond:
            self._cond.notify_all()

"""A private, real Mosquitto broker on loopback, for tests, the demo and the platform console.

The gateway promises to survive broker outages, so the tests need a real broker that they can
kill and bring back on the same port. :class:`Mosquitto` runs Debian's ``mosquitto`` binary
with a generated config in a work directory, on ``127.0.0.1`` and a port chosen by the OS,
optionally with a (mutual) TLS listener. :meth:`Mosquitto.start` returns only when the broker
accepts connections; :meth:`Mosquitto.kill` is a hard outage (SIGKILL) that keeps the port, so
that the next :meth:`Mosquitto.start` comes back where clients expect it.

Nothing here is global: no atexit hooks, no signal handlers. Use the class as a context manager
(or call :meth:`Mosquitto.stop` in a ``finally``) so that no broker outlives its owner.
Instances are not thread-safe: one owner drives start, kill and stop.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from hw_sim.lifeline import die_with_parent

log = logging.getLogger(__name__)

#: Where Debian (and Raspberry Pi OS) install the broker; /usr/sbin is often not on a user's PATH.
DEBIAN_MOSQUITTO = Path("/usr/sbin/mosquitto")

#: Logged by Mosquitto 2.x once its listeners are open ("mosquitto version 2.0.11 running").
_READY_RE = re.compile(rb"mosquitto version \S+ running")
#: Logged by Mosquitto when it cannot bind its listener.
_IN_USE = b"Address already in use"

#: How often the log file and the port are polled while waiting for readiness, in seconds.
_POLL_INTERVAL = 0.01
#: How long a pinned port (a restart after kill, or a requested port) is retried, in seconds.
_PINNED_PORT_RETRY = 5.0
#: Pause between two binds of a pinned port that was busy, in seconds.
_PINNED_PORT_BACKOFF = 0.05
#: How many OS-chosen ports are tried when another process takes the port meanwhile.
_FREE_PORT_ATTEMPTS = 5
#: How long stop() waits after SIGTERM before it sends SIGKILL, in seconds.
_STOP_GRACE = 5.0
#: How much of the end of the log file log_tail() reads, in bytes.
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class TlsListener:
    """TLS settings for the broker's listener.

    Attributes:
        ca: PEM file of the CA that client certificates must chain to (also sent to clients
            as the trust anchor they should use).
        cert: PEM file of the broker's certificate; its SANs must name the host clients dial.
        key: PEM file of the broker's private key.
        require_certificate: mutual TLS: refuse clients without a certificate from ``ca``.
            When true the certificate's CN also becomes the MQTT username.
    """

    ca: Path
    cert: Path
    key: Path
    require_certificate: bool = True


class _PortInUse(Exception):
    """Mosquitto exited because its port was taken (internal: drives the retry)."""


def find_mosquitto() -> Path:
    """Return the path of the ``mosquitto`` binary.

    Looks on ``PATH`` first, then at Debian's ``/usr/sbin/mosquitto``.

    Raises:
        FileNotFoundError: Mosquitto is not installed; the message says how to install it.
    """
    found = shutil.which("mosquitto")
    if found is not None:
        return Path(found)
    if os.access(DEBIAN_MOSQUITTO, os.X_OK):
        return DEBIAN_MOSQUITTO
    raise FileNotFoundError(
        "mosquitto broker not found on PATH or at /usr/sbin/mosquitto; install it with "
        "'sudo apt-get install mosquitto' (or run scripts/setup)"
    )


def _free_port(host: str) -> int:
    """Return a TCP port on ``host`` that the OS considers free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_conf_value(name: str, value: str) -> str:
    """Return ``value`` if Mosquitto's config parser can take it verbatim, else raise."""
    # Mosquitto takes the rest of the line (inner spaces are fine) and strips its ends.
    if not value or "\n" in value or "\r" in value or value != value.strip():
        raise ValueError(
            f"mosquitto config: {name} {value!r} must be one line without surrounding spaces"
        )
    return value


def _tail_lines(data: bytes, n: int) -> str:
    """Return the last ``n`` lines of ``data`` as text."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-n:])


class Mosquitto:
    """A private Mosquitto broker process listening on ``127.0.0.1``.

    Args:
        workdir: directory for the generated ``mosquitto.conf`` and ``mosquitto.log``;
            created if missing.
        tls: serve TLS (optionally mutual TLS) on the listener instead of plain MQTT.
        port: listen on this TCP port instead of one chosen by the OS.
        extra_conf: config lines appended after the listener block (so listener options
            there apply to this listener; a ``listener`` line there starts another one).
        executable: the broker binary; default: :func:`find_mosquitto`.

    Raises:
        FileNotFoundError: Mosquitto is not installed.
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TlsListener | None = None,
        port: int | None = None,
        extra_conf: str = "",
        executable: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.extra_conf = extra_conf
        self.executable = executable if executable is not None else find_mosquitto()
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port of the listener (known after the first :meth:`start`).

        Raises:
            RuntimeError: no port was requested and the broker has never started.
        """
        if self._port is None:
            raise RuntimeError("broker port is not known before start()")
        return self._port

    @property
    def is_running(self) -> bool:
        """Whether the broker process is alive (a broker that died by itself is reaped here)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id of the running broker, or None."""
        return self._proc.pid if self.is_running and self._proc is not None else None

    @property
    def conf_path(self) -> Path:
        """The generated config file."""
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        """The broker's log file (Mosquitto's own log plus its stdout and stderr)."""
        return self.workdir / "mosquitto.log"

    def log_tail(self, n: int = 40) -> str:
        """Return the last ``n`` lines of the broker's log (empty if there is none yet)."""
        try:
            with self.log_path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - _TAIL_BYTES))
                return _tail_lines(f.read(), n)
        except FileNotFoundError:
            return ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and return once it accepts TCP connections.

        The first start without a requested port takes a port from the OS and retries with a
        new one if another process grabs it meanwhile. Later starts (after :meth:`kill` or
        :meth:`stop`) reuse the same port, retrying the bind for up to 5 s.

        Args:
            timeout: how long to wait for the broker to come up, in seconds.

        Raises:
            RuntimeError: the broker is already running, exited, could not bind its port, or
                was not ready within ``timeout``; the message carries the log tail.
        """
        if self.is_running:
            raise RuntimeError(f"mosquitto already running on port {self._port}")
        self._proc = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        now = time.monotonic()
        deadline = now + timeout
        pinned = self._port is not None
        pinned_deadline = min(deadline, now + _PINNED_PORT_RETRY)
        attempt = 0
        while True:
            attempt += 1
            port = self._port if self._port is not None else _free_port(self.host)
            try:
                self._start_once(port, deadline)
            except RuntimeError as exc:
                if attempt > 1 and pinned:
                    raise RuntimeError(
                        f"mosquitto could not bind {self.host}:{port}: address in use, then {exc}"
                    ) from exc
                raise
            except _PortInUse:
                if pinned:
                    if time.monotonic() + _PINNED_PORT_BACKOFF >= pinned_deadline:
                        raise RuntimeError(
                            f"mosquitto could not bind {self.host}:{port}: address in use; "
                            f"log tail:\n{self.log_tail()}"
                        ) from None
                    log.debug("broker port %d still in use, retrying", port)
                    # Nothing signals that a port became free: back off briefly and retry.
                    time.sleep(_PINNED_PORT_BACKOFF)
                elif attempt >= _FREE_PORT_ATTEMPTS:
                    raise RuntimeError(
                        f"mosquitto could not bind a free port in {attempt} attempts; "
                        f"log tail:\n{self.log_tail()}"
                    ) from None
                else:
                    log.debug("free port %d was taken meanwhile, trying another", port)
                continue
            self._port = port
            assert self._proc is not None
            log.info(
                "mosquitto broker up on %s:%d (%s, pid %d)",
                self.host,
                port,
                "TLS" if self.tls else "plain",
                self._proc.pid,
            )
            return

    def restart(self, timeout: float = 10.0) -> None:
        """Kill the broker if it runs (an outage), then start it again on the same port.

        Args:
            timeout: how long to wait for the broker to come up, in seconds.
        """
        self.kill()
        self.start(timeout)

    def kill(self) -> None:
        """SIGKILL the broker and reap it: an outage. The port is kept for the next start()."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.info("mosquitto broker on port %s killed (pid %d)", self._port, proc.pid)

    def stop(self) -> None:
        """Stop the broker: SIGTERM, wait up to 5 s, then SIGKILL; always reaps it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                log.warning(
                    "mosquitto broker (pid %d) ignored SIGTERM for %.0f s; killing it",
                    proc.pid,
                    _STOP_GRACE,
                )
                proc.kill()
                proc.wait()
        log.info("mosquitto broker on port %s stopped (pid %d)", self._port, proc.pid)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<Mosquitto {self.host}:{self._port} {state} workdir={str(self.workdir)!r}>"

    # -- internals ---------------------------------------------------------------------------

    def _config(self, port: int) -> str:
        """Return the config file text for a listener on ``port``."""
        lines = [
            "# Generated by hw_sim.broker on every start; edits are lost.",
            "persistence false",
            f"log_dest file {_check_conf_value('log_dest', str(self.log_path))}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "allow_anonymous true",
            "max_queued_messages 100000",
            # As a platform's broker should: no Nagle delay on small alarm messages.
            "set_tcp_nodelay true",
        ]
        try:
            # As root Mosquitto would switch to the "mosquitto" user, which cannot read a
            # private work directory; naming ourselves keeps it as is (no-op for non-root).
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        except KeyError:
            pass
        lines.append(f"listener {port} {self.host}")
        if self.tls is not None:
            lines += [
                f"cafile {_check_conf_value('cafile', str(self.tls.ca))}",
                f"certfile {_check_conf_value('certfile', str(self.tls.cert))}",
                f"keyfile {_check_conf_value('keyfile', str(self.tls.key))}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
                "tls_version tlsv1.2",
            ]
            if self.tls.require_certificate:
                lines.append("use_identity_as_username true")
        if self.extra_conf:
            lines.append(self.extra_conf)
        return "\n".join(lines) + "\n"

    def _read_log_from(self, offset: int) -> bytes:
        """Return what the log file holds from byte ``offset`` on."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def _start_once(self, port: int, deadline: float) -> None:
        """Spawn Mosquitto on ``port`` and wait until it is ready.

        Raises:
            _PortInUse: the broker exited because the port was taken.
            RuntimeError: the broker exited for another reason or was not ready by ``deadline``.
        """
        self.conf_path.write_text(self._config(port), encoding="utf-8")
        with self.log_path.open("ab") as logf:
            offset = logf.tell()
            log.debug("starting %s -c %s", self.executable, self.conf_path)
            # The child writes its stdout and stderr (messages from before the log file is
            # open, such as a bad certificate) to the log; our copy of the fd closes here.
            # Its own session keeps a terminal's Ctrl-C from killing the broker before its
            # clients have shut down cleanly: this object alone decides when it goes.
            proc = subprocess.Popen(
                [str(self.executable), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                close_fds=True,
                start_new_session=True,
                # A killed demo or test takes its broker along (see hw_sim.lifeline).
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
        self._proc = proc
        try:
            self._wait_ready(proc, port, offset, deadline)
        except BaseException:
            self._proc = None
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise

    def _wait_ready(
        self, proc: subprocess.Popen[bytes], port: int, offset: int, deadline: float
    ) -> None:
        """Wait for the "running" log line, then for a TCP connect to succeed."""
        while True:
            new = self._read_log_from(offset)
            if _READY_RE.search(new):
                break
            if proc.poll() is not None:
                new = self._read_log_from(offset)
                if _IN_USE in new:
                    raise _PortInUse(port)
                raise RuntimeError(
                    f"mosquitto exited with status {proc.returncode} while starting on port "
                    f"{port}; log tail:\n{_tail_lines(new, 40)}"
                )
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"mosquitto was not ready on port {port} in time; log tail:\n"
                    f"{_tail_lines(new, 40)}"
                )
            # A log file gives no event to wait on; poll it briefly.
            time.sleep(_POLL_INTERVAL)
        while True:
            remaining = deadline - time.monotonic()
            try:
                with socket.create_connection((self.host, port), timeout=max(remaining, 0.1)):
                    return
            except OSError as exc:
                if proc.poll() is not None or remaining <= 0:
                    raise RuntimeError(
                        f"mosquitto logged 'running' but {self.host}:{port} does not accept "
                        f"connections ({exc}); log tail:\n{self.log_tail()}"
                    ) from exc
            time.sleep(_POLL_INTERVAL)

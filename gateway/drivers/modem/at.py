"""The AT command exchange on a serial port: lines, unsolicited codes, errors, the prompt.

`AtPort` holds the port and knows how to send one command and take its answer; what to
say (SIM, network, SMS) is `Modem`'s business, which builds on it.

- Every read is bounded: the port is read in short polls up to a deadline; a modem that
  does not answer is a `ModemNotAnsweringError` or a `ModemTimeoutError`, never a hang.
  Unsolicited result codes (`+CMTI`, `RING`, `^RSSI`, `+CREG: 1`...) interleaved with
  answers are skipped: an answer is only the line with the expected prefix, or a final
  result code.
- After a timeout the port resynchronises before the next command (ESC to abort a
  half-typed SMS, drain until the line is quiet, `AT` until OK), so a late answer is not
  taken for the next command's.
- An error line becomes a `ModemCommandError` (or its SIM, network or SMS subclass) with
  the meaning of its code and what to check (`gateway.drivers.modem.codes`).

Not thread-safe by itself: `Modem` serialises every call.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import termios
import time

import serial

from gateway.drivers.modem.codes import (
    CME_ERRORS,
    CMS_ERRORS,
    NET_CME,
    NET_CMS,
    SIM_CME,
    SIM_CMS,
)
from gateway.errors import (
    ModemClosedError,
    ModemCommandError,
    ModemError,
    ModemNetworkError,
    ModemNotAnsweringError,
    ModemOpenError,
    ModemSimError,
    ModemSmsError,
    ModemTimeoutError,
)

log = logging.getLogger(__name__)

#: Ends the text of an SMS in text mode.
CTRL_Z = b"\x1a"
#: Aborts an SMS at the "> " prompt without sending it.
ESC = b"\x1b"

#: Longest single read of the port, in seconds: bounds how late a deadline or close() is seen.
_POLL_S = 0.05
#: Silence that counts as "the modem has finished talking" during a resync, in seconds.
_QUIET_S = 0.1
#: How many times an `AT` is tried before the modem counts as not answering.
_PROBE_ATTEMPTS = 2

_ERROR_RE = re.compile(r"\+(CMS|CME) ERROR:\s*(.*)")
_EOL_RE = re.compile(rb"[\r\n]")
#: What a serial port raises when the device went away (termios.error is no OSError).
_PORT_ERRORS = (serial.SerialException, OSError, TypeError, termios.error)

#: Lines without "+" or "^" that modems send unsolicited (boot banners, calls).
_BARE_URCS = frozenset({
    "RING", "RDY", "SMS READY", "CALL READY", "PB DONE", "SMS DONE", "NO CARRIER",
    "POWERED DOWN", "NORMAL POWER DOWN", "START", "+PBREADY",
})


def _command_name(cmd: str) -> str:
    """Return an AT command without its arguments ("AT+CPIN" for 'AT+CPIN="1234"')."""
    m = re.match(r"AT([+^&][A-Z0-9]+|[A-Z])?", cmd, re.IGNORECASE)
    return m.group(0).upper() if m else cmd[:8]


def loggable(cmd: str) -> str:
    """Return `cmd` fit for a log: no PIN, no phone number."""
    name = _command_name(cmd)
    if name in ("AT+CPIN", "AT+CMGS") and "=" in cmd:
        return name + "=<hidden>"
    return cmd


def _is_urc(line: str) -> bool:
    """Whether `line` looks like an unsolicited result code rather than an answer."""
    return line[:1] in ("+", "^") or line.upper() in _BARE_URCS


def is_final_error(line: str) -> bool:
    return line == "ERROR" or line.startswith(("+CME ERROR:", "+CMS ERROR:"))


def parse_error(line: str) -> tuple[str, int | None, str]:
    """Return (kind "CMS"/"CME"/"", code or None, the modem's own words) of an error line."""
    m = _ERROR_RE.fullmatch(line)
    if m is None:
        return "", None, ""
    kind, rest = m.group(1), m.group(2).strip()
    if rest.isdigit():
        return kind, int(rest), ""
    # Verbose errors (AT+CMEE=2): find the code from the standard wording.
    table = CMS_ERRORS if kind == "CMS" else CME_ERRORS
    for code, (meaning, _hint) in table.items():
        if meaning.lower() == rest.lower():
            return kind, code, rest
    return kind, None, rest


class Prompt:
    """The "> " prompt after AT+CMGS (a marker, not a line)."""


PROMPT = Prompt()


class AtPort:
    """One serial port with an AT modem on it: bounded reads, lines, one command at a time.

    The port is opened by `_ensure_ready` (so lazily, by the first command of a call),
    held with an exclusive lock, and dropped after a port-level failure: the next call
    opens it again (a USB modem that reset comes back under the same name).
    """

    def __init__(self, port: str, baud: int, timeout_s: float) -> None:
        self.port = str(port)
        self.baud = baud
        self.timeout_s = timeout_s
        self._ser: serial.Serial | None = None
        self._buf = bytearray()
        self._ready = False
        """The modem answered AT since the port opened and since the last timeout."""
        self._closing = False
        """A close() from another thread is under way: reads in progress end."""

    # -- the port -------------------------------------------------------------------------

    def _open_port(self) -> None:
        try:
            ser = serial.Serial(port=self.port, baudrate=self.baud, timeout=_POLL_S,
                                write_timeout=self.timeout_s, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ModemOpenError(self._open_problem(exc), port=self.port) from exc
        self._ser = ser
        self._buf.clear()
        self._ready = False
        log.debug("modem port %s open at %d bit/s", self.port, self.baud)

    def _open_problem(self, exc: Exception) -> str:
        code = getattr(exc, "errno", None)
        where = f"cannot open the modem port {self.port}"
        if code == errno.ENOENT:
            return (f"{where}: it does not exist: is the modem plugged in and powered (lsusb,"
                    " dmesg | grep ttyUSB)? ttyUSB numbers can change: prefer the"
                    " /dev/serial/by-id/... link of the AT interface")
        if code == errno.EACCES:
            return (f"{where}: permission denied: add the service user to the dialout group"
                    " (sudo usermod -aG dialout alarmgw) and restart the service")
        if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
            return (f"{where}: another program holds it (another alarmgw, minicom or"
                    f" ModemManager?): find it with 'sudo fuser -v {self.port}'")
        if isinstance(exc, ValueError):
            return f"{where}: {exc} (check the modem baud setting)"
        return f"{where}: {exc}"

    def _drop_port(self) -> None:
        ser, self._ser = self._ser, None
        self._ready = False
        self._buf.clear()
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()
            log.debug("modem port %s closed", self.port)

    def _port(self, command: str) -> serial.Serial:
        if self._closing:
            raise ModemClosedError(f"modem on {self.port} was closed during {command}",
                                   port=self.port, command=command)
        if self._ser is None:
            raise ModemClosedError(f"modem on {self.port} is not open", port=self.port,
                                   command=command)
        return self._ser

    def _port_failed(self, command: str, exc: Exception) -> ModemError:
        self._drop_port()
        # termios.error carries (errno, text) and prints as a tuple.
        why = exc.args[1] if isinstance(exc, termios.error) and len(exc.args) > 1 else exc
        return ModemError(
            f"modem port {self.port} failed during {command} ({why}): was the modem unplugged"
            " or did it reset? check dmesg; the next call opens it again",
            port=self.port, command=command)

    def _write(self, data: bytes, command: str) -> None:
        ser = self._port(command)
        try:
            ser.write(data)
        except serial.SerialTimeoutException as exc:
            self._ready = False
            raise ModemTimeoutError(
                f"modem on {self.port} does not take input ({command} not written within"
                f" {self.timeout_s:.1f} s): power-cycle the modem",
                port=self.port, command=command) from exc
        except _PORT_ERRORS as exc:
            raise self._port_failed(command, exc) from exc

    def _fill(self, command: str) -> None:
        """Read what the modem sent, waiting at most one poll interval for a first byte."""
        ser = self._port(command)
        try:
            data = ser.read(max(1, ser.in_waiting))
        except _PORT_ERRORS as exc:
            raise self._port_failed(command, exc) from exc
        if self._closing:
            raise ModemClosedError(f"modem on {self.port} was closed during {command}",
                                   port=self.port, command=command)
        self._buf += data

    def _flush_input(self, command: str) -> None:
        """Forget whatever arrived before a new command: stale answers, URCs."""
        ser = self._port(command)
        try:
            ser.reset_input_buffer()
        except _PORT_ERRORS as exc:
            raise self._port_failed(command, exc) from exc
        self._buf.clear()

    def _pop_line(self) -> str | None:
        while True:
            m = _EOL_RE.search(self._buf)
            if m is None:
                return None
            cut = m.start()
            raw = bytes(self._buf[:cut])
            del self._buf[:cut + 1]
            line = raw.decode("ascii", "replace").strip()
            if line:
                return line

    def _next(self, deadline: float, command: str, *, prompt: bool = False) -> str | Prompt | None:
        """Return the next non-empty line (or the prompt), or None at the deadline."""
        while True:
            line = self._pop_line()
            if line is not None:
                if prompt and line == ">":
                    return PROMPT
                return line
            if prompt and self._buf.strip() == b">":
                self._buf.clear()
                return PROMPT
            if time.monotonic() >= deadline:
                return None
            self._fill(command)

    def _drain_quiet(self, command: str) -> None:
        """Read and drop input until the modem has been quiet for a moment (bounded)."""
        deadline = time.monotonic() + self.timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            before = len(self._buf)
            self._fill(command)
            if len(self._buf) != before:
                quiet_since = time.monotonic()
                self._buf.clear()
            elif time.monotonic() - quiet_since >= _QUIET_S:
                return

    # -- commands -------------------------------------------------------------------------

    def _command(self, cmd: str, *, expect: str | None = None, plain: bool = False,
                 accept_zero: bool = False) -> list[str]:
        """Send one AT command and return its information lines.

        Args:
            cmd: the command without the trailing CR.
            expect: the prefix of its information lines (e.g. "+CSQ:"); other lines are
                unsolicited and skipped. None: every line that is not a URC is information.
            plain: with `expect`, also take lines without the prefix that are not URCs
                (commands like +CGSN that some modems answer with a prefix, others without).
            accept_zero: take "0" as OK (a modem set to numeric results, ATV0).
        """
        name = _command_name(cmd)
        self._flush_input(name)
        log.debug("modem %s << %s", self.port, loggable(cmd))
        self._write(cmd.encode("ascii") + b"\r", name)
        deadline = time.monotonic() + self.timeout_s
        info: list[str] = []
        while True:
            line = self._next(deadline, name)
            if line is None:
                self._ready = False
                raise ModemTimeoutError(
                    f"modem on {self.port} gave no answer to {name} within {self.timeout_s:.1f}"
                    " s: it may be hung or resetting; power-cycle it if this repeats",
                    port=self.port, command=name)
            assert isinstance(line, str)  # no prompt asked for
            if line.upper() == cmd.upper():
                continue  # echo (the modem was reset and echoes again)
            if line == "OK" or (accept_zero and line == "0"):
                return info
            if is_final_error(line):
                raise self._error(name, line)
            if expect is not None and line.startswith(expect):
                info.append(line[len(expect):].strip())
            elif (expect is None or plain) and not _is_urc(line):
                info.append(line)
            else:
                log.debug("modem %s: skipped unsolicited %r during %s", self.port, line, name)

    def _error(self, command: str, line: str, *, sms: bool = False) -> ModemCommandError:
        """Build the error for a final error `line` in answer to `command`."""
        kind, code, words = parse_error(line)
        table = CMS_ERRORS if kind == "CMS" else CME_ERRORS
        meaning, hint = table.get(code, ("", "")) if code is not None else ("", "")
        cls: type[ModemCommandError] = ModemSmsError if sms else ModemCommandError
        if (kind == "CMS" and code in SIM_CMS) or (kind == "CME" and code in SIM_CME):
            cls = ModemSimError
        elif (kind == "CMS" and code in NET_CMS) or (kind == "CME" and code in NET_CME):
            cls = ModemNetworkError
        if not kind:
            meaning = "(no reason given)"
            hint = ("check the SIM (AT+CPIN?) and the registration (AT+CREG?)" if sms
                    else "the modem refused the command")
        detail = meaning or words
        msg = f"modem on {self.port}: {command} failed with {line}"
        if detail and detail.lower() not in line.lower():
            msg += f" {detail}"
        if hint:
            msg += f": {hint}"
        return cls(msg, port=self.port, command=command, code=code, reply=line)

    def _ensure_ready(self) -> None:
        """Open the port if needed and, after an open or a timeout, resynchronise."""
        if self._ser is None:
            self._open_port()
        if self._ready:
            # Every call first proves the modem is alive, so that a modem that went silent
            # since the last call is reported as not answering, not as a failed command.
            try:
                self._command("AT")
                return
            except ModemTimeoutError:
                log.info("modem on %s stopped answering; resynchronising", self.port)
        # An earlier process (or a timed-out call) may have left the modem at the "> "
        # prompt: ESC aborts that SMS; then wait until the modem has said all it will.
        self._write(ESC + b"\r", "AT")
        self._drain_quiet("AT")
        for attempt in range(1, _PROBE_ATTEMPTS + 1):
            try:
                self._command("AT", accept_zero=True)
                break
            except ModemTimeoutError:
                log.debug("modem %s: no answer to AT (attempt %d)", self.port, attempt)
        else:
            raise ModemNotAnsweringError(
                f"modem on {self.port} does not answer AT: check the port (ls -l"
                f" /dev/serial/by-id/ /dev/ttyUSB*: the AT port is often the third, ttyUSB2),"
                f" the baud rate ({self.baud}) and that ModemManager is not holding it"
                " (sudo systemctl disable --now ModemManager)",
                port=self.port, command="AT")
        self._command("ATV1", accept_zero=True)
        self._command("ATE0")
        try:
            self._command("AT+CMEE=1")
        except ModemCommandError:
            log.info("modem on %s refuses AT+CMEE=1: its errors will carry no codes", self.port)
        self._ready = True

"""A simulated 4G/GSM modem on a socat pseudo-terminal pair, for tests and the simulator.

The escalation path texts duty phones through a USB modem. :class:`SimModem` stands in for
it on any Linux machine: ``socat`` makes two linked pseudo-terminals, the driver opens one
with pyserial exactly as it opens /dev/ttyUSB2 on a Pi, and a thread on the other end
answers AT commands like a SIMCom/Quectel module does:

- echo on until ``ATE0``; ``ATV0/1``; ``AT+CMEE`` (0: ERROR, 1: numeric, 2: verbose
  +CME ERROR); ``AT+CGMI/CGMM/CGSN``; ``AT+CPIN?`` and ``AT+CPIN="..."`` with a PIN that
  blocks after three wrong tries; ``AT+CSQ``; ``AT+CREG?``/``AT+CEREG?``;
- SMS in text mode only: ``AT+CMGF``, ``AT+CSCS`` (IRA, GSM, UCS2: the destination is
  decoded in the current character set), ``AT+CSMP`` (the DCS decides how the text is
  read: 8 = hex UCS2, at most 140 octets), ``AT+CSCA``, and ``AT+CMGS`` with the ``> ``
  prompt, Ctrl-Z to send, ESC to abort, and ``+CMGS: <mr>`` references counting 0..255.

It records every SMS part it is asked to send (destination and decoded text, in order)
and reassembles numbered series "(1/3) ..." into :attr:`SimModem.messages`, as the person
holding the phone would read them. It can be told to fail: say nothing at all, answer
ERROR or +CMS ERROR to AT+CMGS, have no SIM or a locked one, have no network, answer
slowly, and it can send unsolicited result codes between and inside its answers.

The simulator does not use the gateway's encoder: a bug there must show here as a wrong
number or text. Use it as a context manager (or call :meth:`SimModem.stop`): it leaves no
process, thread or file descriptor behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import select
import shutil
import struct
import subprocess
import termios
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from hw_sim.lifeline import die_with_parent

log = logging.getLogger(__name__)

#: The faults :meth:`SimModem.set_fault` knows.
SimFault = Literal["none", "silent", "cmgs_error", "cms_500", "no_sim", "sim_pin",
                   "not_registered", "slow"]
SimState = Literal["ready", "absent", "pin", "puk"]
SimRegistration = Literal["home", "roaming", "searching", "not_registered", "denied"]

_REG_STAT: dict[str, int] = {"not_registered": 0, "home": 1, "searching": 2, "denied": 3,
                             "roaming": 5}
_CME_WORDS: dict[int, str] = {3: "operation not allowed", 4: "operation not supported",
                              10: "SIM not inserted", 11: "SIM PIN required",
                              12: "SIM PUK required", 16: "incorrect password"}
_BASIC_RE = re.compile(r"(?:[EVQ][01]?|Z|I|&F)+")
_BASIC_TOKEN_RE = re.compile(r"([EVQ])([01]?)|(Z)|(I)|(&F)")
_EXTENDED_RE = re.compile(r"([+^][A-Z]+)(=\?|\?|=(.*))?", re.IGNORECASE | re.DOTALL)
_CMGS_ARGS_RE = re.compile(r'"([^"]*)"(?:,(\d+))?')
_SERIES_RE = re.compile(r"\((\d+)/(\d+)\) ")
_PTY_RE = re.compile(rb"PTY is (\S+)")
_READY_LINE = b"starting data transfer loop"

#: How long start() waits for socat's pseudo-terminals, in seconds (default).
_START_TIMEOUT = 5.0
#: How long a reply may wait for the driver side to take bytes before it is dropped, in s.
_WRITE_STALL_S = 1.0
#: How long stop() waits for socat after SIGTERM before SIGKILL, in seconds.
_STOP_GRACE = 5.0


@dataclass(frozen=True)
class SimSmsPart:
    """One AT+CMGS the simulated modem accepted."""

    number: str
    """The destination, decoded from the current character set."""
    text: str
    """The text, decoded as the data coding scheme says."""
    ref: int
    """The message reference the modem answered (+CMGS: <ref>)."""
    toda: int | None
    """The type of address given after the number (145 international, 129 national)."""
    dcs: int
    """The data coding scheme from AT+CSMP (8: UCS2)."""
    charset: str
    """The AT+CSCS character set at the time."""
    raw: str
    """The text exactly as the driver typed it (hex for UCS2)."""


@dataclass(frozen=True)
class SimSms:
    """A message as the recipient reads it: one part, or a complete numbered series."""

    number: str
    text: str
    """The text with the "(i/n) " prefixes of a series removed and the parts joined."""
    parts: tuple[SimSmsPart, ...]


def assemble(parts: list[SimSmsPart]) -> list[SimSms]:
    """Group `parts` into messages: a part without "(i/n) " is one; a series "(1/n)".."(n/n)"
    to the same number is one once complete (an incomplete series yields nothing)."""
    out: list[SimSms] = []
    pending: dict[str, list[tuple[SimSmsPart, str]]] = {}
    for part in parts:
        m = _SERIES_RE.match(part.text)
        if m is None:
            out.append(SimSms(part.number, part.text, (part,)))
            continue
        i, n = int(m.group(1)), int(m.group(2))
        series = pending.get(part.number, [])
        if i == 1:
            series = []
        elif len(series) != i - 1:
            continue  # a part out of order or of a broken series
        series.append((part, part.text[m.end():]))
        pending[part.number] = series
        if i == n:
            out.append(SimSms(part.number, "".join(t for _, t in series),
                              tuple(p for p, _ in series)))
            pending.pop(part.number)
    return out


def find_socat() -> str:
    """Return the socat binary's path.

    Raises:
        FileNotFoundError: socat is not installed; the message says how to install it.
    """
    found = shutil.which("socat")
    if found is None:
        raise FileNotFoundError("socat not found: install it with 'sudo apt-get install socat'"
                                " (or run scripts/setup)")
    return found


class SimModem:
    """A simulated AT modem behind a pseudo-terminal that the driver opens as `port`.

    Args:
        workdir: directory for the two pseudo-terminal links (`<name>` for the driver,
            `<name>-sim` for the simulator's side); created if missing.
        name: the driver-side link's file name.
        manufacturer, model, imei: what AT+CGMI, AT+CGMM and AT+CGSN answer.
        pin: the SIM's PIN when it is locked (`sim = "pin"`).
        smsc: the SMS centre address AT+CSCA? answers.

    Knobs a test may set at any time (they apply from the next command):

    - `silent`: read everything, answer nothing (a dead modem, a wrong port);
    - `sim`: "ready", "absent", "pin" (needs `pin`), "puk";
    - `registration`: "home", "roaming", "searching", "not_registered", "denied";
    - `rssi`: the AT+CSQ signal level 0..31, or 99 (unknown);
    - `delay_s`: seconds before every answer (a slow modem);
    - `sms_delay_s`: seconds the network takes to accept an SMS after Ctrl-Z;
    - `sms_reply` / `sms_reply_before_prompt`: answer AT+CMGS with this final line
      (e.g. "+CMS ERROR: 500") after the text, or instead of the prompt;
    - `sms_reply_after_parts`: apply `sms_reply` only once this many parts were accepted
      (a failure in the middle of a series);
    - `urcs`: unsolicited lines to send before every answer, between an answer's
      information and its final result, before the prompt and before +CMGS.
    """

    def __init__(self, workdir: Path, *, name: str = "modem",
                 manufacturer: str = "SIMCOM INCORPORATED", model: str = "SIMCOM_SIM7600CE-T",
                 imei: str = "867584030000001", pin: str | None = None,
                 smsc: str = "+8613800100500") -> None:
        self.workdir = Path(workdir)
        self.name = name
        self.manufacturer = manufacturer
        self.model = model
        self.imei = imei
        self.pin = pin
        self.smsc = smsc
        # Knobs (see the class docstring).
        self.silent = False
        self.sim: SimState = "ready"
        self.registration: SimRegistration = "home"
        self.rssi = 20
        self.delay_s = 0.0
        self.sms_delay_s = 0.0
        self.sms_reply: str | None = None
        self.sms_reply_before_prompt = False
        self.sms_reply_after_parts = 0
        self.urcs: list[str] = []
        # Modem state: reset by ATZ.
        self._reset_settings()
        self.pin_tries = 3
        self._next_ref = 0
        # Records, guarded by _cond.
        self._cond = threading.Condition()
        self._parts: list[SimSmsPart] = []
        self._commands: list[str] = []
        self._busy = False
        # Process, thread, descriptors.
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._stop = threading.Event()
        self._wlock = threading.Lock()
        self._rx = bytearray()
        self._text_mode = False
        self._pending_da: tuple[str, int | None] | None = None
        self._driver_pty = ""
        self._sim_pty = ""

    def _reset_settings(self) -> None:
        self.echo = True
        self.verbose = True
        self.cmee = 0
        self.cmgf = 0
        self.cscs = "IRA"
        self.csmp = (17, 167, 0, 0)
        self.creg_n = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The path the driver opens (a symlink to socat's pseudo-terminal)."""
        return str(self.workdir / self.name)

    @property
    def is_running(self) -> bool:
        """Whether socat and the answering thread are alive."""
        return (self._proc is not None and self._proc.poll() is None
                and self._thread is not None and self._thread.is_alive())

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        """Start socat and the answering thread; return when the port can be opened.

        Raises:
            FileNotFoundError: socat is not installed.
            RuntimeError: already running, or socat failed or was not ready in `timeout`
                seconds (the message carries socat's output).
        """
        if self._proc is not None:
            raise RuntimeError("simulated modem already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        driver_link = self.workdir / self.name
        sim_link = self.workdir / f"{self.name}-sim"
        for link in (driver_link, sim_link):
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
        cmd = [find_socat(), "-d", "-d",
               f"pty,raw,echo=0,link={driver_link}", f"pty,raw,echo=0,link={sim_link}"]
        self._stop.clear()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, preexec_fn=die_with_parent)  # noqa: PLW1509
        try:
            self._wait_ready(timeout)
            fd = os.open(self._sim_pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            self._fd = fd
            tty.setraw(fd)
            self._wake_r, self._wake_w = os.pipe()
            self._thread = threading.Thread(target=self._run, name=f"sim-{self.name}",
                                            daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise
        log.info("simulated modem on %s (%s)", driver_link, self._driver_pty)

    def _wait_ready(self, timeout: float) -> None:
        """Read socat's log until both pseudo-terminals exist and data flows."""
        assert self._proc is not None and self._proc.stderr is not None
        stderr = self._proc.stderr
        seen = b""
        ptys: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"socat not ready within {timeout:.1f} s; it said:\n"
                                   f"{seen.decode(errors='replace')}")
            ready, _, _ = select.select([stderr], [], [], left)
            if not ready:
                continue
            chunk = os.read(stderr.fileno(), 4096)
            if not chunk:
                self._proc.wait(_STOP_GRACE)
                raise RuntimeError(f"socat exited with status {self._proc.returncode}:\n"
                                   f"{seen.decode(errors='replace')}")
            seen += chunk
            ptys = [m.decode() for m in _PTY_RE.findall(seen)]
            if len(ptys) >= 2 and _READY_LINE in seen:
                break
        self._driver_pty, self._sim_pty = ptys[0], ptys[1]

    def stop(self) -> None:
        """Stop the thread and socat and close every descriptor. Safe to call twice."""
        self._stop.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(_STOP_GRACE)
            if self._thread.is_alive():
                log.error("simulated modem thread did not stop within %.0f s", _STOP_GRACE)
            self._thread = None
        for fd in (self._fd, self._wake_r, self._wake_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._wake_r = self._wake_w = None
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(_STOP_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        for link in (self.workdir / self.name, self.workdir / f"{self.name}-sim"):
            with contextlib.suppress(FileNotFoundError):
                link.unlink()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- faults and unsolicited codes -------------------------------------------------------

    def handles(self, req: dict[str, Any]) -> bool:
        """No `alarmgw sim` request drives the modem yet (gateway.drivers.backends)."""
        return False

    def control(self, req: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("the simulated modem takes no sim requests")

    def set_fault(self, fault: SimFault, *, delay_s: float = 5.0) -> None:
        """Make the modem fail one way ("none" clears every fault).

        Args:
            fault: "silent" (no answer at all), "cmgs_error" (ERROR instead of the prompt),
                "cms_500" (+CMS ERROR: 500 after the text), "no_sim", "sim_pin" (the SIM
                asks for `pin`), "not_registered", "slow" (every answer `delay_s` late).
            delay_s: the delay of "slow", in seconds.
        """
        with self._cond:
            self.silent = False
            self.sim = "ready"
            self.registration = "home"
            self.delay_s = 0.0
            self.sms_reply = None
            self.sms_reply_before_prompt = False
            self.sms_reply_after_parts = 0
            if fault == "silent":
                self.silent = True
            elif fault == "cmgs_error":
                self.sms_reply, self.sms_reply_before_prompt = "ERROR", True
            elif fault == "cms_500":
                self.sms_reply = "+CMS ERROR: 500"
            elif fault == "no_sim":
                self.sim = "absent"
            elif fault == "sim_pin":
                self.sim = "pin"
            elif fault == "not_registered":
                self.registration = "not_registered"
            elif fault == "slow":
                self.delay_s = delay_s

    def emit(self, line: str) -> None:
        """Send an unsolicited result code now, e.g. '+CMTI: "SM",3' or 'RING'."""
        self._send(f"\r\n{line}\r\n".encode())

    # -- records ----------------------------------------------------------------------------

    @property
    def parts(self) -> list[SimSmsPart]:
        """Every SMS part accepted, in order."""
        with self._cond:
            return list(self._parts)

    @property
    def messages(self) -> list[SimSms]:
        """The accepted parts grouped into messages as the recipient reads them."""
        return assemble(self.parts)

    @property
    def commands(self) -> list[str]:
        """Every command line received, in order (a PIN appears as sent)."""
        with self._cond:
            return list(self._commands)

    def clear(self) -> None:
        """Forget the recorded parts and commands."""
        with self._cond:
            self._parts.clear()
            self._commands.clear()

    def wait_for_parts(self, n: int, timeout: float = 5.0) -> list[SimSmsPart]:
        """Wait until `n` parts were accepted and return all of them.

        Raises:
            TimeoutError: fewer than `n` within `timeout` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._parts) >= n, timeout):
                raise TimeoutError(f"simulated modem accepted {len(self._parts)} SMS part(s),"
                                   f" not {n}, within {timeout} s; last commands:"
                                   f" {self._commands[-8:]}")
            return list(self._parts)

    def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[SimSms]:
        """Wait until `n` whole messages were accepted and return all of them.

        Raises:
            TimeoutError: fewer than `n` within `timeout` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(assemble(self._parts)) >= n, timeout):
                raise TimeoutError(f"simulated modem has {len(assemble(self._parts))} whole"
                                   f" message(s), not {n}, within {timeout} s")
            return assemble(self._parts)

    def wait_for_command(self, prefix: str, timeout: float = 5.0) -> str:
        """Wait until a command line starting with `prefix` arrives; return the first.

        Raises:
            TimeoutError: none within `timeout` seconds.
        """
        def found() -> str | None:
            return next((c for c in self._commands if c.upper().startswith(prefix.upper())),
                        None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise TimeoutError(f"simulated modem got no {prefix} within {timeout} s; last"
                                   f" commands: {self._commands[-8:]}")
            line = found()
            assert line is not None
            return line

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until the modem has answered everything the driver sent so far.

        Raises:
            TimeoutError: still busy after `timeout` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: not self._busy and self._pending_input() == 0,
                                       timeout):
                raise TimeoutError(f"simulated modem still busy after {timeout} s")

    def _pending_input(self) -> int:
        if self._fd is None:
            return 0
        try:
            raw = fcntl.ioctl(self._fd, termios.TIOCINQ, b"\0\0\0\0")
        except OSError:
            return 0
        count: int = struct.unpack("I", raw)[0]
        return count

    # -- the answering thread ---------------------------------------------------------------

    def _run(self) -> None:
        assert self._fd is not None and self._wake_r is not None
        fd, wake = self._fd, self._wake_r
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd, wake], [], [])
            except OSError:
                break
            if wake in ready:
                break
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                log.warning("simulated modem: read failed (%s); stopping", exc)
                break
            if not data:
                continue
            with self._cond:
                self._busy = True
            try:
                self._feed(data)
            except Exception:
                log.exception("simulated modem: failed on %r", data)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _send(self, data: bytes) -> None:
        """Write `data` to the driver; drop it if nobody reads for a while (port closed)."""
        with self._wlock:
            fd = self._fd
            if fd is None:
                return
            deadline = time.monotonic() + _WRITE_STALL_S
            while data:
                try:
                    n = os.write(fd, data)
                    data = data[n:]
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stop.is_set():
                        log.debug("simulated modem: nobody reads; dropped %d bytes", len(data))
                        return
                    select.select([], [fd], [], min(left, 0.1))
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        log.warning("simulated modem: write failed: %s", exc)
                    return

    def _wait(self, seconds: float) -> bool:
        """Wait `seconds` like a slow modem; False if the simulator is stopping."""
        return seconds <= 0 or not self._stop.wait(seconds)

    def _feed(self, data: bytes) -> None:
        if self.silent:
            return
        if self.echo:
            shown = data.replace(b"\x1a", b"").replace(b"\x1b", b"")
            if shown:
                self._send(shown)
        for byte in data:
            if self._text_mode:
                if byte == 0x1A:
                    text = bytes(self._rx)
                    self._rx.clear()
                    self._text_mode = False
                    self._submit(text)
                elif byte == 0x1B:
                    self._rx.clear()
                    self._text_mode = False
                    self._pending_da = None
                    self._final("OK")
                else:
                    self._rx.append(byte)
            elif byte == 0x0D:
                line = self._rx.decode("latin-1")
                self._rx.clear()
                self._command(line)
            elif byte in (0x0A, 0x1B, 0x1A):
                continue
            elif byte == 0x08:
                del self._rx[-1:]
            else:
                self._rx.append(byte)

    # -- answers ----------------------------------------------------------------------------

    def _urc_block(self) -> bytes:
        return b"".join(f"\r\n{u}\r\n".encode() for u in self.urcs)

    def _reply(self, info: list[str], final: str) -> None:
        """Send information lines and a final result code, with the URCs interleaved."""
        if not self._wait(self.delay_s):
            return
        out = bytearray(self._urc_block())
        for line in info:
            out += f"\r\n{line}\r\n".encode() if self.verbose else f"{line}\r\n".encode()
        if info:
            out += self._urc_block()
        if self.verbose:
            out += f"\r\n{final}\r\n".encode()
        else:
            out += {"OK": b"0\r", "ERROR": b"4\r"}.get(final, f"{final}\r\n".encode())
        self._send(bytes(out))

    def _final(self, final: str) -> None:
        self._reply([], final)

    def _cme(self, code: int) -> str:
        if self.cmee == 0:
            return "ERROR"
        if self.cmee == 2:
            return f"+CME ERROR: {_CME_WORDS.get(code, 'unknown')}"
        return f"+CME ERROR: {code}"

    def _decode_string(self, value: str) -> str | None:
        """Decode a string parameter in the current character set; None if malformed."""
        if self.cscs != "UCS2":
            return value
        try:
            return bytes.fromhex(value).decode("utf-16-be")
        except ValueError:
            return None

    def _encode_string(self, value: str) -> str:
        return value.encode("utf-16-be").hex().upper() if self.cscs == "UCS2" else value

    def _command(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        with self._cond:
            self._commands.append(text)
            self._cond.notify_all()
        if text[:2].upper() != "AT":
            return  # not a command line: a real modem ignores it
        body = text[2:]
        if not body:
            self._final("OK")
            return
        if _BASIC_RE.fullmatch(body.upper()):
            self._basic(body.upper())
            return
        m = _EXTENDED_RE.fullmatch(body)
        if m is None:
            self._final("ERROR")
            return
        name = m.group(1).upper()
        query = m.group(2) == "?"
        args = m.group(3)
        handler = {
            "+CMEE": self._cmee, "+CGMI": self._ident, "+CGMM": self._ident,
            "+CGSN": self._ident, "+CGMR": self._ident, "+CPIN": self._cpin,
            "+CSQ": self._csq, "+CREG": self._creg, "+CEREG": self._creg,
            "+CMGF": self._cmgf, "+CSCS": self._cscs, "+CSMP": self._csmp,
            "+CSCA": self._csca, "+CMGS": self._cmgs,
        }.get(name)
        if handler is None or m.group(2) == "=?":
            self._final("ERROR" if handler is None else "OK")
            return
        handler(name, query, args)

    def _basic(self, body: str) -> None:
        info: list[str] = []
        for m in _BASIC_TOKEN_RE.finditer(body):
            letter, value, reset, ident, factory = m.groups()
            if letter == "E":
                self.echo = value == "1"
            elif letter == "V":
                self.verbose = value != "0"
            elif reset or factory:
                self._reset_settings()
            elif ident:
                info += [self.manufacturer, self.model, "Revision: SIM-1.0"]
        self._reply(info, "OK")

    def _int_setting(self, args: str | None, allowed: range) -> int | None:
        try:
            value = int(args or "")
        except ValueError:
            return None
        return value if value in allowed else None

    def _cmee(self, name: str, query: bool, args: str | None) -> None:
        if query:
            self._reply([f"+CMEE: {self.cmee}"], "OK")
            return
        value = self._int_setting(args, range(3))
        if value is None:
            self._final("ERROR")
            return
        self.cmee = value
        self._final("OK")

    def _ident(self, name: str, query: bool, args: str | None) -> None:
        value = {"+CGMI": self.manufacturer, "+CGMM": self.model, "+CGSN": self.imei,
                 "+CGMR": "SIM-1.0"}[name]
        self._reply([value], "OK")

    def _cpin(self, name: str, query: bool, args: str | None) -> None:
        if self.sim == "absent":
            self._final(self._cme(10))
            return
        if query:
            word = {"ready": "READY", "pin": "SIM PIN", "puk": "SIM PUK"}[self.sim]
            self._reply([f"+CPIN: {word}"], "OK")
            return
        given = (args or "").strip().strip('"')
        if self.sim != "pin":
            self._final(self._cme(3))
            return
        if given == self.pin:
            self.sim = "ready"
            self.pin_tries = 3
            self._final("OK")
            return
        self.pin_tries -= 1
        if self.pin_tries <= 0:
            self.sim = "puk"
        self._final(self._cme(16))

    def _csq(self, name: str, query: bool, args: str | None) -> None:
        self._reply([f"+CSQ: {self.rssi},99"], "OK")

    def _creg(self, name: str, query: bool, args: str | None) -> None:
        if not query:
            value = self._int_setting(args, range(3))
            if value is None:
                self._final("ERROR")
                return
            self.creg_n = value
            self._final("OK")
            return
        stat = _REG_STAT[self.registration] if self.sim == "ready" else 0
        self._reply([f"{name}: {self.creg_n},{stat}"], "OK")

    def _cmgf(self, name: str, query: bool, args: str | None) -> None:
        if query:
            self._reply([f"+CMGF: {self.cmgf}"], "OK")
            return
        value = self._int_setting(args, range(2))
        if value is None:
            self._final("ERROR")
            return
        self.cmgf = value
        self._final("OK")

    def _cscs(self, name: str, query: bool, args: str | None) -> None:
        if query:
            self._reply([f'+CSCS: "{self.cscs}"'], "OK")
            return
        charset = (args or "").strip().strip('"').upper()
        if charset not in ("IRA", "GSM", "UCS2"):
            self._final("ERROR")
            return
        self.cscs = charset
        self._final("OK")

    def _csmp(self, name: str, query: bool, args: str | None) -> None:
        if query:
            self._reply(["+CSMP: " + ",".join(str(v) for v in self.csmp)], "OK")
            return
        try:
            values = tuple(int(v) for v in (args or "").split(","))
        except ValueError:
            self._final("ERROR")
            return
        if len(values) != 4 or not all(0 <= v <= 255 for v in values):
            self._final("ERROR")
            return
        self.csmp = (values[0], values[1], values[2], values[3])
        self._final("OK")

    def _csca(self, name: str, query: bool, args: str | None) -> None:
        if query:
            self._reply([f'+CSCA: "{self._encode_string(self.smsc)}",145'], "OK")
            return
        m = _CMGS_ARGS_RE.fullmatch((args or "").strip())
        decoded = self._decode_string(m.group(1)) if m else None
        if decoded is None:
            self._final("ERROR")
            return
        self.smsc = decoded
        self._final("OK")

    def _cmgs(self, name: str, query: bool, args: str | None) -> None:
        if query or self.cmgf != 1:
            # PDU mode is not simulated: the driver uses text mode.
            self._final("+CMS ERROR: 303" if not query else "ERROR")
            return
        m = _CMGS_ARGS_RE.fullmatch((args or "").strip())
        if m is None:
            self._final("ERROR")
            return
        if self._sms_reply_due() and self.sms_reply_before_prompt:
            assert self.sms_reply is not None
            self._final(self.sms_reply)
            return
        sim_error = {"absent": 310, "pin": 311, "puk": 316}.get(self.sim)
        if sim_error is not None:
            self._final(f"+CMS ERROR: {sim_error}")
            return
        number = self._decode_string(m.group(1))
        if number is None or not re.fullmatch(r"\+?[0-9]{1,20}", number):
            self._final("+CMS ERROR: 304" if number is None else "+CMS ERROR: 305")
            return
        self._pending_da = (number, int(m.group(2)) if m.group(2) else None)
        self._text_mode = True
        if not self._wait(self.delay_s):
            return
        self._send(self._urc_block() + b"\r\n> ")

    def _sms_reply_due(self) -> bool:
        with self._cond:
            return self.sms_reply is not None and len(self._parts) >= self.sms_reply_after_parts

    def _submit(self, raw_bytes: bytes) -> None:
        """Handle the text of an SMS (everything before Ctrl-Z)."""
        pending, self._pending_da = self._pending_da, None
        if pending is None:
            self._final("ERROR")
            return
        number, toda = pending
        raw = raw_bytes.decode("latin-1")
        dcs = self.csmp[3]
        text: str | None
        if dcs & 0x0C == 0x08 or (dcs == 0 and self.cscs == "UCS2"):
            # UCS2 data, or GSM 7-bit data typed in the UCS2 character set: hex UTF-16BE.
            try:
                data = bytes.fromhex(raw)
                text = data.decode("utf-16-be")
            except ValueError:
                text = None
            too_long = text is not None and (len(data) > 140 if dcs & 0x0C == 0x08
                                              else len(text) > 160)
        else:
            text = raw
            too_long = len(text) > 160
        if text is None or too_long:
            self._final("+CMS ERROR: 305")
            return
        if not self._wait(self.sms_delay_s):
            return
        if self.registration not in ("home", "roaming"):
            self._final("+CMS ERROR: 331")
            return
        if self._sms_reply_due():
            assert self.sms_reply is not None
            self._final(self.sms_reply)
            return
        ref = self._next_ref
        self._next_ref = (self._next_ref + 1) % 256
        part = SimSmsPart(number, text, ref, toda, dcs, self.cscs, raw)
        with self._cond:
            self._parts.append(part)
        self._reply([f"+CMGS: {ref}"], "OK")

"""The `Modem`: SMS through a serial 4G/GSM modem, thread-safe, every call bounded in time.

- Text mode (`AT+CMGF=1`) with `AT+CSCS="UCS2"` and `AT+CSMP=17,167,0,8`: the number
  and the text travel as hex UCS-2, so Chinese point names (南门门卫室) arrive intact and
  nothing in a text (a Ctrl-Z, an ESC, a quote) can break the AT framing. Every message is
  UCS2, ASCII ones too: one code path that every modem handles the same way, at the cost
  of 70 instead of 160 characters for pure-ASCII texts, which alarm texts seldom are.
- A text longer than one SMS goes out as a numbered series (`split_sms`); a text cut
  to `max_parts` messages is logged as a warning.
- Thread-safe: one lock around each public call (a whole SMS series included), taken with
  a timeout. It blocks for seconds: call it from a worker thread, never from the engine
  thread (refused with RuntimeError).
- The SIM's PIN is entered when the SIM asks for it, never logged, and never tried twice
  if the SIM refuses it. A vague AT+CMGS failure is diagnosed by asking the SIM, network
  and signal state, so that its error says what to check.

The port, the lines and the command exchange are `AtPort`'s (`gateway.drivers.modem.at`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Self

from gateway.drivers.modem.at import (
    CTRL_Z,
    ESC,
    PROMPT,
    AtPort,
    is_final_error,
    loggable,
    parse_error,
)
from gateway.drivers.modem.codes import CHECK_PLAN
from gateway.drivers.modem.sms import (
    DEFAULT_MAX_PARTS,
    clean_text,
    encode_ucs2,
    join_sms,
    mask_number,
    normalize_number,
    split_sms,
    utf16_units,
)
from gateway.drivers.modem.status import ModemStatus, Registration, SimState
from gateway.errors import (
    ModemBusyError,
    ModemCommandError,
    ModemError,
    ModemNetworkError,
    ModemSimError,
    ModemSmsError,
    ModemTimeoutError,
)

log = logging.getLogger(__name__)

#: The engine thread's name (gateway/engine.py): the one thread that must never wait here.
ENGINE_THREAD_NAME = "engine"

#: How long a text-mode TP-Validity-Period of 167 keeps an undelivered SMS: 24 hours.
_CSMP = "AT+CSMP=17,167,0,8"

_PIN_RE = re.compile(r"[0-9]{4,8}")
_CMGS_RE = re.compile(r"\+CMGS:\s*(\d+)")

# 27.007 <stat> of +CREG/+CEREG: 6/7 are "SMS only", 9/10 "CSFB not preferred": all registered.
_REG_STAT: dict[int, Registration] = {
    0: "not_registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming",
    6: "home", 7: "roaming", 8: "not_registered", 9: "home", 10: "roaming",
}


class Modem(AtPort):
    """A serial AT modem that sends SMS. Thread-safe; every call is bounded in time.

    The port is opened lazily by the first call (or by `open()` to fail early), held with
    an exclusive lock, and reopened after a port-level failure (a USB modem that reset).

    Args:
        port: the serial device of the modem's AT port, e.g. /dev/ttyUSB2 or better a
            /dev/serial/by-id/... link, which survives renumbering.
        baud: the line speed in bit/s (USB modems ignore it; UART modems need the right one).
        timeout_s: how long one ordinary command may take to answer, in seconds.
        pin: the SIM's PIN (4 to 8 digits), entered when the SIM asks for it; never logged,
            and never tried twice if the SIM refuses it (three wrong PINs block the SIM).
        send_timeout_s: how long the network may take to accept one SMS, in seconds.
        busy_timeout_s: how long a call waits for another thread's call to finish, in
            seconds; default: as long as the longest SMS series can take.
        max_parts: the most messages one text becomes (see `split_sms`).
    """

    def __init__(self, port: str, baud: int = 115200, timeout_s: float = 3.0,
                 pin: str | None = None, *, send_timeout_s: float = 60.0,
                 busy_timeout_s: float | None = None,
                 max_parts: int = DEFAULT_MAX_PARTS) -> None:
        if timeout_s <= 0 or send_timeout_s <= 0:
            raise ValueError("modem timeouts must be positive")
        if max_parts < 1:
            raise ValueError(f"max_parts must be at least 1, not {max_parts}")
        if pin is not None and not _PIN_RE.fullmatch(pin):
            raise ValueError("the SIM PIN must be 4 to 8 digits")
        super().__init__(port, baud, timeout_s)
        self.send_timeout_s = send_timeout_s
        self.max_parts = max_parts
        self.busy_timeout_s = (busy_timeout_s if busy_timeout_s is not None
                               else max_parts * (send_timeout_s + 2 * timeout_s)
                               + 12 * timeout_s)
        self._pin = pin
        self._pin_refused = False
        self._lock = threading.RLock()
        self.sent_total = 0
        """SMS parts the modem has accepted since this object was made."""
        self.last_status: ModemStatus | None = None
        """What the last `check()` found."""

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        """Open the port and make sure the modem answers.

        Raises:
            ModemOpenError: the port cannot be opened.
            ModemNotAnsweringError: nothing answers AT on it.
        """
        with self._session("open"):
            self._ensure_ready()

    def close(self) -> None:
        """Close the port; a call in progress in another thread ends with ModemClosedError.

        The next call opens the port again.
        """
        self._closing = True
        ser = self._ser
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.cancel_read()
                ser.cancel_write()
        acquired = self._lock.acquire(timeout=self.timeout_s + 1.0)
        try:
            if not acquired:
                log.warning("modem on %s: a call did not end within %.1f s; closing anyway",
                            self.port, self.timeout_s + 1.0)
            self._drop_port()
        finally:
            self._closing = False
            if acquired:
                self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        """Whether the port is open (not whether the modem answers)."""
        return self._ser is not None

    # -- public calls ---------------------------------------------------------------------

    def check(self) -> ModemStatus:
        """Ask the modem how it is: SIM, registration, signal, make and IMEI.

        Enters the PIN when the SIM asks for it and one was given. A missing SIM or no
        network is reported in the status (see `ModemStatus.problems()`), not raised.

        Raises:
            ModemOpenError: the port cannot be opened.
            ModemNotAnsweringError: nothing answers AT.
            ModemTimeoutError: the modem stopped answering halfway.
            ModemError: the port failed (modem unplugged).
        """
        with self._session("check"):
            self._ensure_ready()
            self._set_charset_plain()
            manufacturer = self._optional_text("AT+CGMI")
            model = self._optional_text("AT+CGMM")
            imei = self._optional_text("AT+CGSN")
            sim, detail = self._read_sim()
            if sim == "pin_required":
                sim, detail = self._unlock_sim(raise_on_refusal=False, current=(sim, detail))
            rssi, ber = self._signal()
            registration = self._registration()
            status = ModemStatus(self.port, sim, registration, rssi, ber,
                                 manufacturer, model, imei, detail)
            self.last_status = status
            return status

    def send_sms(self, number: str, text: str) -> list[int]:
        """Send `text` to `number`; return the modem's message reference of each part.

        Long texts become a numbered series (see `split_sms`). Blocks until the network
        has taken every part: up to `send_timeout_s` a part. Do not call from the engine
        thread.

        Raises:
            SmsInputError: `number` is malformed or `text` is empty (nothing was sent).
            ModemOpenError, ModemNotAnsweringError, ModemTimeoutError, ModemBusyError:
                the modem could not be reached in time.
            ModemSimError: the SIM is missing, locked or refused the PIN.
            ModemNetworkError: the modem has no network.
            ModemSmsError: the modem or the network refused the message.
            Each carries in `sent_refs` the parts already sent before the failure: a retry
            sends the whole text again (a duplicate beats a lost alarm).
        """
        da = normalize_number(number)
        parts = split_sms(text, self.max_parts)
        if join_sms(parts) != clean_text(text):
            log.warning("SMS to %s: text of %d characters cut to %d messages",
                        mask_number(da), len(text), len(parts))
        refs: list[int] = []
        with self._session("send_sms"):
            try:
                self._ensure_ready()
                self._set_charset_plain()
                self._require_sim()
                self._command("AT+CMGF=1")
                self._command('AT+CSCS="UCS2"')
                self._command(_CSMP)
                for part in parts:
                    refs.append(self._submit(da, part))
                    self.sent_total += 1
            except ModemError as exc:
                exc.sent_refs = list(refs)
                log.warning("SMS to %s failed after %d of %d part(s): %s", mask_number(da),
                            len(refs), len(parts), exc)
                raise
        log.info("SMS to %s sent in %d part(s), references %s", mask_number(da), len(parts),
                 refs)
        return refs

    # -- the session: lock, engine-thread guard -------------------------------------------

    @contextlib.contextmanager
    def _session(self, what: str) -> Iterator[None]:
        if threading.current_thread().name == ENGINE_THREAD_NAME:
            raise RuntimeError(f"Modem.{what}() called from the engine thread: it blocks for"
                               " seconds; hand it to a worker thread")
        if not self._lock.acquire(timeout=self.busy_timeout_s):
            raise ModemBusyError(
                f"modem on {self.port} stayed busy with another call for {self.busy_timeout_s:.0f}"
                " s", port=self.port)
        try:
            yield
        finally:
            self._lock.release()

    # -- what to ask: SIM, network, one SMS -----------------------------------------------

    def _set_charset_plain(self) -> None:
        """Use a plain character set, so that other string answers are not hex."""
        for charset in ("IRA", "GSM"):
            try:
                self._command(f'AT+CSCS="{charset}"')
                return
            except ModemCommandError:
                continue

    def _optional_text(self, cmd: str) -> str | None:
        """Return the answer of an identification command, or None if refused."""
        try:
            lines = self._command(cmd, expect=cmd[2:] + ":", plain=True)
        except ModemCommandError:
            return None
        return lines[0] if lines else None

    def _read_sim(self) -> tuple[SimState, str]:
        try:
            lines = self._command("AT+CPIN?", expect="+CPIN:")
        except ModemCommandError as exc:
            by_code: dict[int | None, SimState] = {10: "not_inserted", 13: "failure",
                                                   15: "failure", 14: "busy", 11: "pin_required",
                                                   12: "puk_required", 310: "not_inserted",
                                                   313: "failure", 314: "busy"}
            return by_code.get(exc.code, "unknown"), exc.reply
        if not lines:
            return "unknown", ""
        word = lines[-1].upper()
        if word in ("READY", "SIM PIN2", "SIM PUK2"):
            return "ready", lines[-1]
        if word == "SIM PIN":
            return "pin_required", lines[-1]
        if word == "SIM PUK":
            return "puk_required", lines[-1]
        return "locked", lines[-1]

    def _unlock_sim(self, *, raise_on_refusal: bool,
                    current: tuple[SimState, str]) -> tuple[SimState, str]:
        """Enter the PIN if there is one and it was never refused; return the new SIM state."""
        if self._pin is None or self._pin_refused:
            return current
        try:
            self._command(f'AT+CPIN="{self._pin}"')
        except ModemCommandError as exc:
            if exc.code == 16 or (exc.code is None and "password" in exc.reply.lower()):
                self._pin_refused = True
                log.error("modem on %s: the SIM refused the PIN; it will not be tried again",
                          self.port)
                if raise_on_refusal:
                    raise ModemSimError(
                        f"modem on {self.port}: the SIM refused the PIN from the config"
                        f" ({exc.reply}); alarmgw will not try it again because three wrong"
                        " PINs block the SIM: fix the pin_file and restart the service",
                        port=self.port, command="AT+CPIN", code=exc.code,
                        reply=exc.reply) from exc
                return "pin_required", "PIN refused"
            raise
        log.info("modem on %s: SIM unlocked with the configured PIN", self.port)
        # The SIM may take a moment to report READY after the PIN.
        deadline = time.monotonic() + self.timeout_s
        state = self._read_sim()
        while state[0] in ("busy", "pin_required") and time.monotonic() < deadline:
            self._drain_quiet("AT+CPIN")
            state = self._read_sim()
        return state

    def _require_sim(self) -> None:
        state, detail = self._read_sim()
        if state == "pin_required":
            state, detail = self._unlock_sim(raise_on_refusal=True, current=(state, detail))
        if state == "ready":
            return
        if state == "unknown":
            return  # the modem has no usable AT+CPIN?: let AT+CMGS tell
        words = ModemStatus(self.port, state, "unknown", None, None, sim_detail=detail)
        problem = words.problems()[0]
        if state == "pin_required" and self._pin_refused:
            problem = "the SIM refused the configured PIN earlier: fix the pin_file and restart"
        code = parse_error(detail)[1]
        raise ModemSimError(f"modem on {self.port} cannot send SMS: {problem}",
                            port=self.port, command="AT+CPIN", code=code, reply=detail)

    def _signal(self) -> tuple[int | None, int | None]:
        try:
            lines = self._command("AT+CSQ", expect="+CSQ:")
        except ModemCommandError:
            return None, None
        if not lines:
            return None, None
        fields = lines[-1].split(",")
        try:
            rssi = int(fields[0])
            ber = int(fields[1]) if len(fields) > 1 else 99
        except ValueError:
            return None, None
        return (None if rssi == 99 else rssi), (None if ber == 99 else ber)

    def _reg_stat(self, cmd: str) -> Registration:
        prefix = cmd[2:-1] + ":"
        try:
            lines = self._command(cmd, expect=prefix)
        except ModemCommandError:
            return "unknown"
        stat: int | None = None
        for line in lines:
            # Solicited: "<n>,<stat>[,...]". The URC "+CREG: <stat>[,"lac","ci"]" has one
            # field or a quoted second one, and is skipped.
            fields = [f.strip() for f in line.split(",")]
            if len(fields) >= 2 and fields[1].isdigit():
                stat = int(fields[1])
        return _REG_STAT.get(stat, "unknown") if stat is not None else "unknown"

    def _registration(self) -> Registration:
        reg = self._reg_stat("AT+CREG?")
        if reg in ("home", "roaming"):
            return reg
        # LTE-only networks register in +CEREG while +CREG (circuit switched) says no.
        lte = self._reg_stat("AT+CEREG?")
        return lte if lte in ("home", "roaming") or reg == "unknown" else reg

    def _submit(self, da: str, text: str) -> int:
        """Send one SMS part; return its message reference."""
        name = "AT+CMGS"
        toda = 145 if da.startswith("+") else 129
        cmd = f'AT+CMGS="{encode_ucs2(da)}",{toda}'
        payload = encode_ucs2(text)
        self._flush_input(name)
        log.debug("modem %s << %s (%d units)", self.port, loggable(cmd), utf16_units(text))
        self._write(cmd.encode("ascii") + b"\r", name)
        deadline = time.monotonic() + self.timeout_s
        while True:
            line = self._next(deadline, name, prompt=True)
            if line is None:
                self._ready = False
                with contextlib.suppress(ModemError):
                    self._write(ESC, name)  # in case the prompt comes late: send nothing
                raise ModemTimeoutError(
                    f"modem on {self.port} gave no '> ' prompt after AT+CMGS within"
                    f" {self.timeout_s:.1f} s: power-cycle it if this repeats",
                    port=self.port, command=name)
            if line is PROMPT:
                break
            assert isinstance(line, str)
            if line.upper() == cmd.upper() or line == "OK":
                continue  # echo, or a stale OK that arrived after the flush
            if is_final_error(line):
                raise self._diagnosed(self._error(name, line, sms=True))
            log.debug("modem %s: skipped unsolicited %r before the prompt", self.port, line)
        self._write(payload.encode("ascii") + CTRL_Z, name)
        deadline = time.monotonic() + self.send_timeout_s
        ref: int | None = None
        while True:
            line = self._next(deadline, name)
            if line is None:
                self._ready = False
                if ref is not None:
                    log.warning("modem on %s: +CMGS: %d but no OK; counting the part as sent",
                                self.port, ref)
                    return ref
                raise ModemTimeoutError(
                    f"modem on {self.port} took the SMS for {mask_number(da)} but the network"
                    f" gave no result within {self.send_timeout_s:.0f} s: weak signal or"
                    " congestion; it may still arrive. Check the signal (AT+CSQ) and the"
                    " registration (AT+CREG?)", port=self.port, command=name)
            assert isinstance(line, str)
            bare = line.replace("\x1a", "")
            if len(bare) >= 4 and bare in payload:
                continue  # echo of the text
            m = _CMGS_RE.match(line)
            if m is not None:
                ref = int(m.group(1))
                continue
            if line == "OK":
                if ref is None:
                    raise ModemSmsError(
                        f"modem on {self.port} answered OK without a +CMGS reference: the"
                        " SMS may not have gone; report it with the modem model",
                        port=self.port, command=name, reply=line)
                return ref
            if is_final_error(line):
                raise self._diagnosed(self._error(name, line, sms=True))
            log.debug("modem %s: skipped unsolicited %r while sending", self.port, line)

    def _diagnosed(self, exc: ModemCommandError) -> ModemCommandError:
        """For a vague AT+CMGS failure (ERROR, 500), ask the SIM and network state why."""
        if type(exc) is not ModemSmsError or exc.code not in (None, 500):
            return exc
        try:
            sim, detail = self._read_sim()
            registration = self._registration()
            rssi, ber = self._signal()
        except ModemError as diag_exc:
            log.debug("modem %s: diagnosis failed: %s", self.port, diag_exc)
            return exc
        status = ModemStatus(self.port, sim, registration, rssi, ber, sim_detail=detail)
        problems = status.problems()
        cls: type[ModemCommandError] = ModemSmsError
        if sim != "ready":
            cls = ModemSimError
        elif not status.registered:
            cls = ModemNetworkError
        if problems:
            why = "; ".join(problems)
        else:
            dbm = status.signal_dbm
            signal = f"{dbm} dBm" if dbm is not None else "signal unknown"
            why = f"SIM ready, registered ({registration}), {signal}: {CHECK_PLAN}"
        return cls(f"modem on {self.port}: AT+CMGS failed with {exc.reply}; {why}",
                   port=self.port, command=exc.command, code=exc.code, reply=exc.reply)

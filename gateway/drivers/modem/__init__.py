"""SMS through a serial 4G/GSM modem speaking AT commands (3GPP TS 27.005 / 27.007).

The escalation path uses this driver when nobody acknowledges an alarm: it texts the
duty numbers through a USB modem on the Pi. What it does and why:

- Text mode (`AT+CMGF=1`) with `AT+CSCS="UCS2"` and `AT+CSMP=17,167,0,8`: the number
  and the text travel as hex UCS-2, so Chinese point names (南门门卫室) arrive intact and
  nothing in a text (a Ctrl-Z, an ESC, a quote) can break the AT framing. Every message is
  UCS2, ASCII ones too: one code path that every modem handles the same way, at the cost
  of 70 instead of 160 characters for pure-ASCII texts, which alarm texts seldom are.
- Characters outside the BMP (emoji, rare CJK Extension B characters that do occur in
  Chinese names) are sent as UTF-16 surrogate pairs, which is what phones decode; each
  counts as two of the 70 units, and a message is never split inside a pair. Lone
  surrogates (only possible in a broken Python string) become U+FFFD.
- A text longer than one SMS becomes a numbered series of separate messages,
  "(1/3) ...", "(2/3) ...", each within 70 units. Not a concatenated SMS: that needs PDU
  mode and leaves the reassembly to the phone, which shows nothing (or a fragment) while a
  part is missing; a numbered part stands on its own, and the first one carries the most
  important words (the escalation puts the point and "ALARM" first). A text that would
  need more than `max_parts` messages is cut, ending with "…", and a warning is logged:
  an alarm SMS must go out even if a name in the config is absurdly long.
- Every read is bounded: the port is read in short polls up to a deadline; a modem that
  does not answer is a `ModemNotAnsweringError`, never a hang. Unsolicited result codes
  (`+CMTI`, `RING`, `^RSSI`, `+CREG: 1`...) interleaved with answers are skipped: an
  answer is only the line with the expected prefix, or a final result code.
- After a timeout the driver resynchronises before the next command (ESC to abort a
  half-typed SMS, drain until the line is quiet, `AT` until OK), so a late answer is not
  taken for the next command's.
- Thread-safe: one lock around each public call (a whole SMS series included), taken with
  a timeout. It blocks for seconds: call it from a worker thread, never from the engine
  thread (refused with RuntimeError).

Errors are `gateway.errors.ModemError` subclasses with the port, the AT command, the
error code and the modem's reply as fields, and messages that say what to check.
`python -m gateway.drivers.modem` checks a port, probes for the AT port and sends a test
SMS from the shell (stop the service first: it holds the port exclusively).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import glob
import json
import logging
import re
import sys
import termios
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import serial

from gateway.errors import (
    ModemBusyError,
    ModemClosedError,
    ModemCommandError,
    ModemError,
    ModemNetworkError,
    ModemNotAnsweringError,
    ModemOpenError,
    ModemSimError,
    ModemSmsError,
    ModemTimeoutError,
    SmsInputError,
)

log = logging.getLogger(__name__)

#: UTF-16 code units in one UCS2 SMS (140 octets of user data).
SMS_UCS2_UNITS = 70
#: Default for the most messages one text may become before it is cut.
DEFAULT_MAX_PARTS = 5
#: Ends a text that was cut to `max_parts` messages.
ELLIPSIS = "…"
#: Ends the text of an SMS in text mode.
CTRL_Z = b"\x1a"
#: Aborts an SMS at the "> " prompt without sending it.
ESC = b"\x1b"
#: The engine thread's name (gateway/engine.py): the one thread that must never wait here.
ENGINE_THREAD_NAME = "engine"

#: Longest single read of the port, in seconds: bounds how late a deadline or close() is seen.
_POLL_S = 0.05
#: Silence that counts as "the modem has finished talking" during a resync, in seconds.
_QUIET_S = 0.1
#: How many times an `AT` is tried before the modem counts as not answering.
_PROBE_ATTEMPTS = 2
#: How long a text-mode TP-Validity-Period of 167 keeps an undelivered SMS: 24 hours.
_CSMP = "AT+CSMP=17,167,0,8"

_PART_PREFIX_RE = re.compile(r"\((\d+)/(\d+)\) ")
_NUMBER_RE = re.compile(r"\+?[0-9]{3,20}")
_NUMBER_JUNK = str.maketrans("", "", " -().")
_PIN_RE = re.compile(r"[0-9]{4,8}")
_ERROR_RE = re.compile(r"\+(CMS|CME) ERROR:\s*(.*)")
_CMGS_RE = re.compile(r"\+CMGS:\s*(\d+)")
_EOL_RE = re.compile(rb"[\r\n]")
#: What a serial port raises when the device went away (termios.error is no OSError).
_PORT_ERRORS = (serial.SerialException, OSError, TypeError, termios.error)

#: Lines without "+" or "^" that modems send unsolicited (boot banners, calls).
_BARE_URCS = frozenset({
    "RING", "RDY", "SMS READY", "CALL READY", "PB DONE", "SMS DONE", "NO CARRIER",
    "POWERED DOWN", "NORMAL POWER DOWN", "START", "+PBREADY",
})

SimState = Literal["ready", "pin_required", "puk_required", "not_inserted", "failure", "busy",
                   "locked", "unknown"]
Registration = Literal["home", "roaming", "searching", "denied", "not_registered", "unknown"]

# 27.007 <stat> of +CREG/+CEREG: 6/7 are "SMS only", 9/10 "CSFB not preferred": all registered.
_REG_STAT: dict[int, Registration] = {
    0: "not_registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming",
    6: "home", 7: "roaming", 8: "not_registered", 9: "home", 10: "roaming",
}

# -- what the modem's error codes mean, and what a technician should do --------------------

_CHECK_SIM = "check that a SIM is inserted (power the modem off first) and its contacts are clean"
_CHECK_PIN = "put the SIM's PIN in the modem pin_file, or remove the PIN lock with a phone"
_CHECK_NET = ("the modem is not on a network: check the antenna, the signal (AT+CSQ) and that"
              " the SIM is activated and paid")
_CHECK_PLAN = ("check with the carrier that the SIM may send SMS to ordinary numbers (many IoT"
               " SIMs are data-only or allow only whitelisted numbers) and has credit")

#: +CMS ERROR codes (27.005 3.2.5, and the network's RP/TP causes below 256).
CMS_ERRORS: dict[int, tuple[str, str]] = {
    1: ("unassigned number", "the duty number does not exist: check it in the config"),
    8: ("operator determined barring", _CHECK_PLAN),
    10: ("call barred", _CHECK_PLAN),
    21: ("short message transfer rejected", _CHECK_PLAN),
    27: ("destination out of service", "the duty phone is unreachable; the SMS was refused"),
    28: ("unidentified subscriber", _CHECK_PLAN),
    29: ("facility rejected", _CHECK_PLAN),
    30: ("unknown subscriber", "the duty number is not known to the network: check it"),
    38: ("network out of order", "the carrier's network has a fault: try again later"),
    41: ("temporary failure", "the network failed for now: try again"),
    42: ("congestion", "the network is congested: try again"),
    47: ("resources unavailable", "the network is busy: try again"),
    50: ("requested facility not subscribed", _CHECK_PLAN),
    69: ("requested facility not implemented", _CHECK_PLAN),
    96: ("invalid mandatory information", "the modem built a bad message: report it with the"
         " modem model"),
    111: ("protocol error", "try again; if it persists, report it with the modem model"),
    300: ("ME failure", "the modem failed internally: power-cycle it"),
    301: ("SMS service of ME reserved", "another program is using the modem's SMS service"),
    302: ("operation not allowed", "the modem is not ready for SMS (SIM still starting or not"
          " registered): wait a minute and try again"),
    303: ("operation not supported", "the modem does not support UCS2 text-mode SMS: report"
          " the modem model"),
    304: ("invalid PDU mode parameter", "report it with the modem model"),
    305: ("invalid text mode parameter", "the modem refused the message format: report it with"
          " the modem model"),
    310: ("SIM not inserted", _CHECK_SIM),
    311: ("SIM PIN required", _CHECK_PIN),
    312: ("PH-SIM PIN required", "the modem is locked to another SIM: use the SIM it was sold"
          " with or have it unlocked"),
    313: ("SIM failure", _CHECK_SIM + "; replace the SIM if it persists"),
    314: ("SIM busy", "the SIM is still starting: wait a minute and try again"),
    315: ("SIM wrong", "the modem does not accept this SIM: try another"),
    316: ("SIM PUK required", "the SIM is blocked: unblock it in a phone with the carrier's PUK"),
    317: ("SIM PIN2 required", "unlock PIN2 with a phone"),
    318: ("SIM PUK2 required", "unblock PIN2 with a phone and the carrier's PUK2"),
    320: ("memory failure", "power-cycle the modem"),
    322: ("memory full", "delete stored messages (AT+CMGD=1,4)"),
    330: ("SMSC address unknown", "set the SMS centre with AT+CSCA=\"+86...\" (the number comes"
          " from the carrier) and save it with AT+CSAS"),
    331: ("no network service", _CHECK_NET),
    332: ("network timeout", "the network did not confirm: weak signal or congestion; the SMS"
          " may or may not have gone"),
    340: ("no +CNMA acknowledgement expected", "report it with the modem model"),
    500: ("unknown error", "the modem gave no reason; the usual ones are no SMS service or no"
          " credit on the SIM, a weak signal or a wrong number"),
}

#: +CME ERROR codes (27.007 9.2) that these commands can meet.
CME_ERRORS: dict[int, tuple[str, str]] = {
    0: ("phone failure", "power-cycle the modem"),
    3: ("operation not allowed", "the modem refused in its current state: wait and try again"),
    4: ("operation not supported", "the modem lacks this command: report the modem model"),
    10: ("SIM not inserted", _CHECK_SIM),
    11: ("SIM PIN required", _CHECK_PIN),
    12: ("SIM PUK required", "the SIM is blocked: unblock it in a phone with the carrier's PUK"),
    13: ("SIM failure", _CHECK_SIM + "; replace the SIM if it persists"),
    14: ("SIM busy", "the SIM is still starting: wait a minute and try again"),
    15: ("SIM wrong", "the modem does not accept this SIM: try another"),
    16: ("incorrect password", "the PIN in the pin_file is wrong: fix it (three wrong PINs block"
         " the SIM)"),
    17: ("SIM PIN2 required", "unlock PIN2 with a phone"),
    18: ("SIM PUK2 required", "unblock PIN2 with a phone and the carrier's PUK2"),
    30: ("no network service", _CHECK_NET),
    31: ("network timeout", "the network did not answer: check the signal"),
    32: ("network not allowed - emergency calls only", "the SIM is not accepted by the network:"
         " activated, paid, real-name registered?"),
    100: ("unknown", "the modem gave no reason"),
}

_SIM_CMS = frozenset({310, 311, 312, 313, 314, 315, 316, 317, 318})
_NET_CMS = frozenset({331, 332})
_SIM_CME = frozenset({10, 11, 12, 13, 14, 15, 16, 17, 18})
_NET_CME = frozenset({30, 31, 32})


# -- text, numbers and splitting (pure functions, no modem needed) --------------------------


def clean_text(text: str) -> str:
    """Return `text` with lone surrogate code points replaced by U+FFFD.

    A Python str may hold surrogates (e.g. from a surrogateescape decode); UTF-16 cannot.
    """
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return text
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def utf16_units(text: str) -> int:
    """Return how many UTF-16 code units (of the 70 in one SMS) `text` takes."""
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


def encode_ucs2(text: str) -> str:
    """Encode `text` as the modem wants it under `AT+CSCS="UCS2"`: hex of UTF-16BE.

    Characters outside the BMP become surrogate pairs (8 hex digits).
    """
    return clean_text(text).encode("utf-16-be").hex().upper()


def decode_ucs2(data: str) -> str:
    """Decode hex UTF-16BE (as a modem shows UCS2 strings) back to text.

    Raises:
        ValueError: `data` is not hex, has an odd number of octets or a broken surrogate.
    """
    return bytes.fromhex(data).decode("utf-16-be")


def _take(text: str, start: int, units: int) -> int:
    """Return the end of the longest `text[start:end]` that fits in `units` UTF-16 units."""
    used = 0
    end = start
    while end < len(text):
        width = 2 if ord(text[end]) > 0xFFFF else 1
        if used + width > units:
            break
        used += width
        end += 1
    return end


def _numbered(text: str, n: int, limit: int) -> list[str] | None:
    """Split `text` into exactly `n` numbered parts of at most `limit` units, or None."""
    parts: list[str] = []
    pos = 0
    for i in range(1, n + 1):
        prefix = f"({i}/{n}) "
        end = _take(text, pos, limit - len(prefix))
        parts.append(prefix + text[pos:end])
        pos = end
        if pos == len(text):
            # A prefix for n is never shorter than for n-1, so fitting in fewer parts than n
            # means n-1 would have fitted and been chosen: this only happens at i == n.
            return parts if i == n else None
    return None


def split_sms(text: str, max_parts: int = DEFAULT_MAX_PARTS,
              limit: int = SMS_UCS2_UNITS) -> list[str]:
    """Split `text` into the SMS texts to send, each at most `limit` UTF-16 units.

    A text that fits is one message, unchanged. A longer one becomes the fewest numbered
    parts "(1/n) ...": concatenating the parts without their prefixes gives the text back.
    A text that needs more than `max_parts` parts is cut: the last part ends with "…".

    Args:
        text: the message; lone surrogates become U+FFFD.
        max_parts: the most messages to make (at least 1).
        limit: UTF-16 units per message (70 for UCS2).

    Raises:
        SmsInputError: `text` is empty.
        ValueError: `max_parts` or `limit` is out of range.
    """
    if max_parts < 1:
        raise ValueError(f"max_parts must be at least 1, not {max_parts}")
    if limit < 16:
        raise ValueError(f"limit must be at least 16 UTF-16 units, not {limit}")
    text = clean_text(text)
    if not text:
        raise SmsInputError("the SMS text is empty")
    if utf16_units(text) <= limit:
        return [text]
    for n in range(2, max_parts + 1):
        parts = _numbered(text, n, limit)
        if parts is not None:
            return parts
    # Too long: fill max_parts and end the last one with an ellipsis.
    parts = []
    pos = 0
    for i in range(1, max_parts + 1):
        prefix = f"({i}/{max_parts}) " if max_parts > 1 else ""
        room = limit - len(prefix)
        if i < max_parts:
            end = _take(text, pos, room)
            parts.append(prefix + text[pos:end])
        else:
            end = _take(text, pos, room - 1)
            parts.append(prefix + text[pos:end] + ELLIPSIS)
        pos = end
    return parts


def join_sms(parts: Sequence[str]) -> str:
    """Reassemble the parts that `split_sms` made (in order) into the text.

    Raises:
        ValueError: the parts are not a complete numbered series.
    """
    if len(parts) == 1:
        return parts[0]
    out: list[str] = []
    for i, part in enumerate(parts, start=1):
        m = _PART_PREFIX_RE.match(part)
        if m is None or int(m.group(1)) != i or int(m.group(2)) != len(parts):
            raise ValueError(f"part {i} of {len(parts)} does not start with ({i}/{len(parts)})")
        out.append(part[m.end():])
    return "".join(out)


def normalize_number(number: str) -> str:
    """Return `number` as the modem takes it: digits with an optional leading +.

    Spaces, dashes, dots and parentheses are dropped ("+86 138-0013-8000" is fine).

    Raises:
        SmsInputError: what is left is not 3 to 20 digits.
    """
    cleaned = number.strip().translate(_NUMBER_JUNK)
    if not _NUMBER_RE.fullmatch(cleaned):
        raise SmsInputError(
            f"phone number {number!r} is not usable: write 3 to 20 digits with an optional"
            " leading +, e.g. +8613800138000")
    return cleaned


def mask_number(number: str) -> str:
    """Return `number` with its middle hidden, for logs ("+86138****8000")."""
    if len(number) > 8:
        return number[:-8] + "****" + number[-4:]
    return "***" + number[-2:]


def _command_name(cmd: str) -> str:
    """Return an AT command without its arguments ("AT+CPIN" for 'AT+CPIN="1234"')."""
    m = re.match(r"AT([+^&][A-Z0-9]+|[A-Z])?", cmd, re.IGNORECASE)
    return m.group(0).upper() if m else cmd[:8]


def _loggable(cmd: str) -> str:
    """Return `cmd` fit for a log: no PIN, no phone number."""
    name = _command_name(cmd)
    if name in ("AT+CPIN", "AT+CMGS") and "=" in cmd:
        return name + "=<hidden>"
    return cmd


def _is_urc(line: str) -> bool:
    """Whether `line` looks like an unsolicited result code rather than an answer."""
    return line[:1] in ("+", "^") or line.upper() in _BARE_URCS


def _is_final_error(line: str) -> bool:
    return line == "ERROR" or line.startswith(("+CME ERROR:", "+CMS ERROR:"))


def _parse_error(line: str) -> tuple[str, int | None, str]:
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


# -- status ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModemStatus:
    """What `Modem.check()` found.

    `rssi` is the 27.007 signal level 0..31 (None when the modem does not know it: no
    network), `ber` the bit error rate class 0..7 (None when unknown).
    """

    port: str
    sim: SimState
    registration: Registration
    rssi: int | None
    ber: int | None
    manufacturer: str | None = None
    model: str | None = None
    imei: str | None = None
    sim_detail: str = ""
    """The modem's own words about the SIM, e.g. "SIM PIN" or "+CME ERROR: 10"."""

    @property
    def signal_dbm(self) -> int | None:
        """Received signal strength in dBm (-113 to -51), or None when unknown."""
        return None if self.rssi is None else -113 + 2 * self.rssi

    @property
    def registered(self) -> bool:
        """Whether the modem is on a network (home or roaming)."""
        return self.registration in ("home", "roaming")

    @property
    def is_ready(self) -> bool:
        """Whether an SMS can be expected to go: SIM ready and registered."""
        return self.sim == "ready" and self.registered

    def problems(self) -> list[str]:
        """What stands in the way of sending an SMS, in words for a technician."""
        out: list[str] = []
        sim_words: dict[str, str] = {
            "not_inserted": "no SIM card: " + _CHECK_SIM,
            "pin_required": "the SIM asks for its PIN: " + _CHECK_PIN,
            "puk_required": "the SIM is blocked (PUK): unblock it in a phone with the carrier's"
                            " PUK code; do not guess",
            "failure": "the SIM fails: " + _CHECK_SIM + "; replace the SIM if it persists",
            "busy": "the SIM is still starting: check again in a minute",
            "locked": f"the SIM is locked ({self.sim_detail}): unlock it with a phone",
            "unknown": f"the SIM state is unknown ({self.sim_detail or 'no answer'})",
        }
        if self.sim != "ready":
            out.append(sim_words[self.sim])
        if self.sim == "ready" and not self.registered:
            if self.registration == "denied":
                out.append("the network denied registration: the SIM may not be activated, paid"
                           " or real-name registered: call the carrier")
            else:
                out.append(f"not registered to a network ({self.registration}): {_CHECK_NET}")
        if self.sim == "ready" and self.rssi is None:
            out.append("no signal: check the antenna and its cable")
        elif self.rssi is not None and self.rssi < 10:
            out.append(f"weak signal ({self.signal_dbm} dBm, rssi {self.rssi}): move the antenna"
                       " outside the metal cabinet or near a window")
        return out

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict with the derived fields too."""
        d = asdict(self)
        d.update(signal_dbm=self.signal_dbm, registered=self.registered,
                 ready=self.is_ready, problems=self.problems())
        return d


# -- the driver -----------------------------------------------------------------------------


class _Prompt:
    """The "> " prompt after AT+CMGS (a marker, not a line)."""


_PROMPT = _Prompt()


class Modem:
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
        self.port = str(port)
        self.baud = baud
        self.timeout_s = timeout_s
        self.send_timeout_s = send_timeout_s
        self.max_parts = max_parts
        self.busy_timeout_s = (busy_timeout_s if busy_timeout_s is not None
                               else max_parts * (send_timeout_s + 2 * timeout_s)
                               + 12 * timeout_s)
        self._pin = pin
        self._pin_refused = False
        self._lock = threading.RLock()
        self._ser: serial.Serial | None = None
        self._buf = bytearray()
        self._ready = False
        self._closing = False
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

    def _next(self, deadline: float, command: str, *, prompt: bool = False) -> str | _Prompt | None:
        """Return the next non-empty line (or the prompt), or None at the deadline."""
        while True:
            line = self._pop_line()
            if line is not None:
                if prompt and line == ">":
                    return _PROMPT
                return line
            if prompt and self._buf.strip() == b">":
                self._buf.clear()
                return _PROMPT
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
        log.debug("modem %s << %s", self.port, _loggable(cmd))
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
            if _is_final_error(line):
                raise self._error(name, line)
            if expect is not None and line.startswith(expect):
                info.append(line[len(expect):].strip())
            elif (expect is None or plain) and not _is_urc(line):
                info.append(line)
            else:
                log.debug("modem %s: skipped unsolicited %r during %s", self.port, line, name)

    def _error(self, command: str, line: str, *, sms: bool = False) -> ModemCommandError:
        """Build the error for a final error `line` in answer to `command`."""
        kind, code, words = _parse_error(line)
        table = CMS_ERRORS if kind == "CMS" else CME_ERRORS
        meaning, hint = table.get(code, ("", "")) if code is not None else ("", "")
        cls: type[ModemCommandError] = ModemSmsError if sms else ModemCommandError
        if (kind == "CMS" and code in _SIM_CMS) or (kind == "CME" and code in _SIM_CME):
            cls = ModemSimError
        elif (kind == "CMS" and code in _NET_CMS) or (kind == "CME" and code in _NET_CME):
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
        code = _parse_error(detail)[1]
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
        log.debug("modem %s << %s (%d units)", self.port, _loggable(cmd), utf16_units(text))
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
            if line is _PROMPT:
                break
            assert isinstance(line, str)
            if line.upper() == cmd.upper() or line == "OK":
                continue  # echo, or a stale OK that arrived after the flush
            if _is_final_error(line):
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
            if _is_final_error(line):
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
            why = f"SIM ready, registered ({registration}), {signal}: {_CHECK_PLAN}"
        return cls(f"modem on {self.port}: AT+CMGS failed with {exc.reply}; {why}",
                   port=self.port, command=exc.command, code=exc.code, reply=exc.reply)


# -- shell tool -----------------------------------------------------------------------------


def candidate_ports() -> list[str]:
    """Serial ports where a USB modem's AT interface may be, stable names first."""
    found = sorted(glob.glob("/dev/serial/by-id/*"))
    found += sorted(glob.glob("/dev/ttyUSB*")) + sorted(glob.glob("/dev/ttyACM*"))
    return found


def _read_pin(path: str | None) -> str | None:
    if path is None:
        return None
    return Path(path).read_text(encoding="ascii").strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gateway.drivers.modem`: check a modem, find its AT port, send a test SMS."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.drivers.modem",
        description="Check an SMS modem, find its AT port or send a test SMS."
                    " Stop alarmgw first: it holds the port.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every AT command")
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("check", "send"):
        p = sub.add_parser(name, help="check the modem" if name == "check" else "send an SMS")
        p.add_argument("port", help="the AT port, e.g. /dev/ttyUSB2")
        p.add_argument("--baud", type=int, default=115200)
        p.add_argument("--pin-file", help="file holding the SIM PIN")
        p.add_argument("--timeout", type=float, default=3.0, help="per command, in seconds")
        if name == "send":
            p.add_argument("number")
            p.add_argument("text")
        else:
            p.add_argument("--json", action="store_true")
    probe = sub.add_parser("probe", help="try every serial port and say which answer AT")
    probe.add_argument("--timeout", type=float, default=0.5, help="per command, in seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.action == "probe":
            ports = candidate_ports()
            if not ports:
                print("no serial ports: is the modem plugged in (lsusb)?")
                return 1
            answering = 0
            for port in ports:
                with Modem(port, timeout_s=args.timeout) as modem:
                    try:
                        st = modem.check()
                    except ModemError as exc:
                        print(f"{port}: no ({exc})")
                        continue
                answering += 1
                print(f"{port}: answers AT: {st.manufacturer} {st.model}, SIM {st.sim},"
                      f" {st.registration}")
            return 0 if answering else 1
        with Modem(args.port, args.baud, args.timeout, _read_pin(args.pin_file)) as modem:
            if args.action == "check":
                st = modem.check()
                if args.json:
                    print(json.dumps(st.as_dict(), ensure_ascii=False, indent=2))
                else:
                    dbm = st.signal_dbm
                    print(f"{st.port}: {st.manufacturer} {st.model}, IMEI {st.imei}\n"
                          f"SIM: {st.sim}\nnetwork: {st.registration}\n"
                          f"signal: {'unknown' if dbm is None else f'{dbm} dBm'}")
                    for problem in st.problems():
                        print(f"problem: {problem}")
                return 0 if st.is_ready else 1
            refs = modem.send_sms(args.number, args.text)
            print(f"sent in {len(refs)} part(s), message references {refs}")
            return 0
    except (ModemError, SmsInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

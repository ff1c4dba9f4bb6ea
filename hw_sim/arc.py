"""An alarm-receiving centre (ARC) for tests and the demo: a SIA DC-09 receiver on loopback,
built on pysiaalarm.

pysiaalarm (an independent receiver, MIT) parses every message and decides the answer:
this module only owns the asyncio loop it runs on (one background thread), listens on
``127.0.0.1`` (TCP and UDP on the same port number), records what pysiaalarm accepted, and
can spoil the answer on purpose. :class:`ArcReceiver` modes, switchable while it runs:

- ``normal``: pysiaalarm's own answer (ACK, NAK for a stale timestamp, DUH).
- ``nak``: a NAK with the receiver's timestamp to every message (pysiaalarm makes it: the
  message's account is given a time band nothing fits).
- ``silent``: read and parse, never answer.
- ``garbage``: junk bytes instead of the answer (stray bytes and a frame that is none).
- ``bad_crc``: pysiaalarm's ACK with a wrong CRC.
- ``truncated``: the first half of pysiaalarm's ACK.
- ``down``: the listening sockets and every open connection are closed (the receiver has
  gone); any other mode listens again on the same port.

``clock_offset_s`` puts the receiver's clock ahead (or behind) ours, so that pysiaalarm
really refuses our timestamps and NAKs with its clock: pysiaalarm checks a timestamp
against ``datetime.now(account.device_timezone)`` widened by ``account.allowed_timeband``
(40 s before, 20 s after), and stamps its NAK with ``now().astimezone(device_timezone)``.
So each account gets ``device_timezone`` = UTC + offset (its NAKs and encrypted ACKs carry
a clock that far ahead, written as UTC, as a receiver with a wrong clock would) and
``allowed_timeband`` shifted by the offset (its check is made against that clock).

pysiaalarm 3.2.2 maps a Contact ID code it does not know (607, say) to "YN" and ACKs it;
with ``duh_unmapped_cid`` (default True) the receiver answers such a message with
pysiaalarm's DUH instead, as a strict ARC does.

``python -m hw_sim.arc --port N --account 1234 [--key K]`` runs one and prints each event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Self, TypeVar

from pysiaalarm.account import SIAAccount
from pysiaalarm.aio.server import SIAServerTCP, SIAServerUDP
from pysiaalarm.data.adm_mapping import ADM_MAPPING
from pysiaalarm.data.sia_codes import SIA_CODES
from pysiaalarm.event import NAKEvent, SIAEvent
from pysiaalarm.utils.counter import Counter
from pysiaalarm.utils.enums import MessageTypes

log = logging.getLogger(__name__)

Mode = Literal["normal", "nak", "silent", "garbage", "bad_crc", "truncated", "down"]
MODES: tuple[Mode, ...] = ("normal", "nak", "silent", "garbage", "bad_crc", "truncated",
                           "down")
HOST = "127.0.0.1"
#: pysiaalarm's default window for a message's timestamp: (seconds before, after) its clock.
TIMEBAND = (40, 20)
#: A time band no timestamp fits (mode "nak").
_NO_TIME = (-10**6, -10**6)
#: How long start/stop/mode changes wait for the loop thread, in seconds.
LOOP_TIMEOUT_S = 10.0

_T = TypeVar("_T")
Event = dict[str, Any]


class _Tcp(SIAServerTCP):
    """pysiaalarm's TCP server, answering through the ARC's `_handle`."""

    def __init__(self, arc: ArcReceiver) -> None:
        super().__init__(arc.sia_accounts, arc._never_called, arc.counts)
        self.arc = arc

    async def handle_line(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self.arc._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self.arc._handlers.add(task)
        try:
            while not self.shutdown_flag:
                try:
                    data = await reader.read(1000)
                except OSError:
                    break
                if not data:
                    break
                answer = self.arc._handle(self, data)
                if answer:
                    writer.write(answer)
                    with contextlib.suppress(OSError):
                        await writer.drain()
        finally:
            self.arc._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if task is not None:
                self.arc._handlers.discard(task)


class _Udp(SIAServerUDP):
    """pysiaalarm's UDP server, answering through the ARC's `_handle`."""

    def __init__(self, arc: ArcReceiver) -> None:
        super().__init__(arc.sia_accounts, arc._never_called, arc.counts)
        self.arc = arc

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # pysiaalarm asserts an asyncio.DatagramTransport, which CPython 3.11's selector
        # datagram transport does not derive from (it only quacks like one).
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = self.arc._handle(self, data)
        if answer and self.transport is not None:
            self.transport.sendto(answer, addr)


class ArcReceiver:
    """A DC-09 receiver on 127.0.0.1 for the accounts given ({account: key or None}; a key
    is the 16/24/32 hex character string, see gateway.dc09.frames).

    Each message pysiaalarm accepted (it would ACK it, whatever the mode then sent) becomes
    an event, a dict of pysiaalarm's fields as strings: ``account``, ``sequence`` ("0017"),
    ``receiver`` ("R1" or None), ``line`` ("L2"), ``code`` (the SIA code pysiaalarm mapped,
    "PA"), ``event_qualifier`` ("1"), ``event_type`` (the Contact ID code, "120"),
    ``partition``, ``ri`` (the zone), ``timestamp`` (aware datetime or None),
    ``encrypted``, ``message_type`` ("ADM-CID", "SIA-DCS", "NULL"), ``answer`` (the
    mode it was answered in) and ``arrived_ns`` (when it was taken, CLOCK_BOOTTIME ns, the
    clock of an alarmgw event's ``mono_ns``). `counts` is pysiaalarm's Counter;
    `answered` counts what was sent back, by kind.
    """

    def __init__(self, accounts: dict[str, str | None], *, port: int = 0,
                 clock_offset_s: float = 0.0, duh_unmapped_cid: bool = True,
                 on_event: Callable[[Event], None] | None = None) -> None:
        for acct, key in accounts.items():
            SIAAccount.validate_account(acct, key)
        self.accounts = dict(accounts)
        self.sia_accounts = {acct.upper(): SIAAccount(acct.upper(), key)
                             for acct, key in accounts.items()}
        self.counts = Counter()
        self.port = port
        self.duh_unmapped_cid = duh_unmapped_cid
        self.on_event = on_event
        self.answered: dict[str, int] = {}
        """Answers sent, by kind: ACK, NAK, DUH, RSP, none, garbage, bad_crc, truncated."""
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._mode: Mode = "normal"
        self._offset = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tcp = _Tcp(self)
        self._udp = _Udp(self)
        self._server: asyncio.Server | None = None
        self._udp_transport: asyncio.BaseTransport | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._apply_offset(clock_offset_s)

    # -- running --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the loop thread and listen; `port` is then the port (TCP and UDP)."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="arc-loop", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise
        log.info("ARC listening on %s:%d (tcp and udp)", HOST, self.port)
        return self

    def stop(self) -> None:
        """Close every socket, end the loop thread and join it."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(LOOP_TIMEOUT_S)
        loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(LOOP_TIMEOUT_S)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            server = await asyncio.start_server(self._tcp.handle_line, HOST, self.port)
            port = server.sockets[0].getsockname()[1]
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: self._udp, local_addr=(HOST, port))
            except OSError:
                server.close()
                await server.wait_closed()
                if self.port:
                    raise
                continue  # UDP has that port taken: try another pair
            self._server, self._udp_transport, self.port = server, transport, port
            return
        raise OSError(f"no port free for both TCP and UDP on {HOST}")

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._udp_transport is not None:
            self._udp_transport.close()
            self._udp_transport = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._handlers:  # let the connections' handlers run their finally
            await asyncio.wait(set(self._handlers), timeout=LOOP_TIMEOUT_S / 2)

    async def _shutdown(self) -> None:
        await self._unlisten()
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- knobs ----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """How the receiver answers (module docstring)."""
        return self._mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        if value not in MODES:
            raise ValueError(f"ARC mode {value!r} is not one of {', '.join(MODES)}")
        old, self._mode = self._mode, value
        if self._loop is None or old == value:
            return
        if value == "down":
            self._call(self._unlisten())
        elif old == "down":
            self._call(self._listen())

    @property
    def clock_offset_s(self) -> float:
        """Seconds the receiver's clock is ahead of ours (negative: behind)."""
        return self._offset

    @clock_offset_s.setter
    def clock_offset_s(self, value: float) -> None:
        if self._loop is None:
            self._apply_offset(value)
        else:
            async def apply() -> None:
                self._apply_offset(value)
            self._call(apply())

    def _apply_offset(self, value: float) -> None:
        if abs(value) >= 86000:
            raise ValueError("the ARC's clock offset must be within a day")
        self._offset = value
        for acc in self.sia_accounts.values():
            acc.device_timezone = timezone(timedelta(seconds=value))
            acc.allowed_timeband = (round(TIMEBAND[0] - value), round(TIMEBAND[1] + value))

    # -- what it got ----------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """The messages pysiaalarm accepted, oldest first (a copy)."""
        with self._cond:
            return list(self._events)

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        """The first event (already here or to come) for which `predicate` is true; raises
        TimeoutError after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for event in self._events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self._events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching DC-09 event within {timeout:g} s;"
                                       f" got {self._events!r}")
                self._cond.wait(left)

    # -- the answer (loop thread) ---------------------------------------------------------

    async def _never_called(self, event: SIAEvent) -> None:  # pragma: no cover
        """pysiaalarm's servers want a callback; `_handle` records events itself."""

    def _handle(self, server: SIAServerTCP | SIAServerUDP, data: bytes) -> bytes | None:
        """pysiaalarm parses `data`; the answer to send back (None: none)."""
        event = server.parse_and_check_event(data)
        if event is None:
            return None
        mode = self._mode
        if mode == "down":
            return None
        if mode == "nak":
            return self._count(self._forced_nak(event), "NAK")
        answer = event.create_response()
        kind = event.response.value if event.response is not None else "none"
        if (kind == "ACK" and self.duh_unmapped_cid and isinstance(event, SIAEvent)
                and event.message_type == MessageTypes.ADMCID
                and event.event_type not in ADM_MAPPING):
            duh = copy.copy(event)
            duh.sia_code = None
            return self._count(duh.create_response(), "DUH")
        if kind == "ACK" and isinstance(event, SIAEvent):
            self.counts.increment_valid_events()
            self._record(event, mode)
        if mode == "silent":
            return self._count(None, "none")
        if mode == "garbage":
            return self._count(b"\x00\xffjunk" + secrets.token_bytes(8).replace(b"\n", b"")
                               + b"\nZZZZ not a frame\r", "garbage")
        if mode == "bad_crc" and answer.startswith(b"\n") and len(answer) > 5:
            crc = int(answer[1:5], 16) ^ 0x5A5A
            return self._count(b"\n" + f"{crc:04X}".encode() + answer[5:], "bad_crc")
        if mode == "truncated":
            return self._count(answer[: len(answer) // 2], "truncated")
        return self._count(answer, kind)

    def _count(self, answer: bytes | None, kind: str) -> bytes | None:
        with self._cond:
            self.answered[kind] = self.answered.get(kind, 0) + 1
            self._cond.notify_all()
        return answer

    def wait_answered(self, kind: str, count: int, timeout: float) -> None:
        """Until `count` answers of `kind` (ACK, NAK, DUH, ...) have been sent; raises
        TimeoutError after `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.answered.get(kind, 0) >= count, timeout):
                raise TimeoutError(f"{self.answered.get(kind, 0)} {kind} answers within"
                                   f" {timeout:g} s, not {count}")

    @staticmethod
    def _forced_nak(event: SIAEvent | NAKEvent | Any) -> bytes:
        """pysiaalarm's NAK for `event`, with the receiver's timestamp."""
        if not isinstance(event, SIAEvent) or event.sia_account is None:
            answer: bytes = event.create_response()
            return answer
        nak = copy.copy(event)
        nak.sia_account = dataclasses.replace(event.sia_account, allowed_timeband=_NO_TIME)
        nak.sia_code = nak.sia_code or SIA_CODES["RP"]
        answer = nak.create_response()
        return answer

    def _record(self, event: SIAEvent, answer: str) -> None:
        stamp = event.timestamp
        msg_type = event.message_type
        record: Event = {
            "account": event.account,
            "sequence": event.sequence,
            "receiver": event.receiver,
            "line": event.line,
            "code": event.code,
            "event_qualifier": event.event_qualifier,
            "event_type": event.event_type,
            "partition": event.partition,
            "ri": event.ri,
            "timestamp": stamp if isinstance(stamp, datetime) else None,
            "encrypted": bool(event.encrypted),
            "message_type": msg_type.value if isinstance(msg_type, MessageTypes) else msg_type,
            "answer": answer,
            "arrived_ns": time.clock_gettime_ns(time.CLOCK_BOOTTIME),
        }
        with self._cond:
            self._events.append(record)
            self._cond.notify_all()
        if self.on_event is not None:
            try:
                self.on_event(record)
            except Exception:
                log.exception("ARC: the on_event callback failed")


#: What the Contact ID codes alarmgw sends mean (gateway/dc09/contactid.py).
_CID_NAMES = {
    "120": "panic", "121": "duress", "122": "silent panic", "150": "24-hour auxiliary",
    "144": "sensor tamper", "380": "sensor trouble", "330": "system peripheral trouble",
    "354": "failure to communicate", "350": "communication trouble",
    "626": "time/date inaccurate", "300": "system trouble", "601": "manual test",
    "602": "periodic test", "607": "walk test",
}
_CID_QUALIFIERS = {"1": "new", "3": "restore", "6": "status"}


def write_key_file(path: Path, text: str) -> Path:
    """Write a key file (an account's DC-09 key, the platform's command key) readable by
    its owner only, as the gateway requires of one: the mode is set on the file itself,
    not left to the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        f.write(text + "\n")
    return path


def describe(event: Event) -> str:
    """One message the receiver accepted, for a person: "ARC 1234: 1120 zone 001 (panic,
    new)" for a Contact ID event, a line for a supervision (NULL) message."""
    who = f"ARC {event['account']}"
    if event["message_type"] != "ADM-CID":
        return f"{who}: {event['message_type']} (supervision: the DC-09 path is alive)"
    qualifier, code = event["event_qualifier"] or "", event["event_type"] or ""
    name = _CID_NAMES.get(code, "code " + code)
    return (f"{who}: {qualifier}{code} zone {event['ri']} ({name},"
            f" {_CID_QUALIFIERS.get(qualifier, 'qualifier ' + qualifier)})")


def _print_event(event: Event) -> None:
    stamp = event["timestamp"].isoformat() if event["timestamp"] else "-"
    print(f"{describe(event)}: seq {event['sequence']} {event['receiver'] or ''}"
          f"{event['line']} SIA code {event['code']} partition {event['partition']} at"
          f" {stamp}{' encrypted' if event['encrypted'] else ''}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m hw_sim.arc``: run a receiver on 127.0.0.1 until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m hw_sim.arc",
                                     description="A SIA DC-09 receiver (pysiaalarm) on"
                                                 " 127.0.0.1, printing each event.")
    parser.add_argument("--port", type=int, default=0, help="TCP and UDP port (0: any)")
    parser.add_argument("--account", action="append", required=True,
                        help="account (3-16 hex digits); repeat for more")
    parser.add_argument("--key", help="AES key of the accounts: 16, 24 or 32 hex characters")
    parser.add_argument("--clock-offset", type=float, default=0.0,
                        help="seconds the receiver's clock is ahead of ours")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        arc = ArcReceiver({a: args.key for a in args.account}, port=args.port,
                          clock_offset_s=args.clock_offset, on_event=_print_event)
    except Exception as exc:
        print(f"arc: {exc or type(exc).__name__}", file=sys.stderr)
        return 2
    with arc:
        print(f"ARC listening on {HOST}:{arc.port} (tcp and udp), accounts"
              f" {', '.join(arc.sia_accounts)}", flush=True)
        stop.wait()
    print("ARC stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

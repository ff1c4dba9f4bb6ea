"""One connection to an alarm-receiving centre's DC-09 receiver: send a message, wait for
its answer.

`Dc09Link` is used by one thread (the DC-09 path's); only `abort` may be called from
another. Each `send` is one attempt and never raises for what the network or the receiver
does: it comes back as an `Outcome` ("ack", "nak", "duh", "timeout" or "error"), and
replies that cannot be used (another sequence, a bad CRC, truncated, junk) are counted in
`Dc09Link.counters` and skipped while the link waits for the right one.

TCP: the connection is opened on the first send, kept between sends, and opened again on
the send after an error. UDP: a connected datagram socket, so an ICMP "port unreachable"
comes back as an error rather than a silent timeout. One call blocks at most
``connect_timeout_s + ack_timeout_s`` (name resolution aside: give the receiver as an
address). The socket and a wake pipe are watched with a selector; `abort` writes to the
pipe, and the sending thread closes its own socket, so no descriptor is closed under a
thread that still uses it.

A NAK carries the receiver's clock: the link keeps ``offset_s = receiver - local wall`` and
stamps the following messages with ``wall() + offset_s`` (DC-09's resynchronisation), and
reports "nak" so that the caller sends again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from gateway.dc09.frames import FrameError, Identity, ReplyBuffer, build_message, parse_reply

OutcomeKind = Literal["ack", "nak", "duh", "timeout", "error"]
Transport = Literal["tcp", "udp"]

#: Largest datagram or read taken from the socket at once, in bytes.
RECV_CHUNK = 4096


@dataclass(frozen=True)
class Outcome:
    """What one `Dc09Link.send` came to."""

    kind: OutcomeKind
    rtt_s: float | None
    """Seconds from the send to the matching reply; None without one."""
    detail: str
    """For the log and the fault: what happened and, for an error, what to check."""


class _Aborted(Exception):
    pass


class Dc09Link:
    """One receiver: its address, transport, our identity there, and the open socket."""

    def __init__(self, host: str, port: int, transport: Transport, ident: Identity, *,
                 ack_timeout_s: float = 5.0, connect_timeout_s: float = 5.0,
                 clock_offset_s: float = 0.0) -> None:
        if transport not in ("tcp", "udp"):
            raise ValueError(f"DC-09 transport {transport!r} is not 'tcp' or 'udp'")
        self.host = host
        self.port = port
        self.transport: Transport = transport
        self.ident = ident
        self.ack_timeout_s = ack_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.offset_s = clock_offset_s
        """Seconds added to the local wall clock in timestamps (set from the last NAK)."""
        self.last_rtt_s: float | None = None
        self.counters: dict[str, int] = {}
        """Events by name: sent, ack, nak, duh, rsp, timeout, error, connects, resyncs, and
        the replies skipped: other_seq, crc, length, truncated, malformed, decrypt,
        account, junk_bytes, overflow."""
        self._sock: socket.socket | None = None
        self._buffer = ReplyBuffer()
        self._lock = threading.Lock()
        self._aborted = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # One selector for the link's life (the wake pipe always, the socket while open):
        # a new one per wait cost four system calls on every alarm's path.
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._sel_events = 0

    @property
    def where(self) -> str:
        """``host:port/transport``, for messages."""
        return f"{self.host}:{self.port}/{self.transport}"

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # -- shutdown -------------------------------------------------------------------------

    def abort(self) -> None:
        """Make a blocked (and every later) `send` return ("error", "closed") promptly.
        Safe from any thread."""
        with self._lock:
            self._aborted = True
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError):
                    os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Close the socket and the wake pipe; the link sends no more. Call it from the
        sending thread, or once that thread is done (`abort` first if it may be blocked)."""
        self._drop()
        with self._lock:
            self._aborted = True
            self._sel.close()
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    def _drop(self) -> None:
        if self._sock is not None:
            if self._sel_events:
                with contextlib.suppress(KeyError, ValueError, RuntimeError):
                    self._sel.unregister(self._sock)
                self._sel_events = 0
            self._sock.close()
            self._sock = None
        self._buffer.clear()

    # -- one attempt ----------------------------------------------------------------------

    def send(self, token: str, data: str, seq: int, *,
             wall: Callable[[], float] | None = None) -> Outcome:
        """Send one message (see `frames.build_message`) and wait for its reply.

        `wall` is the local wall clock in seconds (default `time.time`); the message's
        timestamp is ``wall() + offset_s``. Raises ValueError only for a message that
        cannot be built (a programming or config error), never for the network.
        """
        clock = wall or time.time
        frame = build_message(token, seq, self.ident,
                              data, datetime.fromtimestamp(clock() + self.offset_s, UTC))
        if self._aborted:
            return self._error("closed", count=False)
        start = time.monotonic()
        try:
            if self._sock is None:
                self._connect(start + self.connect_timeout_s)
            assert self._sock is not None
            sent_at = time.monotonic()
            self._sendall(frame, sent_at + self.ack_timeout_s)
            self._count("sent")
            return self._await(seq, sent_at, sent_at + self.ack_timeout_s, clock)
        except _Aborted:
            self._drop()
            return self._error("closed", count=False)
        except TimeoutError as exc:
            self._drop()
            return self._error(str(exc))
        except OSError as exc:
            self._drop()
            return self._error(self._explain(exc))

    def _error(self, detail: str, *, count: bool = True) -> Outcome:
        if count:
            self._count("error")
        return Outcome("error", None, detail)

    def _explain(self, exc: OSError) -> str:
        code = exc.errno
        if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
            what = "connection refused"
            hint = "check the receiver is running and listening on that port"
        elif isinstance(exc, ConnectionResetError | BrokenPipeError) or code in (
                errno.ECONNRESET, errno.EPIPE):
            what = "connection reset by the receiver"
            hint = "check the receiver's log: it may refuse our account or be restarting"
        elif isinstance(exc, socket.gaierror):
            what = f"cannot resolve the host ({exc.strerror})"
            hint = "check the receiver's address in the config, and DNS"
        elif code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            what = "no route to the receiver"
            hint = "check the uplink (3G/Ethernet) and the receiver's address"
        else:
            what = exc.strerror or str(exc) or type(exc).__name__
            hint = "check the network and the receiver's address and port"
        return f"{self.where}: {what}; {hint}"

    def _watch(self, events: int) -> None:
        """Have the selector watch the open socket for `events`."""
        assert self._sock is not None
        if self._sel_events == events:
            return
        if self._sel_events:
            self._sel.modify(self._sock, events, "sock")
        else:
            self._sel.register(self._sock, events, "sock")
        self._sel_events = events

    def _wait(self, events: int, deadline: float) -> bool:
        """Wait for the socket to be ready for `events` until `deadline`; False on timeout.
        Raises _Aborted when `abort` was called."""
        if self._aborted:
            raise _Aborted
        self._watch(events)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready = self._sel.select(left)
            if any(key.data == "wake" for key, _ in ready) or self._aborted:
                raise _Aborted
            if ready:
                return True

    def _connect(self, deadline: float) -> None:
        kind = socket.SOCK_STREAM if self.transport == "tcp" else socket.SOCK_DGRAM
        infos = socket.getaddrinfo(self.host, self.port, type=kind)
        family, stype, proto, _, addr = infos[0]
        sock = socket.socket(family, stype, proto)
        self._sock = sock
        sock.setblocking(False)
        self._buffer.clear()
        if self.transport == "udp":
            sock.connect(addr)
            self._count("connects")
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
            raise OSError(err, os.strerror(err))
        if err != 0:
            if not self._wait(selectors.EVENT_WRITE, deadline):
                raise TimeoutError(f"{self.where}: no connection within"
                                   f" {self.connect_timeout_s:g} s; check the receiver's"
                                   " address, the firewall and the uplink")
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
        self._count("connects")

    def _sendall(self, frame: bytes, deadline: float) -> None:
        assert self._sock is not None
        view = memoryview(frame)
        while view:
            try:
                n = self._sock.send(view)
            except BlockingIOError:
                n = 0
            view = view[n:]
            if view and not self._wait(selectors.EVENT_WRITE, deadline):
                raise TimeoutError(f"{self.where}: the receiver takes no bytes (send"
                                   f" blocked {self.ack_timeout_s:g} s); check the receiver")

    def _await(self, seq: int, sent_at: float, deadline: float,
               clock: Callable[[], float]) -> Outcome:
        assert self._sock is not None
        while True:
            if not self._wait(selectors.EVENT_READ, deadline):
                if self._buffer.partial:  # the rest of that frame is of no use now
                    self._count("truncated")
                    self._buffer.clear()
                self._count("timeout")
                return Outcome("timeout", None, f"{self.where}: no answer to message"
                               f" {seq:04d} within {self.ack_timeout_s:g} s")
            try:
                data = self._sock.recv(RECV_CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                if self.transport == "udp":
                    continue  # an empty datagram is no answer
                if self._buffer.partial:  # closed inside a frame
                    self._count("truncated")
                self._drop()
                return self._error(f"{self.where}: the receiver closed the connection;"
                                   " check its log (it may refuse our account)")
            if self.transport == "udp":
                self._buffer.clear()  # a datagram is whole: nothing carries over
            frames = self._feed(data)
            for frame in frames:
                outcome = self._match(frame, seq, sent_at, clock)
                if outcome is not None:
                    return outcome

    def _feed(self, data: bytes) -> list[bytes]:
        buf = self._buffer
        junk, trunc, over = buf.junk_bytes, buf.truncated, buf.overflows
        frames = buf.feed(data)
        if self.transport == "udp" and buf.partial:
            buf.truncated += 1  # the datagram ended inside a frame
            buf.clear()
        for name, n in (("junk_bytes", buf.junk_bytes - junk),
                        ("truncated", buf.truncated - trunc),
                        ("overflow", buf.overflows - over)):
            if n:
                self._count(name, n)
        return frames

    def _match(self, frame: bytes, seq: int, sent_at: float,
               clock: Callable[[], float]) -> Outcome | None:
        try:
            reply = parse_reply(frame, self.ident)
        except FrameError as exc:
            self._count(exc.reason)
            return None
        if reply.seq != seq and not (reply.kind == "NAK" and reply.seq == 0):
            self._count("other_seq")
            return None
        rtt = time.monotonic() - sent_at
        self.last_rtt_s = rtt
        if reply.kind == "NAK":
            self._count("nak")
            detail = f"{self.where}: NAK for message {seq:04d}"
            if reply.timestamp is not None:
                self.offset_s = reply.timestamp.timestamp() - clock()
                self._count("resyncs")
                detail += (f"; the receiver's clock is {self.offset_s:+.0f} s from ours:"
                           " timestamps resynchronised")
            return Outcome("nak", rtt, detail)
        if reply.kind == "DUH":
            self._count("duh")
            return Outcome("duh", rtt, f"{self.where}: DUH: the receiver does not"
                           f" understand message {seq:04d}")
        self._count("ack" if reply.kind == "ACK" else "rsp")
        return Outcome("ack", rtt, f"{self.where}: {reply.kind} {seq:04d} in {rtt * 1000:.0f} ms")

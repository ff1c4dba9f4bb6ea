"""A TCP proxy on loopback that breaks the path between the gateway and the broker on command.

The gateway's promises are about bad networks, and a killed broker is only one of them: a
3G link that stops carrying bytes without closing (a half-open link), a firewall that resets
every connection, a congested uplink that adds a second of latency or trickles bytes. Put
:class:`NetFault` between the gateway and the broker (the gateway's ``broker.port`` is the
proxy's :attr:`NetFault.port`) and switch its mode at any time:

- ``pass``: bytes go through untouched.
- ``latency``: every byte is held for the given milliseconds, in each direction.
- ``cut``: every open connection is reset (SO_LINGER 0, then close: the peer sees a RST), and
  so is every new one, until the mode changes.
- ``blackhole``: connections stay open but every byte is dropped, both ways; new connections
  are accepted and then never answered. A connection that has been black-holed stays dead
  after the mode changes back, as a real half-open TCP connection does (its bytes are gone,
  so the MQTT stream could not resume anyway); new connections pass again.
- ``throttle``: at most the given bytes per second, in each direction.

Each connection has one thread per direction; one thread accepts. :meth:`NetFault.stop` ends
and joins them all and closes every socket. Nothing listens beyond ``127.0.0.1``.
"""

from __future__ import annotations

import collections
import logging
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Literal, Self

log = logging.getLogger(__name__)

Mode = Literal["pass", "latency", "cut", "blackhole", "throttle"]
MODES: tuple[Mode, ...] = ("pass", "latency", "cut", "blackhole", "throttle")

#: Longest a pump waits before it looks at the mode and the stop flag again, in seconds.
POLL_S = 0.02
#: How long the proxy tries to reach the upstream for a new connection, in seconds.
CONNECT_TIMEOUT_S = 2.0
#: How long a send to a peer that does not read may block before the link is closed, in s.
SEND_TIMEOUT_S = 5.0
#: Largest read from a socket, in bytes.
CHUNK = 65536


@dataclass(frozen=True)
class FaultState:
    """The proxy's mode and its parameters."""

    mode: Mode
    latency_ms: float = 0.0
    """Added delay per direction, in milliseconds (mode ``latency``)."""
    rate_bps: float = 0.0
    """Bytes per second per direction (mode ``throttle``)."""


def _reset(sock: socket.socket | None) -> None:
    """Close `sock` with a RST rather than a FIN."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass  # already closed by the peer: close() below is all that is left
    sock.close()


class _Link:
    """One proxied connection: the client's socket and (unless born black-holed) upstream's."""

    def __init__(self, proxy: NetFault, client: socket.socket,
                 upstream: socket.socket | None, number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.number = number
        self.dead = upstream is None
        """Black-holed at some point: drops every byte until it closes."""
        self.reset = False
        """Cut: the pumps end and the last one out closes both sockets with a RST."""
        self.closing = False
        """One side closed or failed: the pumps end and close both sockets normally."""
        self._lock = threading.Lock()
        self._running = 0
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        pairs: list[tuple[socket.socket, socket.socket | None, str]] = [
            (self.client, self.upstream, "up")]
        if self.upstream is not None:
            pairs.append((self.upstream, self.client, "down"))
        self._running = len(pairs)
        for src, dst, name in pairs:
            t = threading.Thread(target=self._pump, args=(src, dst, name),
                                 name=f"netfault-{self.proxy.port}-{self.number}-{name}")
            self.threads.append(t)
        for t in self.threads:
            t.start()

    def _pump(self, src: socket.socket, dst: socket.socket | None, name: str) -> None:
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        next_send = 0.0
        eof = False
        try:
            while not (self.proxy._stopping.is_set() or self.reset or self.closing):
                state = self.proxy.state
                if state.mode == "blackhole":
                    self.dead = True
                if self.dead:
                    queue.clear()
                now = time.monotonic()
                timeout = POLL_S
                if queue:
                    timeout = max(0.0, min(timeout, queue[0][0] - now, next_send - now))
                if not eof:
                    readable, _, _ = select.select([src], [], [], timeout)
                    if readable:
                        data = src.recv(CHUNK)
                        state = self.proxy.state  # the mode may have changed while we waited
                        if state.mode == "blackhole":
                            self.dead = True
                        if not data:
                            eof = True
                        elif self.dead:
                            self.proxy._count("dropped", len(data))
                        else:
                            delay = state.latency_ms / 1000 if state.mode == "latency" else 0.0
                            due = time.monotonic() + delay
                            if queue:
                                due = max(due, queue[-1][0])  # never reorder the stream
                            queue.append((due, data))
                elif timeout > 0:
                    self.proxy._stopping.wait(timeout)
                next_send = self._flush(queue, dst, name, next_send)
                if eof and not queue:
                    self.closing = True
        except OSError as exc:
            log.debug("netfault: link %d %s ended: %s", self.number, name, exc)
            self.closing = True
        finally:
            self._leave()

    def _flush(self, queue: collections.deque[tuple[float, bytes]], dst: socket.socket | None,
               name: str, next_send: float) -> float:
        """Send what is due to `dst`; returns when the throttle allows the next send."""
        while queue and dst is not None and not self.dead:
            now = time.monotonic()
            due, data = queue[0]
            if due > now or next_send > now:
                break
            state = self.proxy.state
            if state.mode == "throttle" and state.rate_bps > 0:
                # Send a slice worth 50 ms of the rate, then wait for the rate to allow more.
                n = max(1, int(state.rate_bps * 0.05))
                piece, rest = data[:n], data[n:]
                self.proxy._count(name, len(piece))
                dst.sendall(piece)
                next_send = now + len(piece) / state.rate_bps
                if rest:
                    queue[0] = (due, rest)
                else:
                    queue.popleft()
            else:
                self.proxy._count(name, len(data))
                dst.sendall(data)
                queue.popleft()
                next_send = 0.0
        return next_send

    def _leave(self) -> None:
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if not last:
            return
        if self.reset:
            _reset(self.client)
            _reset(self.upstream)
        else:
            self.client.close()
            if self.upstream is not None:
                self.upstream.close()
        self.proxy._forget(self)


class NetFault:
    """A fault-injecting TCP proxy from ``127.0.0.1:port`` to ``target_host:target_port``.

    Args:
        target_host: where connections go (the broker's host).
        target_port: the broker's port.
        port: listen on this port instead of one the OS picks.
    """

    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._want_port = port
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._state = FaultState("pass")
        self._numbers = 0
        self.counters: dict[str, int] = collections.defaultdict(int)
        """Bytes "up" (client to broker), "down", "dropped"; "accepted", "reset" connections."""

    # -- lifecycle --------------------------------------------------------

    @property
    def port(self) -> int:
        """The proxy's listening port (known after :meth:`start`)."""
        if self._listener is None:
            raise RuntimeError("netfault: port is not known before start()")
        port: int = self._listener.getsockname()[1]
        return port

    def start(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self._want_port))
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._want_port = self.port  # a restart comes back on the same port
        self._stopping.clear()
        self._accepter = threading.Thread(target=self._accept_loop,
                                          name=f"netfault-{self.port}-accept")
        self._accepter.start()
        log.info("netfault: 127.0.0.1:%d -> %s:%d", self.port, self.target_host,
                 self.target_port)
        return self

    def stop(self) -> None:
        """End every connection and thread, close the listener; idempotent."""
        self._stopping.set()
        if self._accepter is not None:
            self._accepter.join()
            self._accepter = None
        with self._lock:
            links = list(self._links)
        for link in links:
            for t in link.threads:
                t.join()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- modes ------------------------------------------------------------

    @property
    def state(self) -> FaultState:
        return self._state

    @property
    def connections(self) -> int:
        """Connections open right now."""
        with self._lock:
            return len(self._links)

    def set_mode(self, mode: Mode, *, latency_ms: float = 0.0, rate_bps: float = 0.0) -> None:
        """Switch to `mode` now (see the module docstring for what each does)."""
        if mode not in MODES:
            raise ValueError(f"netfault: unknown mode {mode!r}; one of {', '.join(MODES)}")
        if mode == "latency" and latency_ms <= 0:
            raise ValueError("netfault: latency mode needs latency_ms > 0")
        if mode == "throttle" and rate_bps <= 0:
            raise ValueError("netfault: throttle mode needs rate_bps > 0")
        self._state = FaultState(mode, latency_ms, rate_bps)
        log.info("netfault: port %s now %s", self._want_port, self._state)
        if mode == "cut":
            with self._lock:
                for link in self._links:
                    link.reset = True

    def pass_(self) -> None:
        self.set_mode("pass")

    def latency(self, ms: float) -> None:
        self.set_mode("latency", latency_ms=ms)

    def cut(self) -> None:
        self.set_mode("cut")

    def blackhole(self) -> None:
        self.set_mode("blackhole")

    def throttle(self, bytes_per_s: float) -> None:
        self.set_mode("throttle", rate_bps=bytes_per_s)

    # -- internals ----------------------------------------------------------

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            self.counters[name] += n

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stopping.is_set():
            readable, _, _ = select.select([listener], [], [], POLL_S)
            if not readable:
                continue
            try:
                client, _addr = listener.accept()
            except OSError as exc:
                log.warning("netfault: accept failed: %s", exc)
                continue
            self._count("accepted", 1)
            mode = self._state.mode
            if mode == "cut":
                self._count("reset", 1)
                _reset(client)
                continue
            upstream: socket.socket | None = None
            if mode != "blackhole":
                try:
                    upstream = socket.create_connection((self.target_host, self.target_port),
                                                        timeout=CONNECT_TIMEOUT_S)
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError as exc:
                    # The broker is down: refuse as it would have (a RST).
                    log.debug("netfault: upstream %s:%d: %s", self.target_host,
                              self.target_port, exc)
                    self._count("reset", 1)
                    _reset(client)
                    continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # A peer that stops reading must not hang a pump (and stop()) in sendall.
            client.settimeout(SEND_TIMEOUT_S)
            if upstream is not None:
                upstream.settimeout(SEND_TIMEOUT_S)
            with self._lock:
                self._numbers += 1
                link = _Link(self, client, upstream, self._numbers)
                self._links.add(link)
            link.start()


__all__ = ["MODES", "FaultState", "Mode", "NetFault"]

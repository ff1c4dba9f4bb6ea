"""A scriptable MQTT 5 broker stand-in, for behaviours a healthy Mosquitto never shows.

It speaks just enough MQTT 5 to accept a client (CONNECT/CONNACK), record
its PUBLISH packets, and answer each one as the test says: a PUBACK with
any reason code, or nothing at all (a stuck broker or a black-holed link).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Publish:
    connection: int
    """Which accepted connection (0, 1, ...) carried it."""
    topic: str
    packet_id: int
    payload: bytes
    dup: bool


# Return a PUBACK reason code for a publish, or None to never answer it.
Policy = Callable[[Publish], int | None]


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_varint(conn: socket.socket) -> int:
    value, shift = 0, 0
    while True:
        b = _read_exact(conn, 1)[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class FakeBroker:
    """Accepts MQTT 5 clients on a free loopback port; one thread per connection."""

    def __init__(self, policy: Policy, *, receive_maximum: int | None = None,
                 answer_pings: bool = True) -> None:
        self.policy = policy
        self.receive_maximum = receive_maximum
        self.answer_pings = answer_pings
        self.publishes: list[Publish] = []
        self.connections = 0
        self.cond = threading.Condition()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._accept = threading.Thread(target=self._accept_loop, name="fakebroker")
        self._accept.start()

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._accept.join()
        with self.cond:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join()

    def __enter__(self) -> FakeBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_for(self, predicate: Callable[[FakeBroker], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self.cond:
                index = self.connections
                self.connections += 1
                self._conns.append(conn)
                self.cond.notify_all()
            t = threading.Thread(target=self._serve, args=(conn, index), name="fakebroker-conn")
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        try:
            with conn:
                self._session(conn, index)
        except (ConnectionError, OSError):
            pass
        finally:
            with self.cond:
                self._conns.remove(conn)
                self.cond.notify_all()

    def _session(self, conn: socket.socket, index: int) -> None:
        while True:
            header = _read_exact(conn, 1)[0]
            body = _read_exact(conn, _read_varint(conn))
            ptype = header >> 4
            if ptype == 1:  # CONNECT
                props = b""
                if self.receive_maximum is not None:
                    props = b"\x21" + struct.pack(">H", self.receive_maximum)
                payload = b"\x00\x00" + _varint(len(props)) + props
                conn.sendall(b"\x20" + _varint(len(payload)) + payload)
            elif ptype == 3:  # PUBLISH, QoS 1 expected
                qos = (header >> 1) & 3
                tlen = struct.unpack(">H", body[:2])[0]
                topic = body[2:2 + tlen].decode()
                pos = 2 + tlen
                pid = 0
                if qos:
                    pid = struct.unpack(">H", body[pos:pos + 2])[0]
                    pos += 2
                plen = 0
                shift = 0
                while True:  # properties length (varint) inside the body
                    b = body[pos]
                    pos += 1
                    plen |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                pub = Publish(index, topic, pid, bytes(body[pos + plen:]), bool(header & 0x08))
                with self.cond:
                    self.publishes.append(pub)
                    self.cond.notify_all()
                if qos:
                    rc = self.policy(pub)
                    if rc is not None:
                        conn.sendall(b"\x40\x03" + struct.pack(">HB", pid, rc))
            elif ptype == 12:  # PINGREQ
                if self.answer_pings:
                    conn.sendall(b"\xd0\x00")
            elif ptype == 14:  # DISCONNECT
                return

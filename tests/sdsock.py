"""A test stand-in for systemd's side of sd_notify: a real AF_UNIX datagram socket.

Bind it, give its `address` as NOTIFY_SOCKET to the service (in-process or
a real `alarmgw run`), and read what the service tells systemd.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

Message = dict[str, str]


def parse(data: bytes) -> Message:
    msg: Message = {}
    for line in data.decode("utf-8").split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            msg[key] = value
    return msg


class NotifySocket:
    """Receives sd_notify datagrams on a filesystem path or an abstract name."""

    def __init__(self, path: Path | None = None) -> None:
        """`path`: a socket file to bind; None binds a fresh abstract name ('@...')."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"alarmgw-test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            self.sock.bind(b"\0" + name.encode())
            self.address = "@" + name
        else:
            self.sock.bind(str(path))
            self.address = str(path)
        self.received: list[Message] = []

    def recv(self, timeout: float) -> Message | None:
        """The next message, waiting up to `timeout` seconds; None if none came."""
        self.sock.settimeout(max(timeout, 1e-6))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        msg = parse(data)
        self.received.append(msg)
        return msg

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float) -> Message | None:
        """Read messages until one satisfies `predicate`; None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            msg = self.recv(left)
            if msg is not None and predicate(msg):
                return msg

    def last_status(self) -> str | None:
        """The last STATUS= text received so far."""
        for msg in reversed(self.received):
            if "STATUS" in msg:
                return msg["STATUS"]
        return None

    def wait_for_status(self, predicate: Callable[[str], bool], timeout: float) -> str | None:
        """The current STATUS= text once it satisfies `predicate` (it may already); None
        after `timeout` seconds."""
        last = self.last_status()
        if last is not None and predicate(last):
            return last
        msg = self.wait_for(lambda m: "STATUS" in m and predicate(m["STATUS"]), timeout)
        return None if msg is None else msg["STATUS"]

    def drain(self) -> list[Message]:
        """Every message already waiting, without blocking."""
        out: list[Message] = []
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    break
                msg = parse(data)
                self.received.append(msg)
                out.append(msg)
        finally:
            self.sock.setblocking(True)
        return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

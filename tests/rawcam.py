"""A loopback 'camera' that answers with exactly the bytes a test gives it, however broken.

hw_sim's SimCamera is a well-behaved HTTP server that misbehaves in named ways; this one
speaks no HTTP at all. Each accepted connection reads the request (up to its blank line)
and writes one `Answer`: its parts, one send each, then it ends the way the answer says:

    close    FIN after the last part
    reset    RST after the last part (SO_LINGER 0), as a camera that crashes
    stall    says nothing more and keeps the connection open until the client goes
    trickle  then sends `tail` one byte at a time, 20 ms apart, until the client goes
    flood    then sends `tail` again and again at full speed until the client goes

Connection N gets `answers[N]` (the last one again once they run out), so a test can script
a 401 challenge and then the picture. With `tls` it speaks HTTPS. Every connection ends when
the client hangs up or `stop()` is called; `stop()` joins every thread and closes every
socket.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.drivers.cameras import Camera, Picture

End = Literal["close", "reset", "stall", "trickle", "flood"]
ENDS: tuple[End, ...] = ("close", "reset", "stall", "trickle", "flood")

#: The longest request head read before answering anyway, in bytes.
_REQUEST_MAX = 64 * 1024
#: Pause between the bytes of a trickle, in seconds (a camera this slow is still alive).
TRICKLE_GAP_S = 0.02


@dataclass(frozen=True)
class Answer:
    parts: tuple[bytes, ...]
    end: End = "close"
    tail: bytes = b""
    """What a `trickle` or `flood` sends after the parts (never empty for those)."""

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep them readable
        shown = [p if len(p) <= 200 else p[:200] + b"...(%d bytes)" % len(p)
                 for p in self.parts]
        return f"Answer(parts={shown!r}, end={self.end!r}, tail={self.tail[:60]!r})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # hypothesis's printer
        p.text(repr(self))


@dataclass
class RawCamera:
    """Serves `answers` on 127.0.0.1, one per connection. Use as a context manager."""

    answers: list[Answer]
    requests: list[bytes] = field(default_factory=list)
    """The request heads received, in order."""
    sent: int = 0
    """Bytes written to clients in total."""
    tls: ssl.SSLContext | None = None
    """Speak TLS with this server context (an HTTPS camera)."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept_loop, name="rawcam-accept")

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/snapshot.jpg"

    def __enter__(self) -> RawCamera:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._accepter.is_alive():
            self._accepter.join()
        for t in self._threads:
            t.join()

    # -- serving ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        n = 0
        while not self._stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            answer = self.answers[min(n, len(self.answers) - 1)]
            n += 1
            with self._lock:
                self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn, answer),
                                 name=f"rawcam-conn-{n}")
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, answer: Answer) -> None:
        try:
            conn.settimeout(10.0)  # a client that neither sends nor goes: give up
            if self.tls is not None:
                with self._lock:
                    self._conns.discard(conn)
                conn = self.tls.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._conns.add(conn)
            self._read_request(conn)
            for part in answer.parts:
                self._send(conn, part)
            if answer.end in ("trickle", "flood") and not answer.tail:
                self._wait_for_hangup(conn)  # nothing to repeat: a stall
            elif answer.end == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif answer.end == "stall":
                self._wait_for_hangup(conn)
            elif answer.end == "trickle":
                while not self._stopping.is_set():
                    for i in range(len(answer.tail)):
                        self._send(conn, answer.tail[i:i + 1])
                        if self._stopping.wait(TRICKLE_GAP_S):
                            break
            elif answer.end == "flood":
                while not self._stopping.is_set():
                    self._send(conn, answer.tail)
            else:
                conn.shutdown(socket.SHUT_WR)
                self._wait_for_hangup(conn)
        except OSError:
            pass  # the client hung up (its timeout, max_bytes) or stop()
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent += len(data)

    def _read_request(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < _REQUEST_MAX:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
        with self._lock:
            self.requests.append(head)

    def _wait_for_hangup(self, conn: socket.socket) -> None:
        """Hold the connection until the client closes it (or stop() shuts it down)."""
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if not conn.recv(4096):
                return


def capture_within(cam: Camera, server: RawCamera, grace: float = 2.0) -> Picture | BaseException:
    """cam.capture() in a thread: its picture or what it raised. Asserts that it returned
    within the camera's timeout_s plus `grace` seconds (a hang, not a speed); on a hang it
    stops the server so that the thread ends before the assertion fails."""
    out: list[Picture | BaseException] = []

    def run() -> None:
        try:
            out.append(cam.capture())
        except BaseException as exc:  # whatever escapes is the finding
            out.append(exc)

    t = threading.Thread(target=run, name="capture-within")
    started = time.monotonic()
    t.start()
    t.join(cam.settings.timeout_s + grace)
    hung = t.is_alive()
    if hung:
        server.stop()
        cam.close()
        t.join()
    elapsed = time.monotonic() - started
    assert not hung, (f"capture() ran {elapsed:.1f} s with timeout_s {cam.settings.timeout_s}"
                      f" and only ended when the camera stopped: {out}")
    return out[0]

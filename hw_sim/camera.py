"""Simulated IP cameras: HTTP snapshot servers on loopback, with digest auth, serving real JPEGs.

A `SimCamera` answers `GET {path}` the way an IP camera's snapshot URL does:
it asks for Digest auth (or Basic, or none), then sends a real JPEG drawn
with Pillow (the camera's name, the time and a frame number on a coloured
frame). Tests and the simulator can make it misbehave as real cameras do:

    ok         a picture (after `latency` seconds)
    401        refuses every login, as with a wrong password
    500        an HTTP 500 error
    timeout    reads the request and never answers
    truncated  a JPEG cut in half (the HTTP length is honest: the encoder was cut)
    cut        announces a whole JPEG, sends half and closes the connection
    html       a login page (text/html) instead of a picture
    endless    image/jpeg without a length, streaming bytes until the client hangs up
    down       nothing listens: connections are refused

It listens on 127.0.0.1 only, on a free port unless given one, and keeps
that port through `down` and back. `stop()` ends every request in flight.

    python -m hw_sim.camera --name gate-cam [--port 8080] [--mode ok] [--latency 0.1]

With `--control`, it reads commands from standard input, one a line (`mode MODE`,
`latency SECONDS`), answers each with one line (`ok mode=... latency=...` or
`error ...`), and stops at end of input: a camera another program drives from
outside the process under test, as benchmarks do.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Literal, cast
from urllib.request import parse_http_list, parse_keqv_list

from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

Mode = Literal["ok", "401", "500", "timeout", "truncated", "cut", "html", "endless", "down"]
MODES: tuple[Mode, ...] = ("ok", "401", "500", "timeout", "truncated", "cut", "html", "endless",
                           "down")
Auth = Literal["digest", "basic", "none"]

#: Hikvision's ISAPI snapshot path, which the simulator answers by default.
DEFAULT_PATH = "/ISAPI/Streaming/channels/101/picture"

_LOGIN_PAGE = (b"<!DOCTYPE html><html><head><title>Web Login</title></head><body>"
               b"<form action=\"/doc/page/login.asp\"><input name=\"username\">"
               b"<input type=\"password\" name=\"password\"></form></body></html>")


def render_jpeg(name: str, width: int, height: int, frame: int, *, quality: int = 80) -> bytes:
    """A real JPEG: `name`, the local time and `frame` drawn on a frame of `name`'s colour."""
    seed = int(hashlib.md5(name.encode()).hexdigest()[:6], 16)
    base = ((seed >> 16) & 0x7F, (seed >> 8) & 0x7F, seed & 0x7F)
    img = Image.new("RGB", (width, height), base)
    draw = ImageDraw.Draw(img)
    step = max(1, height // 8)
    for i, y in enumerate(range(0, height, step)):
        shade = tuple(min(255, c + 12 * i) for c in base)
        draw.rectangle((0, y, width, y + step), fill=cast(tuple[int, int, int], shade))
    size = max(10, height // 10)
    font = ImageFont.load_default(size=size)
    now = time.time()
    millis = int(now * 1000) % 1000
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{millis:03d}"
    draw.text((size // 2, size // 2), name, fill=(255, 255, 255), font=font)
    draw.text((size // 2, size * 2), stamp, fill=(255, 255, 0), font=font)
    draw.text((size // 2, size * 7 // 2), f"frame {frame}", fill=(200, 200, 200), font=font)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


class _Server(socketserver.ThreadingMixIn, HTTPServer):
    # Non-daemon request threads, joined by server_close(): stop() leaves nothing running.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], camera: SimCamera) -> None:
        self.camera = camera
        super().__init__(address, _Handler)


class SimCamera:
    """One simulated IP camera. Thread-safe; `wait_for` blocks on its state."""

    def __init__(self, name: str, *, username: str | None = "admin",
                 password: str | None = "sim-password", auth: Auth = "digest",
                 width: int = 640, height: int = 360, host: str = "127.0.0.1", port: int = 0,
                 path: str = DEFAULT_PATH, mode: Mode = "ok", latency_s: float = 0.0) -> None:
        """`auth`: what login it asks for ("none" when no username); `width`/`height`: the
        picture size, in pixels; `port`: 0 for a free one; `latency_s`: delay before each
        picture, in seconds."""
        self.name = name
        self.username = username
        self.password = password
        self.auth: Auth = auth if username is not None else "none"
        self.width = width
        self.height = height
        self.host = host
        self.port = port
        self.path = path
        self.realm = f"{name} (alarmgw simulator)"
        self._cond = threading.Condition()
        self._mode: Mode = mode
        self._latency = latency_s
        self._stopping = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._nonces: set[str] = set()
        self._conns: set[socket.socket] = set()
        self.frames = 0
        self.requests = 0
        """Requests received (authorised or not)."""
        self.unauthorized = 0
        """Requests answered 401."""
        self.pictures = 0
        """Whole pictures answered (counted as the answer starts)."""
        self.in_flight = 0
        """Requests being answered now."""
        self.endless_bytes = 0
        """Bytes sent by `endless` answers in total."""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> SimCamera:
        if self._mode != "down":
            self._listen()
        elif self.port == 0:
            raise ValueError("a camera started 'down' needs a fixed port")
        return self

    def _listen(self) -> None:
        server = _Server((self.host, self.port), self)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"simcam-{self.name}", daemon=True)
        self._thread.start()

    def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()  # joins the request threads
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            conns = list(self._conns)
        for conn in conns:  # unblocks answers stuck writing to a client that stopped reading
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._unlisten()

    def __enter__(self) -> SimCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    # -- control ----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def latency_s(self) -> float:
        return self._latency

    def set_mode(self, mode: str) -> None:
        """Switch to one of `MODES`; raises ValueError for anything else."""
        if mode not in MODES:
            raise ValueError(f"unknown camera mode {mode!r} (modes: {', '.join(MODES)})")
        with self._cond:
            was = self._mode
            self._mode = mode
            self._cond.notify_all()  # releases requests held by 'timeout'
        if mode == "down" and was != "down":
            self._unlisten()
        elif mode != "down" and was == "down" and not self._stopping:
            self._listen()

    def set_latency(self, seconds: float) -> None:
        """Delay before each picture, in seconds."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._cond:
            self._latency = seconds

    def handles(self, req: dict[str, Any]) -> bool:
        """`alarmgw sim camera CAMERA ...` names the camera (gateway.drivers.backends)."""
        return req.get("camera") == self.name

    def control(self, req: dict[str, Any]) -> dict[str, Any]:
        """Set the camera's mode and latency (either may be absent); report them."""
        if req.get("mode") is not None:
            self.set_mode(str(req["mode"]))
        if req.get("latency_s") is not None:
            self.set_latency(float(req["latency_s"]))
        return {"camera": self.name, "mode": self.mode, "latency_s": self.latency_s,
                "url": self.url, "requests": self.requests}

    def forget_logins(self) -> None:
        """Forget every nonce handed out, as a camera does when it reboots."""
        with self._cond:
            self._nonces.clear()

    def wait_for(self, predicate: Callable[[SimCamera], bool], timeout: float) -> bool:
        """Block until `predicate(self)` holds (checked on every request event) or timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def _count(self, **deltas: int) -> None:
        with self._cond:
            for name, d in deltas.items():
                setattr(self, name, getattr(self, name) + d)
            self._cond.notify_all()

    def _hold(self, seconds: float | None) -> bool:
        """Wait `seconds` (None: while in 'timeout' mode); False when the camera stops."""
        with self._cond:
            if seconds is None:
                self._cond.wait_for(lambda: self._stopping or self._mode != "timeout")
            elif seconds > 0:
                self._cond.wait_for(lambda: self._stopping, seconds)
            return not self._stopping

    # -- auth -------------------------------------------------------------------------------

    def challenge(self) -> str:
        if self.auth == "basic":
            return f'Basic realm="{self.realm}"'
        nonce = os.urandom(16).hex()
        with self._cond:
            self._nonces.add(nonce)
        return (f'Digest realm="{self.realm}", qop="auth", nonce="{nonce}",'
                f' opaque="{hashlib.md5(self.name.encode()).hexdigest()}", algorithm=MD5')

    def authorized(self, header: str | None, method: str, uri: str) -> bool:
        if self.auth == "none":
            return True
        if not header:
            return False
        scheme, _, rest = header.partition(" ")
        if self.auth == "basic":
            import base64

            try:
                user, _, pw = base64.b64decode(rest.strip()).decode().partition(":")
            except ValueError:
                return False
            return scheme.lower() == "basic" and (user, pw) == (self.username, self.password)
        if scheme.lower() != "digest":
            return False
        p = parse_keqv_list(parse_http_list(rest))
        with self._cond:
            known = p.get("nonce") in self._nonces
        if not known or p.get("username") != self.username or p.get("uri") != uri:
            return False

        def md5(s: str) -> str:
            return hashlib.md5(s.encode()).hexdigest()

        ha1 = md5(f"{self.username}:{self.realm}:{self.password}")
        ha2 = md5(f"{method}:{uri}")
        expected = md5(f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:auth:{ha2}")
        return p.get("response") == expected

    def picture(self) -> bytes:
        with self._cond:
            self.frames += 1
            frame = self.frames
        return render_jpeg(self.name, self.width, self.height, frame)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 10.0  # a socket operation that blocks this long ends the request
    server_version = "SimCamera/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("simcam %s: %s", self.server.camera.name, format % args)

    def do_GET(self) -> None:
        cam = self.server.camera
        with cam._cond:
            cam._conns.add(self.connection)
        cam._count(requests=1, in_flight=1)
        try:
            self._answer(cam)
        except OSError:
            pass  # the client gave up (its timeout, or max_bytes), or the camera stopped
        finally:
            self.close_connection = True
            with cam._cond:
                cam._conns.discard(self.connection)
            cam._count(in_flight=-1)

    def _send(self, status: int, ctype: str, body: bytes, *, length: int | None = None,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, cam: SimCamera) -> None:
        mode = cam.mode
        if mode == "timeout":
            cam._hold(None)
            return  # never answered: the connection just closes at stop (or mode change)
        if self.path.split("?")[0] != cam.path.split("?")[0]:
            self._send(404, "text/plain", b"not found\n")
            return
        if mode == "401" or not cam.authorized(self.headers.get("Authorization"), "GET",
                                                self.path):
            cam._count(unauthorized=1)
            self._send(401, "text/html", b"<html><body>401 Unauthorized</body></html>",
                       extra={"WWW-Authenticate": cam.challenge()})
            return
        if mode == "500":
            self._send(500, "text/plain", b"Internal Server Error: encoder busy\n")
            return
        if not cam._hold(cam.latency_s):
            return
        if mode == "html":
            self._send(200, "text/html; charset=utf-8", _LOGIN_PAGE)
            return
        if mode == "endless":
            self._endless(cam)
            return
        jpeg = cam.picture()
        if mode == "truncated":
            self._send(200, "image/jpeg", jpeg[: len(jpeg) // 2])
        elif mode == "cut":
            self._send(200, "image/jpeg", jpeg[: len(jpeg) // 2], length=len(jpeg))
        else:
            cam._count(pictures=1)
            self._send(200, "image/jpeg", jpeg)

    def _endless(self, cam: SimCamera) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\xff\xd8\xff\xe0" + b"\x5a" * (64 * 1024 - 4)
        filler = b"\x5a" * (64 * 1024)
        self.wfile.write(chunk)
        cam._count(endless_bytes=len(chunk))
        while not cam._stopping:
            self.wfile.write(filler)
            cam._count(endless_bytes=len(filler))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hw_sim.camera", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="sim-cam")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--username", default="admin")
    ap.add_argument("--password", default="sim-password")
    ap.add_argument("--auth", choices=("digest", "basic", "none"), default="digest")
    ap.add_argument("--mode", choices=MODES, default="ok")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each picture")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--control", action="store_true",
                    help="take `mode MODE` and `latency SECONDS` lines on standard input")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    cam = SimCamera(args.name, username=args.username, password=args.password,
                    auth=args.auth, port=args.port, mode=args.mode, latency_s=args.latency,
                    width=args.width, height=args.height)
    cam.start()
    print(f"simulated camera {args.name}: {cam.url} (user {args.username}, {args.auth} auth)",
          flush=True)
    if args.control:
        for line in sys.stdin:
            cmd, _, value = line.strip().partition(" ")
            try:
                if cmd == "mode":
                    cam.set_mode(value)
                elif cmd == "latency":
                    cam.set_latency(float(value))
                else:
                    raise ValueError(f"unknown command {cmd!r} (mode, latency)")
            except ValueError as exc:
                print(f"error {exc}", flush=True)
                continue
            print(f"ok mode={cam.mode} latency={cam.latency_s:g}", flush=True)
    else:
        done.wait()
    cam.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

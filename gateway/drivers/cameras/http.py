"""IP cameras through their HTTP snapshot URL: digest or basic auth, bounded in time and bytes.

`HttpCamera` speaks HTTP/1.1 to a snapshot URL (Hikvision ISAPI, Dahua CGI,
an ONVIF snapshot URI) with digest or basic auth as the camera asks. Basic
credentials are sent only to a camera that asked for them. A digest
challenge is remembered and reused with a counted nonce, so a capture costs
one round trip, not two.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import math
import os
import socket
import ssl
import threading
import time
from base64 import b64encode
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from urllib.request import parse_http_list

from gateway import __version__
from gateway.clock import mono_ns
from gateway.drivers.cameras.base import Camera, Picture, check_jpeg, describe_bytes
from gateway.errors import (
    CameraAuthError,
    CameraError,
    CameraImageError,
    CameraResponseError,
    CameraTimeoutError,
    CameraUnreachableError,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from gateway.config import CameraSettings

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
#: Bytes of a non-picture answer read to show the technician what it was.
_PEEK = 512


@dataclass
class _Challenge:
    scheme: str
    """'digest' or 'basic'."""
    params: dict[str, str]
    nc: int = 0


def _h(algorithm: str, text: str) -> str:
    name = "sha256" if algorithm.upper().startswith("SHA-256") else "md5"
    return hashlib.new(name, text.encode("utf-8")).hexdigest()


def digest_authorization(username: str, password: str, *, method: str, uri: str,
                         params: dict[str, str], nc: int, cnonce: str) -> str:
    """The Authorization header answering a Digest challenge (RFC 7616, qop=auth or none)."""
    realm = params.get("realm", "")
    nonce = params.get("nonce", "")
    algorithm = params.get("algorithm", "MD5")
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
              f"algorithm={algorithm}"]
    if "auth" in qops:
        ncs = f"{nc:08x}"
        response = _h(algorithm, f"{ha1}:{nonce}:{ncs}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', "qop=auth", f"nc={ncs}", f'cnonce="{cnonce}"']
    else:
        fields.append(f'response="{_h(algorithm, f"{ha1}:{nonce}:{ha2}")}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


def _challenge_params(text: str) -> dict[str, str]:
    """`realm="x", nonce=y, ...` -> {"realm": "x", "nonce": "y"}; a malformed item (no `=`,
    no name) is skipped, so one bad field does not lose the others. (urllib's
    parse_keqv_list raises IndexError on an empty value such as `realm=`.)"""
    params: dict[str, str] = {}
    for item in parse_http_list(text):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[key] = value
    return params


def parse_challenges(values: list[str]) -> list[_Challenge]:
    """WWW-Authenticate header values -> challenges (one per header; Digest and Basic).

    Whatever the camera sent, this returns (a camera's header is untrusted input)."""
    found: list[_Challenge] = []
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        scheme = scheme.lower()
        if scheme not in ("digest", "basic"):
            continue
        found.append(_Challenge(scheme, _challenge_params(rest)))
    return found


class HttpCamera(Camera):
    """An IP camera's HTTP(S) snapshot URL."""

    def __init__(self, settings: CameraSettings, *, url: str | None = None) -> None:
        """`url`: use this snapshot URL instead of the configured one (the simulator's)."""
        super().__init__(settings)
        self.url = url or settings.url or ""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"camera {self.id}: {self.url!r} is not an http(s) URL")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._ssl = ssl.create_default_context() if self._tls else None
        if self._ssl is not None:
            self._ssl.sslsocket_class = _DeadlineSSLSocket
        self._lock = threading.Lock()
        self._challenge: _Challenge | None = None
        self._socks: set[socket.socket] = set()
        self._closed = False
        self._warned_basic = False
        self.requests = 0
        """HTTP requests made, for status and tests."""

    @property
    def where(self) -> str:
        return self.url

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- one capture ---------------------------------------------------------------------

    def capture(self) -> Picture:
        s = self.settings
        t0 = time.monotonic()
        taken_mono, taken_wall = mono_ns(), time.time_ns()
        deadline = t0 + s.timeout_s
        authorization, fresh = self._authorization(), False
        for _ in range(3):
            status, reason, headers, body = self._exchange(deadline, authorization)
            if status == 401:
                challenges = parse_challenges(headers.get_all("WWW-Authenticate") or [])
                authorization = self._answer_challenge(challenges, authorization, fresh)
                fresh = True
                continue
            if status == 200:
                assert body is not None
                width, height = check_jpeg(body, self.id, where=self.url)
                return Picture(bytes(body), width, height, taken_mono, taken_wall,
                               time.monotonic() - t0)
            raise self._status_error(status, reason, headers)
        raise CameraAuthError(self.id, f"{self.url} keeps asking for a login (HTTP 401);"
                              " check username and password_file")

    def _authorization(self) -> str | None:
        """A header for the remembered challenge, so the capture needs one round trip."""
        s = self.settings
        if s.username is None or s.password is None:
            return None
        with self._lock:
            chal = self._challenge
            if chal is None:
                return None
            if chal.scheme == "basic":
                return _basic(s.username, s.password)
            chal.nc += 1
            nc = chal.nc
            params = dict(chal.params)
        return digest_authorization(s.username, s.password, method="GET", uri=self._target,
                                    params=params, nc=nc, cnonce=os.urandom(8).hex())

    def _answer_challenge(self, challenges: list[_Challenge], sent: str | None,
                          fresh: bool) -> str:
        s = self.settings
        offered = " and ".join(c.scheme.capitalize() for c in challenges) or "no usable scheme"
        if s.username is None or s.password is None:
            raise CameraAuthError(self.id, f"{self.url} asks for a login (HTTP 401, offers"
                                  f" {offered}): set username and password_file for camera"
                                  f" {self.id}", reason="unauthorized")
        chal = next((c for c in challenges if c.scheme == "digest"), None) or \
            next((c for c in challenges if c.scheme == "basic"), None)
        if chal is None:
            raise CameraAuthError(self.id, f"{self.url} refused the request (HTTP 401) with"
                                  f" {offered}; alarmgw speaks Digest and Basic")
        stale = chal.params.get("stale", "").lower() == "true"
        if sent is not None and fresh and not stale:
            with self._lock:
                self._challenge = None
            raise CameraAuthError(self.id, f"{self.url} refused user {s.username!r} (HTTP 401):"
                                  " check username and password_file (many cameras lock the"
                                  " account after a few wrong passwords)")
        if chal.scheme == "digest":
            qops = [q.strip() for q in chal.params.get("qop", "auth").split(",")]
            if "auth" not in qops and chal.params.get("qop"):
                raise CameraAuthError(self.id, f"{self.url} offers Digest only with qop"
                                      f" {chal.params.get('qop')!r}; alarmgw speaks qop=auth")
            with self._lock:
                self._challenge = _Challenge("digest", chal.params, nc=1)
            return digest_authorization(s.username, s.password, method="GET",
                                        uri=self._target, params=chal.params, nc=1,
                                        cnonce=os.urandom(8).hex())
        if not self._tls and not self._warned_basic:
            self._warned_basic = True
            log.warning("camera %s asks for Basic auth over plain HTTP: its password crosses the"
                        " network readable; prefer Digest in the camera's settings", self.id)
        with self._lock:
            self._challenge = _Challenge("basic", {})
        return _basic(s.username, s.password)

    def _status_error(self, status: int, reason: str, headers: http.client.HTTPMessage
                      ) -> CameraError:
        if status == 403:
            return CameraAuthError(self.id, f"{self.url} answered HTTP 403 Forbidden: the user"
                                   f" {self.settings.username!r} may not take snapshots; grant"
                                   " it in the camera's user settings")
        if 300 <= status < 400:
            where = headers.get("Location", "?")
            return CameraResponseError(self.id, f"{self.url} redirects (HTTP {status}) to"
                                       f" {where}: configure the final snapshot URL")
        if status == 404:
            return CameraResponseError(self.id, f"{self.url} answered HTTP 404 Not Found: wrong"
                                       " snapshot path or preset for this camera model")
        return CameraResponseError(self.id, f"{self.url} answered HTTP {status} {reason}: the"
                                   " camera could not make a picture; check it in its web page")

    # -- one HTTP request ----------------------------------------------------------------

    def _remaining(self, deadline: float, got: int | None = None) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timeout(got)
        return left

    def _timeout(self, got: int | None) -> CameraTimeoutError:
        t = self.settings.timeout_s
        if got is None:
            return CameraTimeoutError(self.id, f"{self.url} did not answer within {t:g} s; check"
                                      " the camera's power and network, or raise timeout_s")
        return CameraTimeoutError(self.id, f"{self.url} sent only {got} bytes of the picture"
                                  f" within {t:g} s; the camera or the network is too slow")

    def _exchange(self, deadline: float, authorization: str | None
                  ) -> tuple[int, str, http.client.HTTPMessage, bytearray | None]:
        """One GET: (status, reason, headers, body of a 200, else None). Bounded in time
        and size; every failure becomes a CameraError."""
        if self._closed:
            raise CameraError(self.id, "capture aborted: the gateway is stopping",
                              reason="stopped")
        conn: http.client.HTTPConnection
        timeout = self._remaining(deadline)
        if self._tls:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        got: int | None = None
        sock: socket.socket | None = None
        resp: http.client.HTTPResponse | None = None
        try:
            try:
                conn.connect()
            except ssl.SSLError as exc:
                raise CameraUnreachableError(self.id, f"TLS with {self.url} failed"
                                             f" ({exc.reason or exc}); the camera's certificate"
                                             " must be valid for its host name") from exc
            sock = conn.sock
            assert sock is not None
            if not isinstance(sock, _DeadlineSSLSocket):
                sock = _DeadlineSocket(fileno=sock.detach())
                sock.settimeout(self._remaining(deadline))
                conn.sock = sock
            sock.deadline = deadline
            with self._lock:
                if self._closed:
                    raise CameraError(self.id, "capture aborted: the gateway is stopping",
                                      reason="stopped")
                self._socks.add(sock)
                self.requests += 1
            conn.putrequest("GET", self._target, skip_accept_encoding=True)
            conn.putheader("Accept", "image/jpeg")
            conn.putheader("User-Agent", f"alarmgw/{__version__}")
            conn.putheader("Connection", "close")
            if authorization is not None:
                conn.putheader("Authorization", authorization)
            conn.endheaders()
            sock.settimeout(self._remaining(deadline))
            resp = conn.getresponse()
            got = 0
            if resp.status != 200:
                self._discard(resp, sock, deadline)
                return resp.status, resp.reason, resp.headers, None
            ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if ctype.startswith("text/") or ctype.endswith(("/json", "/xml", "+xml")):
                sock.settimeout(self._remaining(deadline, 0))
                head = resp.read1(_PEEK)
                raise CameraImageError(self.id, f"not a JPEG from {self.url}: the camera answered"
                                       f" {ctype}, {describe_bytes(head)}; check the snapshot"
                                       " URL or preset", reason="not_jpeg")
            body = self._read_body(resp, sock, deadline)
            return resp.status, resp.reason, resp.headers, body
        except CameraError:
            raise
        except TimeoutError as exc:
            if self._closed:
                raise CameraError(self.id, "capture aborted: the gateway is stopping",
                                  reason="stopped") from exc
            raise self._timeout(got) from exc
        except ConnectionRefusedError as exc:
            raise CameraUnreachableError(self.id, f"{self._host}:{self._port} refused the"
                                         " connection: is the camera on, and is this its HTTP"
                                         " port?", reason="refused") from exc
        except socket.gaierror as exc:
            raise CameraUnreachableError(self.id, f"cannot resolve {self._host!r}"
                                         f" ({exc.strerror}); check the camera's host or"
                                         " url") from exc
        except (http.client.HTTPException, OSError) as exc:
            if self._closed:
                raise CameraError(self.id, "capture aborted: the gateway is stopping",
                                  reason="stopped") from exc
            if got is None and isinstance(exc, http.client.HTTPException):
                raise CameraResponseError(self.id, f"{self._host}:{self._port} gave no HTTP"
                                          f" answer ({exc!r}): is this the camera's HTTP"
                                          " port?") from exc
            if got is None:
                raise CameraUnreachableError(self.id, f"cannot reach {self._host}:{self._port}"
                                             f" ({exc}); check the camera's network") from exc
            raise CameraImageError(self.id, f"{self.url} broke off the answer ({exc!r}):"
                                   " truncated", reason="truncated") from exc
        finally:
            if sock is not None:
                with self._lock:
                    self._socks.discard(sock)
            # The response holds the socket's file object: close it too, or the socket
            # stays open (a camera streaming an endless body would block on it, not see
            # the connection reset).
            if resp is not None:
                resp.close()
            conn.close()

    def _read_body(self, resp: http.client.HTTPResponse, sock: socket.socket,
                   deadline: float) -> bytearray:
        limit = self.settings.max_bytes
        declared = resp.length
        if declared is not None and declared > limit:
            raise CameraImageError(self.id, f"{self.url} announces a picture of {declared} bytes,"
                                   f" more than max_bytes ({limit}); nothing was read: raise"
                                   " max_bytes or lower the camera's snapshot resolution",
                                   reason="too_large")
        body = bytearray()
        while True:
            sock.settimeout(self._remaining(deadline, len(body)))
            try:
                chunk = resp.read1(_CHUNK)
            except TimeoutError:
                raise self._timeout(len(body)) from None
            except http.client.IncompleteRead as exc:
                raise CameraImageError(self.id, f"{self.url} closed the connection after"
                                       f" {len(body) + len(exc.partial)} bytes, in the middle"
                                       " of the picture: truncated", reason="truncated"
                                       ) from exc
            if not chunk:
                break
            if len(body) + len(chunk) > limit:
                raise CameraImageError(self.id, f"{self.url} sent more than max_bytes ({limit})"
                                       " bytes; cut there and refused (an endless or oversized"
                                       " body)", reason="too_large")
            body += chunk
        if self._closed:
            raise CameraError(self.id, "capture aborted: the gateway is stopping",
                              reason="stopped")
        if declared is not None and len(body) < declared:
            raise CameraImageError(self.id, f"{self.url} closed the connection after {len(body)}"
                                   f" of {declared} bytes: truncated", reason="truncated")
        return body

    def _discard(self, resp: http.client.HTTPResponse, sock: socket.socket,
                 deadline: float) -> None:
        """Read (a bounded part of) an error body, so the connection closes cleanly."""
        try:
            sock.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
            resp.read1(_PEEK)
        except (OSError, http.client.HTTPException):
            pass


class _DeadlineSocket(socket.socket):
    """A socket whose every read ends by one deadline (`time.monotonic()`), not by a
    timeout per read.

    http.client reads the status line, the headers, chunk sizes and chunk trailers in
    many small reads, each of which waits up to the socket's timeout afresh: a camera
    that sends a byte every now and then, or headers, trailers or `100 Continue` lines
    without end, would hold a capture for as long as it liked. Every read here first
    lowers the timeout to what is left of the capture's time, and raises TimeoutError
    once nothing is."""

    deadline = math.inf

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        _to_deadline(self)
        return super().recv_into(buffer, nbytes, flags)


class _DeadlineSSLSocket(ssl.SSLSocket):
    """`_DeadlineSocket` for HTTPS cameras (the SSL context creates it)."""

    deadline = math.inf

    def recv_into(self, buffer: WriteableBuffer, nbytes: int | None = None,
                  flags: int = 0) -> int:
        _to_deadline(self)
        return super().recv_into(buffer, nbytes, flags)


def _to_deadline(sock: _DeadlineSocket | _DeadlineSSLSocket) -> None:
    left = sock.deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    timeout = sock.gettimeout()
    if timeout is None or timeout > left:
        sock.settimeout(left)


def _basic(username: str, password: str) -> str:
    return "Basic " + b64encode(f"{username}:{password}".encode()).decode("ascii")



"""Cameras that only stream (RTSP): one frame through ffmpeg, in its own process.

Optional: used only when a camera says `driver = "rtsp"`, and only works
where ffmpeg is installed (`apt install ffmpeg`). Each capture runs
`ffmpeg -i URL -frames:v 1` as a child process that writes one JPEG to a
pipe; the gateway reads it in chunks up to `max_bytes` and kills the child
when the camera's `timeout_s` runs out, so a stuck stream costs that long
and no more. Opening a stream takes 0.5-2 s (it waits for a key frame):
prefer a camera's HTTP snapshot URL when it has one.

The credentials go into the URL handed to ffmpeg (RTSP has no other way);
any text ffmpeg prints has the password masked before it is logged.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import subprocess
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from gateway.clock import mono_ns
from gateway.drivers.cameras.base import Camera, Picture, check_jpeg
from gateway.errors import (
    CameraAuthError,
    CameraError,
    CameraImageError,
    CameraResponseError,
    CameraTimeoutError,
    CameraUnreachableError,
)

if TYPE_CHECKING:
    from gateway.config import CameraSettings

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_STDERR_KEEP = 4096


def ffmpeg_path() -> str | None:
    """The ffmpeg executable, or None when it is not installed."""
    return shutil.which("ffmpeg")


class RtspCamera(Camera):
    """One frame of a camera's stream, through an ffmpeg child process per capture."""

    def __init__(self, settings: CameraSettings) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._closed = False

    def _url(self) -> str:
        s = self.settings
        url = s.url or ""
        if s.username is None:
            return url
        parts = urlsplit(url)
        userinfo = quote(s.username, safe="") + ":" + quote(s.password or "", safe="")
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))

    def _mask(self, text: str) -> str:
        pw = self.settings.password
        if pw:
            text = text.replace(quote(pw, safe=""), "***").replace(pw, "***")
        return text

    def capture(self) -> Picture:
        s = self.settings
        exe = ffmpeg_path()
        if exe is None:
            raise CameraError(self.id, "ffmpeg is not installed (the rtsp driver needs it):"
                              " apt install ffmpeg", reason="unavailable")
        t0 = time.monotonic()
        taken_mono, taken_wall = mono_ns(), time.time_ns()
        deadline = t0 + s.timeout_s
        cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error"]
        if (s.url or "").startswith("rtsp"):
            cmd += ["-rtsp_transport", "tcp"]
        cmd += ["-i", self._url(), "-frames:v", "1", "-an", "-f", "image2pipe", "-c:v", "mjpeg",
                "-q:v", "3", "pipe:1"]
        with self._lock:
            if self._closed:
                raise CameraError(self.id, "capture aborted: the gateway is stopping",
                                  reason="stopped")
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
            except OSError as exc:
                raise CameraError(self.id, f"cannot run ffmpeg ({exc.strerror})",
                                  reason="unavailable") from exc
            self._procs.add(proc)
        try:
            body, err = self._read(proc, deadline)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()
            proc.stderr.close()
            with self._lock:
                self._procs.discard(proc)
        if self._closed:
            raise CameraError(self.id, "capture aborted: the gateway is stopping",
                              reason="stopped")
        if proc.returncode != 0 or not body:
            raise self._ffmpeg_error(proc.returncode, self._mask(err))
        width, height = check_jpeg(body, self.id, where=self.where)
        return Picture(bytes(body), width, height, taken_mono, taken_wall, time.monotonic() - t0)

    def _read(self, proc: subprocess.Popen[bytes], deadline: float) -> tuple[bytearray, str]:
        assert proc.stdout is not None and proc.stderr is not None
        body = bytearray()
        err = bytearray()
        open_fds = {proc.stdout.fileno(), proc.stderr.fileno()}
        with selectors.DefaultSelector() as sel:
            for fd in open_fds:
                sel.register(fd, selectors.EVENT_READ)
            while open_fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CameraTimeoutError(self.id, f"no frame from {self.where} within"
                                             f" {self.settings.timeout_s:g} s (ffmpeg killed);"
                                             " check the stream URL and the camera's network")
                for key, _ in sel.select(left):
                    fd = int(key.fd)
                    chunk = os.read(fd, _CHUNK)
                    if not chunk:
                        sel.unregister(fd)
                        open_fds.discard(fd)
                    elif fd == proc.stdout.fileno():
                        if len(body) + len(chunk) > self.settings.max_bytes:
                            raise CameraImageError(self.id, f"the frame from {self.where} is"
                                                   " larger than max_bytes"
                                                   f" ({self.settings.max_bytes}); cut there",
                                                   reason="too_large")
                        body += chunk
                    else:
                        err = (err + chunk)[-_STDERR_KEEP:]
        proc.wait(max(0.01, deadline - time.monotonic()))
        return body, err.decode("utf-8", errors="replace").strip()

    def _ffmpeg_error(self, code: int | None, err: str) -> CameraError:
        last = err.splitlines()[-1] if err else f"ffmpeg exited with {code} and said nothing"
        low = err.lower()
        if "401" in low or "unauthorized" in low:
            return CameraAuthError(self.id, f"{self.where} refused the login ({last}): check"
                                   " username and password_file")
        if "connection refused" in low:
            return CameraUnreachableError(self.id, f"{self.where} refused the connection ({last})",
                                          reason="refused")
        if "timed out" in low or "timeout" in low:
            return CameraTimeoutError(self.id, f"{self.where} timed out ({last})")
        if "no route" in low or "resolve" in low or "network is unreachable" in low:
            return CameraUnreachableError(self.id, f"cannot reach {self.where} ({last})")
        return CameraResponseError(self.id, f"ffmpeg got no frame from {self.where} ({last})")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

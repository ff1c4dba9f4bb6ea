"""The Raspberry Pi camera through picamera2: runs only on a Pi.

picamera2 sits on libcamera's Python bindings, which exist only on a
Raspberry Pi (Raspberry Pi OS ships both as the Debian package
`python3-picamera2`; the service's venv must see system packages). Both are
imported when the camera opens, never at module import, so this module
loads anywhere and a gateway without a Pi camera never touches them.

The camera is opened once and kept running in a still configuration at the
configured size: a capture then takes the next frame (a frame period,
tens of milliseconds) instead of paying the 0.5-0.7 s of a mode switch. A
capture that fails or times out closes the camera; the next one reopens it.
Captures are serialised (picamera2 runs one job at a time).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from gateway.clock import mono_ns
from gateway.drivers.cameras.base import Camera, Picture, check_jpeg
from gateway.errors import CameraError, CameraImageError, CameraTimeoutError

if TYPE_CHECKING:
    from gateway.config import CameraSettings

log = logging.getLogger(__name__)

#: JPEG quality of the stills (picamera2's `options["quality"]`, 0-95).
JPEG_QUALITY = 85


def unavailable_reason() -> str | None:
    """None when picamera2 and libcamera import; otherwise why not, for the technician."""
    missing = []
    for name in ("libcamera", "picamera2"):
        try:
            __import__(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
        except Exception as exc:  # their import fails in odd ways off a Pi
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    if not missing:
        return None
    return ("cannot import " + " and ".join(missing) + ": the picamera driver runs on a"
            " Raspberry Pi with `apt install python3-picamera2`, in a venv created with"
            " --system-site-packages")


class PiCamera(Camera):
    """A camera on the Pi's CSI connector, kept running in a still configuration."""

    def __init__(self, settings: CameraSettings) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()
        self._cam: Any | None = None
        self._closed = False
        self.opens = 0
        """How many times the camera was opened (and configured), for status and tests."""

    def _open(self) -> Any:
        reason = unavailable_reason()
        if reason is not None:
            raise CameraError(self.id, reason, reason="unavailable")
        from picamera2 import Picamera2

        s = self.settings
        try:
            cam = Picamera2(s.camera_num)
        except Exception as exc:
            raise CameraError(self.id, f"cannot open Pi camera {s.camera_num} ({exc}); check"
                              " the ribbon cable, `rpicam-hello --list-cameras`, and that no"
                              " other program holds the camera", reason="unavailable"
                              ) from exc
        try:
            config = cam.create_still_configuration(main={"size": (s.width, s.height)},
                                                    buffer_count=2)
            cam.configure(config)
            cam.options["quality"] = JPEG_QUALITY
            cam.start()
        except Exception as exc:
            _quietly_close(cam)
            raise CameraError(self.id, f"cannot start Pi camera {s.camera_num} at"
                              f" {s.width}x{s.height} ({exc}); try a size the sensor offers",
                              reason="unavailable") from exc
        self.opens += 1
        log.info("camera %s: Pi camera %d running at %dx%d", self.id, s.camera_num, s.width,
                 s.height)
        return cam

    def capture(self) -> Picture:
        s = self.settings
        t0 = time.monotonic()
        taken_mono, taken_wall = mono_ns(), time.time_ns()
        if not self._lock.acquire(timeout=s.timeout_s):
            raise CameraTimeoutError(self.id, f"Pi camera busy for {s.timeout_s:g} s (another"
                                     " capture is stuck)")
        try:
            if self._closed:
                raise CameraError(self.id, "capture aborted: the gateway is stopping",
                                  reason="stopped")
            if self._cam is None:
                self._cam = self._open()
            cam = self._cam
            buf = io.BytesIO()
            try:
                job = cam.capture_file(buf, format="jpeg", wait=False)
                cam.wait(job, timeout=max(0.01, s.timeout_s - (time.monotonic() - t0)))
            except TimeoutError as exc:
                self._reset()
                raise CameraTimeoutError(self.id, f"Pi camera gave no frame within"
                                         f" {s.timeout_s:g} s; it is reopened at the next"
                                         " capture") from exc
            except Exception as exc:
                self._reset()
                if self._closed:
                    raise CameraError(self.id, "capture aborted: the gateway is stopping",
                                      reason="stopped") from exc
                raise CameraError(self.id, f"Pi camera capture failed ({exc}); it is reopened"
                                  " at the next capture", reason="unavailable") from exc
        finally:
            self._lock.release()
        data = buf.getvalue()
        if len(data) > s.max_bytes:
            raise CameraImageError(self.id, f"Pi camera JPEG of {len(data)} bytes is larger than"
                                   f" max_bytes ({s.max_bytes}): lower width/height or raise"
                                   " max_bytes", reason="too_large")
        width, height = check_jpeg(data, self.id, where=self.where)
        return Picture(data, width, height, taken_mono, taken_wall, time.monotonic() - t0)

    def _reset(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            _quietly_close(cam)

    def close(self) -> None:
        self._closed = True
        # Closing stops a capture in flight: its wait() then raises at once.
        cam = self._cam
        if cam is not None:
            _quietly_close(cam)


def _quietly_close(cam: Any) -> None:
    try:
        cam.close()
    except Exception:
        log.debug("closing the Pi camera failed", exc_info=True)

"""Cameras: the one small interface every camera driver implements, and the JPEG check.

A camera driver turns "give me a picture" into a complete JPEG or a
`CameraError` that says exactly why not. Every implementation of `Camera`
must:

- return from `capture()` within the camera's `timeout_s` (plus a little),
  whatever the camera does: a dead, slow or babbling camera costs its own
  thread that long and nothing else;
- never hold more than `max_bytes` of a body in memory: a longer body is cut
  there and refused, an endless one too;
- return only a complete JPEG (SOI marker at the start, EOI at the end, a
  frame header giving its size), and otherwise raise a `CameraError` whose
  `reason` is one of the codes in `gateway.errors.CameraError`;
- allow `capture()` from several threads at once (the pre-alarm sampler, the
  alarm shots, a technician's `alarmgw snapshot`), and `close()` from
  another thread, which makes captures in flight end at once.

The JPEG check here needs no imaging library: it reads the markers and the
frame header (SOF) itself, so the gateway runs without Pillow.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import (
    CameraImageError,
)

if TYPE_CHECKING:

    from gateway.config import CameraSettings

log = logging.getLogger(__name__)

#: Bytes of a non-picture answer read to show the technician what it was.
_PEEK = 512

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
# Frame headers: SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class Picture:
    """One complete JPEG from a camera."""

    jpeg: bytes
    width: int
    """In pixels, from the JPEG's frame header."""
    height: int
    taken_mono_ns: int
    """CLOCK_BOOTTIME when the picture was asked for, in ns."""
    taken_wall_ns: int
    """Wall time when the picture was asked for, in ns since the epoch (may be unsynced)."""
    duration_s: float
    """How long the capture took, in seconds."""


class Camera(ABC):
    """A camera that gives one picture on request. See the module docstring for the rules."""

    def __init__(self, settings: CameraSettings) -> None:
        self.settings = settings
        self.id = settings.id

    @property
    def where(self) -> str:
        """Where the camera is reached, for messages (never holds credentials)."""
        return self.settings.source

    @abstractmethod
    def capture(self) -> Picture:
        """Take one picture; raise `CameraError` when there is none."""

    def close(self) -> None:  # noqa: B027 - optional for drivers that hold nothing
        """Release the camera and make captures in flight end now (they raise 'stopped')."""


# -- JPEG --------------------------------------------------------------------------------

def jpeg_dimensions(data: bytes | bytearray) -> tuple[int, int] | None:
    """(width, height) from the first frame header of a JPEG, or None when it has none."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None  # lost sync: not a marker where one must be
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            return None
        if marker in _SOF:
            if i + 9 > n:
                return None
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            return width, height
        if marker in (0xDA, 0xD9):  # scan data or end before any frame header
            return None
        i += 2 + length
    return None


def check_jpeg(data: bytes | bytearray, camera: str, *, where: str = "") -> tuple[int, int]:
    """Return (width, height) of a complete JPEG; raise `CameraImageError` otherwise."""
    src = f" from {where}" if where else ""
    if len(data) == 0:
        raise CameraImageError(camera, f"empty answer{src}: no picture", reason="not_jpeg")
    if bytes(data[:2]) != SOI:
        raise CameraImageError(camera, f"not a JPEG{src}: the answer is {describe_bytes(data)}",
                               reason="not_jpeg")
    # Some cameras pad the body after the end-of-image marker.
    end = len(data)
    while end > 2 and data[end - 1] in b"\r\n\x00 ":
        end -= 1
    if bytes(data[end - 2:end]) != EOI:
        raise CameraImageError(camera, f"truncated JPEG{src}: {len(data)} bytes without the"
                               " end-of-image marker (the camera sent part of a picture)",
                               reason="truncated")
    dims = jpeg_dimensions(data)
    if dims is None or dims[0] == 0 or dims[1] == 0:
        raise CameraImageError(camera, f"broken JPEG{src}: no usable frame header",
                               reason="not_jpeg")
    return dims


def describe_bytes(data: bytes | bytearray) -> str:
    """A short, safe description of what a non-picture answer was."""
    head = bytes(data[:_PEEK])
    text = head.decode("utf-8", errors="replace")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    if text and printable >= 0.9 * len(text):
        snippet = " ".join(text.split())[:80]
        kind = "an HTML page" if "<html" in text.lower() or text.lstrip().startswith("<") \
            else "text"
        return f"{kind} ({len(data)} bytes): {snippet!r}"
    return f"{len(data)} bytes of binary data starting {head[:8].hex(' ')}"


# -- HTTP ---------------------------------------------------------------------------------

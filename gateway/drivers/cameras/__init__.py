"""Cameras: the `Camera` interface (`base`), and one module per kind of camera.

`http` (IP cameras' snapshot URLs), `picamera` (the Raspberry Pi camera, only on a
Pi) and `rtsp` (streams, through ffmpeg). Which one stands behind a configured
camera is looked up by its `driver` in `gateway.drivers.backends`.
"""

from gateway.drivers.cameras.base import (
    Camera,
    Picture,
    check_jpeg,
    describe_bytes,
    jpeg_dimensions,
)
from gateway.drivers.cameras.http import HttpCamera, digest_authorization, parse_challenges

__all__ = ["Camera", "HttpCamera", "Picture", "check_jpeg", "describe_bytes",
           "digest_authorization", "jpeg_dimensions", "parse_challenges"]

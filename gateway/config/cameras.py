"""The [[cameras]] tables: the IP and Pi cameras that take pictures when a button is pressed.

    [[cameras]]
    id = "gate-cam"
    driver = "http"                       http (snapshot URL), rtsp, picamera, sim
    preset = "hikvision"                  or url = "http://10.0.0.20/snapshot.jpg"
    host = "10.0.0.20"
    username = "alarmgw"
    password_file = "/etc/alarmgw/gate-cam.password"

An input names its cameras (`cameras = ["gate-cam"]`); `camera_refs` reads that
list for GPIO and Modbus inputs alike. URLs never hold credentials: URLs are
shown in logs and status, secrets are not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from gateway.config._fields import POINT_ID, TomlTable, credentials

CameraDriver = Literal["http", "picamera", "rtsp", "sim"]


@dataclass(frozen=True)
class CameraSettings:
    """One camera: how to get a picture from it, and what to do with pictures after an alarm."""

    id: str
    """Camera id, used in snapshot topics and as the point id of its fault events."""
    name: str
    location: str
    driver: CameraDriver
    url: str | None
    """Snapshot URL (http), stream URL (rtsp); None for picamera and sim. Never holds
    credentials."""
    username: str | None
    password: str | None = field(repr=False)
    timeout_s: float
    """Whole capture (connect, answer, body), in seconds."""
    max_bytes: int
    """Largest picture accepted, in bytes; a longer body is cut there and refused."""
    shots: int
    """Pictures taken after an alarm."""
    interval_s: float
    """Time between the shots after an alarm, in seconds."""
    pre_frames: int
    """Pictures from before an alarm kept in memory (0: none, and no background polling)."""
    pre_interval_s: float
    """Time between the pre-alarm pictures, in seconds."""
    probe_interval_s: float
    """Health probe cadence, in seconds, when no pre-alarm polling shows the camera alive."""
    fault_after: int
    """Consecutive failed captures that make the camera a fault (video loss)."""
    width: int
    """Picture width for picamera and sim, in pixels."""
    height: int
    """Picture height for picamera and sim, in pixels."""
    camera_num: int
    """Which Pi camera (picamera), 0 for the first."""

    @property
    def source(self) -> str:
        """Where the camera is reached, for fault events: its URL, or `picamera:N`."""
        if self.driver == "picamera":
            return f"picamera:{self.camera_num}"
        if self.driver == "sim":
            return f"sim:{self.id}"
        return self.url or f"{self.driver}:{self.id}"


CAMERA_PRESETS: dict[str, str] = {
    # Hikvision ISAPI: channel N's main stream is track N01.
    "hikvision": "/ISAPI/Streaming/channels/{channel}01/picture",
    "dahua": "/cgi-bin/snapshot.cgi?channel={channel}",
    # ONVIF: GetSnapshotUri answers a vendor-specific path; give it as `path`.
    "onvif": "{path}",
}

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$")

_COMMON_CAMERA_KEYS = ("id", "name", "location", "driver", "timeout_s", "max_bytes", "shots",
                       "interval_s", "pre_frames", "pre_interval_s", "probe_interval_s",
                       "fault_after")
_DRIVER_KEYS: dict[str, tuple[str, ...]] = {
    "http": ("url", "preset", "host", "port", "channel", "path", "username", "password",
             "password_file"),
    "rtsp": ("url", "username", "password", "password_file"),
    "picamera": ("camera_num", "width", "height"),
    "sim": ("username", "password", "password_file", "width", "height"),
}


def parse_cameras(root: TomlTable) -> tuple[CameraSettings, ...]:
    """Read every [[cameras]] table."""
    result: list[CameraSettings] = []
    ids: dict[str, str] = {}
    for t in root.array_of_tables("cameras"):
        driver: CameraDriver = t.choice("driver", ("http", "picamera", "rtsp", "sim"), "http")
        allowed = _COMMON_CAMERA_KEYS + _DRIVER_KEYS[driver]
        for key in sorted(t.data):
            if key in allowed:
                continue
            owners = [d for d, keys in _DRIVER_KEYS.items() if key in keys]
            if owners:
                raise t.error(key, f"is not used by driver {driver!r} (it belongs to driver"
                              f" {' / '.join(repr(o) for o in owners)}); remove it")
        t.expect(*allowed)
        cam_id = t.text("id", pattern=POINT_ID, required=True)
        if cam_id in ids:
            raise t.error("id", f"{cam_id!r} is already used by {ids[cam_id]}")
        ids[cam_id] = t.prefix
        url: str | None = None
        if driver == "http":
            url = _camera_http_url(t)
        elif driver == "rtsp":
            url = t.text("url", required=True)
            _check_camera_url(t, url, ("rtsp", "rtsps"))
        username = password = None
        if "username" in allowed:
            username, password = _camera_credentials(t)
        big = driver == "picamera"
        shots = t.integer("shots", 3, min=0, max=20)
        pre_frames = t.integer("pre_frames", 0, min=0, max=60)
        result.append(CameraSettings(
            id=cam_id,
            name=t.label("name", cam_id),
            location=t.label("location", ""),
            driver=driver,
            url=url,
            username=username,
            password=password,
            timeout_s=t.number("timeout_s", 3.0, min=0.1, max=60.0),
            max_bytes=t.integer("max_bytes", 2 * 1024 * 1024, min=1024, max=64 * 1024 * 1024),
            shots=shots,
            interval_s=t.number("interval_s", 1.0, min=0.1, max=60.0),
            pre_frames=pre_frames,
            pre_interval_s=t.number("pre_interval_s", 2.0, min=0.1, max=600.0),
            probe_interval_s=t.number("probe_interval_s", 300.0, min=0.1, max=86400.0),
            fault_after=t.integer("fault_after", 2, min=1, max=100),
            width=t.integer("width", 1920 if big else 640, min=16, max=8192)
            if "width" in allowed else 0,
            height=t.integer("height", 1080 if big else 360, min=16, max=8192)
            if "height" in allowed else 0,
            camera_num=t.integer("camera_num", 0, min=0, max=7) if big else 0,
        ))
        t.done()
    return tuple(result)


def _camera_http_url(t: TomlTable) -> str:
    has_url = "url" in t.data
    has_preset = "preset" in t.data
    if has_url == has_preset:
        raise t.error("url", "give either url (the camera's snapshot URL) or preset with host"
                      " (hikvision, dahua, onvif)" + (", not both" if has_url else ""))
    if has_url:
        for key in ("host", "port", "channel", "path"):
            if key in t.data:
                raise t.error(key, "only goes with preset; with url, put it in the URL")
        url = t.text("url")
        _check_camera_url(t, url, ("http", "https"))
        return url
    preset = t.choice("preset", tuple(CAMERA_PRESETS))
    host = t.text("host", required=True)
    if not _HOST.fullmatch(host):
        raise t.error("host", f"{host!r} is not a host name or IP address (no scheme, port or"
                      " path: use port and path for those)")
    port = t.integer("port", 80, min=1, max=65535)
    channel = t.integer("channel", 1, min=1, max=256)
    path = ""
    if preset == "onvif":
        path = t.text("path", required=True)
        if not path.startswith("/"):
            raise t.error("path", f"{path!r} must start with '/': the path of the URI the"
                          " camera's ONVIF GetSnapshotUri answers, e.g. /onvif-http/snapshot?"
                          "Profile_1")
    elif "path" in t.data:
        raise t.error("path", f"only goes with preset \"onvif\"; preset {preset!r} has its own")
    netloc = host if port == 80 else f"{host}:{port}"
    return f"http://{netloc}" + CAMERA_PRESETS[preset].format(channel=channel, path=path)


def _check_camera_url(t: TomlTable, url: str, schemes: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise t.error("url", f"{url!r} is not a URL ({exc})") from exc
    if parts.scheme not in schemes:
        raise t.error("url", f"{url!r} must start with {' or '.join(s + '://' for s in schemes)}")
    if parts.username is not None or parts.password is not None:
        raise t.error("url", "holds credentials: put them in username and password_file"
                      " instead (URLs are shown in logs and status; secrets are not)")
    if not parts.hostname:
        raise t.error("url", f"{url!r} names no host")


def _camera_credentials(t: TomlTable) -> tuple[str | None, str | None]:
    username, password = credentials(t)
    if username is not None:
        try:
            username.encode("latin-1")
            bad = not username.isprintable() or ":" in username
        except UnicodeEncodeError:
            bad = True
        if bad:
            raise t.error("username", f"{username!r} cannot be sent to a camera: HTTP carries"
                          " user names as Latin-1 text, without ':' or control characters;"
                          " create a user with a plain ASCII name on the camera")
    if username is not None and password is None:
        raise t.error("password_file", "missing: the camera's username needs a password"
                      " (password_file, or password)")
    return username, password


def camera_refs(t: TomlTable, cameras: tuple[CameraSettings, ...]) -> tuple[str, ...]:
    """The `cameras = [...]` of an input: ids of configured cameras, each once."""
    value = t.raw("cameras", False)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise t.error("cameras", "must be an array of camera ids, e.g. [\"gate-cam\"]")
    known = {c.id for c in cameras}
    seen: set[str] = set()
    for cam in value:
        if cam not in known:
            listed = ", ".join(sorted(known)) or "none: add a [[cameras]] table"
            raise t.error("cameras", f"{cam!r} is not a configured camera (cameras: {listed})")
        if cam in seen:
            raise t.error("cameras", f"{cam!r} is listed twice")
        seen.add(cam)
    return tuple(value)

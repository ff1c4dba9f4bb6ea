"""The one exception tree of alarmgw.

Every error the gateway raises on purpose derives from `GatewayError`;
subclasses are named `<Area><Problem>` and also inherit the builtin that
fits, so callers may catch either. Errors keep machine-readable fields.
"""

from __future__ import annotations

from pathlib import Path


class GatewayError(Exception):
    """Base of every error alarmgw raises on purpose."""


class ConfigError(GatewayError, ValueError):
    """The configuration file is missing, unreadable or invalid.

    `path` is the file, `key` the dotted key at fault (empty when the file
    as a whole is at fault) and `problem` what is wrong with it.
    """

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + problem)


class StoreError(GatewayError, OSError):
    """The durable store could not be opened or written."""


class StoreFullError(StoreError):
    """A row of a lower lane did not fit the store's byte budget."""

    def __init__(self, lane: str, size: int, budget: int) -> None:
        self.lane = lane
        self.size = size
        self.budget = budget
        super().__init__(
            f"store budget of {budget} bytes is full: {lane} row of {size} bytes refused"
        )


class HardwareError(GatewayError, OSError):
    """A driver could not open or use its hardware."""


class ControlError(GatewayError, ConnectionError):
    """The local control socket could not be reached or answered an error."""


class ServiceNotRunningError(ControlError):
    """No service answers on the control socket."""

    def __init__(self, socket_path: Path | str, reason: str) -> None:
        self.socket_path = str(socket_path)
        self.reason = reason
        super().__init__(
            f"alarmgw is not running (no answer on {self.socket_path}: {reason})"
        )


class UplinkError(GatewayError, ConnectionError):
    """The uplink could not reach or use the broker."""


class CameraError(GatewayError, OSError):
    """A camera gave no usable picture.

    `camera` is the camera's id from the config, `reason` a short machine-readable
    code (the `reason` of a `snapshot_failed` record and of the camera's fault):
    "refused", "unreachable", "unauthorized", "timeout", "http_error", "not_jpeg",
    "truncated", "too_large", "unavailable" or "stopped"; the message says what
    happened and what to check.
    """

    reason = "error"

    def __init__(self, camera: str, message: str, *, reason: str | None = None) -> None:
        self.camera = camera
        if reason is not None:
            self.reason = reason
        self.message = message
        super().__init__(f"camera {camera}: {message}")


class CameraUnreachableError(CameraError, ConnectionError):
    """The camera could not be reached (refused, no route, unknown host)."""

    reason = "unreachable"


class CameraAuthError(CameraError, PermissionError):
    """The camera refused the credentials (HTTP 401 or 403)."""

    reason = "unauthorized"


class CameraTimeoutError(CameraError, TimeoutError):
    """The camera did not deliver a whole picture within its timeout."""

    reason = "timeout"


class CameraResponseError(CameraError):
    """The camera answered, but not with a picture (an HTTP error status, a redirect)."""

    reason = "http_error"


class CameraImageError(CameraError, ValueError):
    """The camera's answer is not a complete JPEG: not one at all, truncated, or too large."""

    reason = "not_jpeg"

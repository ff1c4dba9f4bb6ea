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
    """A row of a lower lane did not fit the store's byte budget or the disk."""

    def __init__(self, lane: str, size: int, budget: int, reason: str | None = None) -> None:
        self.lane = lane
        self.size = size
        self.budget = budget
        self.reason = reason or f"the store budget of {budget} bytes is full"
        super().__init__(f"{self.reason}: {lane} row of {size} bytes refused")


class HardwareError(GatewayError, OSError):
    """A driver could not open or use its hardware."""


class ModbusError(HardwareError):
    """A Modbus request failed.

    `bus` is the bus id from the config (or the port/host for a scan), `unit` the
    unit id asked (None for the bus itself) and `kind` what went wrong, one of
    "timeout", "crc", "exception", "wrong_unit", "malformed", "link".
    """

    kind = "error"

    def __init__(self, bus: str, unit: int | None, message: str) -> None:
        self.bus = bus
        self.unit = unit
        super().__init__(message)


class ModbusTimeoutError(ModbusError, TimeoutError):
    """The unit did not answer within the timeout."""

    kind = "timeout"


class ModbusFrameError(ModbusError):
    """A reply arrived but cannot be used: bad CRC, from another unit, or malformed."""

    def __init__(self, bus: str, unit: int | None, kind: str, message: str,
                 frame: bytes = b"") -> None:
        self.kind = kind
        self.frame = frame
        super().__init__(bus, unit, message)


class ModbusExceptionReplyError(ModbusError):
    """The unit answered with a Modbus exception code (`code`)."""

    kind = "exception"

    def __init__(self, bus: str, unit: int | None, code: int, message: str) -> None:
        self.code = code
        super().__init__(bus, unit, message)


class ModbusLinkError(ModbusError, ConnectionError):
    """The serial port cannot be opened or used, or the TCP module cannot be reached."""

    kind = "link"


class OutputError(HardwareError):
    """An output (a GPIO pin or a Modbus coil) could not be switched."""


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


class SmsInputError(GatewayError, ValueError):
    """A text message or phone number that cannot be sent (empty text, malformed number)."""


class ModemError(HardwareError):
    """The SMS modem could not be reached or refused what it was asked.

    Machine-readable fields: `port` (the serial device), `command` (the AT command that
    failed, without its arguments, e.g. "AT+CMGS"; empty when no command was involved),
    `code` (the number of a +CMS/+CME ERROR, None for a plain ERROR or none), `reply`
    (the modem's final line, e.g. "+CMS ERROR: 330") and `sent_refs` (message references
    of the parts of the current SMS the modem had already sent when this failed).
    """

    def __init__(self, message: str, *, port: str, command: str = "",
                 code: int | None = None, reply: str = "",
                 sent_refs: list[int] | None = None) -> None:
        self.port = port
        self.command = command
        self.code = code
        self.reply = reply
        self.sent_refs: list[int] = list(sent_refs or [])
        super().__init__(message)


class ModemOpenError(ModemError):
    """The modem's serial port could not be opened (missing, no permission, held)."""


class ModemClosedError(ModemError):
    """The modem was closed while a command was in progress."""


class ModemTimeoutError(ModemError, TimeoutError):
    """The modem did not answer a command (or did not finish an SMS) in time."""


class ModemNotAnsweringError(ModemTimeoutError):
    """Nothing answers AT on the port: wrong port, wrong baud, modem off or held."""


class ModemBusyError(ModemTimeoutError):
    """Another thread kept the modem busy for longer than the caller would wait."""


class ModemCommandError(ModemError):
    """The modem answered ERROR, +CME ERROR or +CMS ERROR."""


class ModemSimError(ModemCommandError):
    """The SIM is missing, locked (PIN/PUK), refused the PIN or failed."""


class ModemNetworkError(ModemCommandError):
    """The modem has no network service (not registered, network timeout)."""


class ModemSmsError(ModemCommandError):
    """The modem or the network refused the SMS itself (SMSC unknown, barred, unknown error)."""


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


class Dc09FrameError(GatewayError, ValueError):
    """A SIA DC-09 frame from an alarm-receiving centre cannot be used.

    `reason` is one of "crc", "length", "truncated", "malformed", "decrypt" or "account"
    (the counter the link adds it to), `frame` the bytes as received.
    """

    def __init__(self, reason: str, message: str, frame: bytes = b"") -> None:
        self.reason = reason
        self.frame = frame
        super().__init__(f"DC-09 frame {reason}: {message}")

"""The configuration: one TOML file, validated on load into frozen dataclasses.

Nothing half-configured ever starts: `load_config` either returns a complete
`Config` or raises `ConfigError` naming the file, the dotted key and what is
wrong with it ("/etc/alarmgw/config.toml: inputs[2].gpio: pin 40 does not
exist ..."). Unknown keys are errors too, because a mistyped key that is
silently ignored is a button that silently does not work.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from gateway.config.modbus import ModbusSettings, parse_modbus
from gateway.config.outputs import LinkSettings, OutputSettings, parse_outputs
from gateway.errors import ConfigError

DEFAULT_PATH = Path("/etc/alarmgw/config.toml")

InputKind = Literal["panic", "tamper", "input"]
Contact = Literal["NO", "NC"]
Pull = Literal["up", "down", "off"]
Level = Literal["low", "high"]
GpioBackend = Literal["lgpio", "mock"]
ClockSource = Literal["kernel", "assume-synced", "assume-unsynced"]
CameraDriver = Literal["http", "picamera", "rtsp", "sim"]

# Names that end up in MQTT topics: no wildcards, separators or '$'.
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_POINT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# BCM numbers on the 40-pin header. GPIO 0 and 1 are the HAT ID EEPROM bus.
_GPIO_PINS = range(2, 28)
# GPIO 2 and 3 (I2C) have fixed 1.8 kOhm pull-ups on the board.
_FIXED_PULL_UP = frozenset({2, 3})


@dataclass(frozen=True)
class GatewaySettings:
    """Who this gateway is and where it keeps its files."""

    site: str
    """Site id (the school), used in every topic."""
    id: str
    """Gateway id, unique within the site, used in every topic."""
    state_dir: Path
    """Directory of the durable store (the outbox)."""
    runtime_dir: Path
    """Directory of the control socket."""


@dataclass(frozen=True)
class TlsSettings:
    """TLS for the uplink: TLS 1.2 or newer; `broker.host` is always checked against the
    broker's certificate."""

    ca: Path | None
    """CA bundle that signs the broker's certificate; None uses the system store."""
    cert: Path | None
    """Client certificate (PEM) for mutual TLS."""
    key: Path | None
    """Private key (PEM) of the client certificate."""


@dataclass(frozen=True)
class BrokerSettings:
    """The police platform's MQTT broker."""

    host: str
    port: int
    client_id: str
    username: str | None
    password: str | None = field(repr=False)
    tls: TlsSettings | None
    """None only when `plaintext = true` was set explicitly."""
    keepalive_s: int
    """MQTT keepalive, in seconds: a dead link is noticed within twice this."""
    connect_timeout_s: float
    """TCP connect and TLS handshake timeout, in seconds."""
    window: int
    """Most events in flight (published, PUBACK not yet received)."""
    reconnect_min_s: float
    reconnect_max_s: float


@dataclass(frozen=True)
class StoreSettings:
    """The durable outbox."""

    max_bytes: int
    """Byte budget for waiting rows; bulk rows give way first, alarms never."""
    keep_acked: int
    """How many acknowledged rows to keep for `alarmgw queue` before pruning."""
    reserve_bytes: int = 4 * 1024 * 1024
    """Ballast file released when the disk is full, so an alarm can still be committed."""


@dataclass(frozen=True)
class ClockSettings:
    """How to tell whether the wall clock is synchronised."""

    sync_source: ClockSource
    unsynced_fault_s: float = 900.0
    """Raise a clock fault when the clock is still not synced this many seconds after boot
    (or after it lost sync); 0 turns the fault off."""


@dataclass(frozen=True)
class HealthSettings:
    """The periodic heartbeat (memory only, never written to disk)."""

    interval_s: float


@dataclass(frozen=True)
class GpioSettings:
    """The GPIO pin backend."""

    backend: GpioBackend
    debounce_ms: int
    """Default debounce: a new level must be stable this long, in milliseconds."""


@dataclass(frozen=True)
class InputSettings:
    """One wired input on a GPIO pin: a panic button, a tamper contact or a plain input.

    (Inputs on Modbus modules are `[[inputs]]` with a `modbus` key; they are in
    `Config.modbus.points`.)"""

    id: str
    name: str
    location: str
    kind: InputKind
    gpio: int
    contact: Contact
    pull: Pull
    active_level: Level
    """Pin level that means 'active' (pressed, tampered), derived from wiring."""
    debounce_ms: int
    cameras: tuple[str, ...] = ()
    """Ids of the cameras that take pictures when this input raises an alarm."""

    @property
    def source(self) -> str:
        return f"gpio:{self.gpio}"


@dataclass(frozen=True)
class CommandSettings:
    """Platform commands on the cmd topic."""

    key: bytes | None = field(repr=False)
    """HMAC-SHA256 key shared with the platform; None only with require_signature off."""
    require_signature: bool
    max_age_s: float
    """A command issued longer ago than this is refused, in seconds."""
    max_future_s: float
    """A command issued further ahead of our clock than this is refused, in seconds."""
    ack_lamp: str | None = None
    """Output lit by a platform ack of any point without its own lamp."""
    ack_lamps: tuple[tuple[str, str], ...] = ()
    """(input id, output id): the acknowledgement lamp of that input."""
    ack_lamp_s: float | None = 300.0
    """How long an ack lamp stays lit, in seconds; None until switched off by hand."""

    def lamp_for(self, point_id: str) -> str | None:
        return dict(self.ack_lamps).get(point_id, self.ack_lamp)


@dataclass(frozen=True)
class EscalationSettings:
    """What the gateway does by itself when an alarm is not acknowledged."""

    ack_timeout_s: float
    """Escalate when no platform ack arrived this long after the alarm, in seconds."""
    uplink_down_s: float
    """Escalate when an alarm has had no PUBACK this long (uplink down or half-open), in s."""
    sounder: str | None
    """Output id switched on when escalating."""
    sounder_s: float | None
    """How long the sounder sounds, in seconds; None until switched off."""
    sms_to: tuple[str, ...]
    modem_port: str | None
    modem_baud: int
    modem_pin: str | None = field(repr=False)
    sms_timeout_s: float
    modem_check_s: float = 600.0
    """How often the modem is asked for its SIM, network and signal, in seconds."""


@dataclass(frozen=True)
class Config:
    path: Path
    gateway: GatewaySettings
    broker: BrokerSettings
    store: StoreSettings
    clock: ClockSettings
    health: HealthSettings
    gpio: GpioSettings
    inputs: tuple[InputSettings, ...]
    """The GPIO inputs."""
    modbus: ModbusSettings = field(default_factory=ModbusSettings)
    """Modbus buses, modules and the inputs on them."""
    outputs: tuple[OutputSettings, ...] = ()
    links: tuple[LinkSettings, ...] = ()
    commands: CommandSettings | None = None
    """None: no [commands] table, the gateway does not subscribe to commands."""
    escalation: EscalationSettings | None = None
    """None: no [escalation] table, alarms are never escalated locally."""
    cameras: tuple[CameraSettings, ...] = ()

    def input(self, point_id: str) -> InputSettings:
        for inp in self.inputs:
            if inp.id == point_id:
                return inp
        raise KeyError(point_id)

    def camera(self, camera_id: str) -> CameraSettings:
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        known = ", ".join(c.id for c in self.cameras) or "none configured"
        raise KeyError(f"no camera {camera_id!r} in {self.path} (cameras: {known})")


T = TypeVar("T")


class _Table:
    """A TOML table being read: every key read is ticked off; leftovers are errors."""

    def __init__(self, path: Path, prefix: str, data: Mapping[str, Any]) -> None:
        self.path = path
        self.prefix = prefix
        self.data = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), problem)

    def _get(self, name: str, required: bool) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise self.error(name, "missing (required)")
            return None
        return self.data[name]

    def text(self, name: str, default: str | None = None, *, pattern: re.Pattern[str] | None = None,
            required: bool = False) -> str:
        value = self._get(name, required and default is None)
        if value is None:
            if default is None:
                raise self.error(name, "missing (required)")
            return default
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, not {_tname(value)}")
        if not value.strip():
            raise self.error(name, "must not be empty")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(name, f"{value!r} is not allowed: use letters, digits, '-', '_'"
                             f" (pattern {pattern.pattern})")
        return value

    def opt_str(self, name: str) -> str | None:
        if name not in self.data:
            self.seen.add(name)
            return None
        return self.text(name)

    def integer(self, name: str, default: int | None, *, min: int, max: int) -> int:
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, not {_tname(value)}")
        if not min <= value <= max:
            raise self.error(name, f"{value} is out of range ({min} to {max})")
        return value

    def number(self, name: str, default: float | None, *, min: float, max: float) -> float:
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"must be a number, not {_tname(value)}")
        if not min <= value <= max:
            raise self.error(name, f"{value} is out of range ({min} to {max})")
        return float(value)

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, not {_tname(value)}")
        return value

    def choice(self, name: str, choices: tuple[T, ...], default: T | None = None) -> T:
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise self.error(name, f"{value!r} is not one of {allowed}")
        return cast(T, value)

    def path_(self, name: str, default: Path | None = None) -> Path:
        if name not in self.data and default is not None:
            self.seen.add(name)
            return default
        value = self.text(name)
        p = Path(value)
        if not p.is_absolute():
            # Relative to the config file, made absolute without following symlinks: a
            # serial port given as a stable link (run/ttyRS485, /dev/serial/by-id/...)
            # must stay that link, not the /dev/pts/N or ttyUSB0 it points to today.
            p = Path(os.path.normpath(self.path.parent.absolute() / p))
        return p

    def opt_path(self, name: str) -> Path | None:
        if name not in self.data:
            self.seen.add(name)
            return None
        return self.path_(name)

    def table(self, name: str, *, required: bool = False) -> _Table | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table ([{self.key(name)}]), not {_tname(value)}")
        return _Table(self.path, self.key(name), value)

    def array_of_tables(self, name: str) -> list[_Table]:
        value = self._get(name, False)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(name, f"must be an array of tables ([[{self.key(name)}]])")
        return [_Table(self.path, f"{self.key(name)}[{i}]", v) for i, v in enumerate(value)]

    def expect(self, *keys: str) -> None:
        """Refuse unknown keys up front, so a typo is reported as itself rather than as
        the missing key it was meant to be."""
        unknown = sorted(set(self.data) - set(keys))
        if unknown:
            raise self.error(unknown[0], "unknown key (check the spelling against "
                             "examples/config.toml)")

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.error(unknown[0], "unknown key (check the spelling against "
                             "examples/config.toml)")


def _tname(value: object) -> str:
    return {
        str: "a string", int: "an integer", float: "a number", bool: "a boolean",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)


def _empty(path: Path, prefix: str) -> _Table:
    return _Table(path, prefix, {})


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, object]) -> None:
    """Set dotted keys ("broker.port") in a raw TOML document, in place."""
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError("--set", dotted, f"{part} is not a table")
            node = child
        node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, object]:
    """Parse `KEY=VALUE` from the command line; VALUE is a TOML value or a bare string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", text, "expected KEY=VALUE, e.g. broker.port=8883")
    try:
        parsed: object = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def load_config(path: Path | str, overrides: Mapping[str, object] | None = None) -> Config:
    """Read and validate the config file at `path`; raise `ConfigError` on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found (give one with --config)") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not UTF-8 text: {exc}") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from exc
    if overrides:
        apply_overrides(raw, overrides)
    return parse_config(path, raw)


def parse_config(path: Path, raw: Mapping[str, Any]) -> Config:
    """Validate an already-parsed TOML document."""
    root = _Table(path, "", raw)

    root.expect("gateway", "broker", "store", "clock", "health", "gpio", "inputs", "modbus",
                "outputs", "links", "commands", "escalation", "cameras")
    gw = root.table("gateway", required=True)
    assert gw is not None
    gw.expect("site", "id", "state_dir", "runtime_dir")
    gateway = GatewaySettings(
        site=gw.text("site", pattern=_TOPIC_NAME, required=True),
        id=gw.text("id", pattern=_TOPIC_NAME, required=True),
        state_dir=gw.path_("state_dir", Path("/var/lib/alarmgw")),
        runtime_dir=gw.path_("runtime_dir", Path("/run/alarmgw")),
    )
    gw.done()

    broker = _parse_broker(root, gateway)
    store = _parse_store(root.table("store") or _empty(path, "store"))
    clock_t = root.table("clock") or _empty(path, "clock")
    clock_t.expect("sync_source", "unsynced_fault_s")
    clock = ClockSettings(
        sync_source=clock_t.choice("sync_source", ("kernel", "assume-synced", "assume-unsynced"),
                                   "kernel"),
        unsynced_fault_s=clock_t.number("unsynced_fault_s", 900.0, min=0.0, max=7 * 86400.0))
    clock_t.done()
    health_t = root.table("health") or _empty(path, "health")
    health_t.expect("interval_s")
    health = HealthSettings(interval_s=health_t.number("interval_s", 30.0, min=1.0, max=3600.0))
    health_t.done()
    gpio_t = root.table("gpio") or _empty(path, "gpio")
    gpio_t.expect("backend", "debounce_ms")
    gpio = GpioSettings(
        backend=gpio_t.choice("backend", ("lgpio", "mock"), "lgpio"),
        debounce_ms=gpio_t.integer("debounce_ms", 30, min=0, max=5000),
    )
    gpio_t.done()
    cameras = _parse_cameras(root)
    modbus_tables: list[_Table] = []
    inputs = _parse_inputs(root, gpio, modbus_tables, cameras)
    taken = {i.id: f"inputs ({i.id})" for i in inputs}
    modbus = parse_modbus(root, modbus_tables, taken, cameras)
    outputs, links = parse_outputs(root, inputs, modbus, taken)
    cmd_t = root.table("commands")
    commands = _parse_commands(cmd_t) if cmd_t is not None else None
    esc_t = root.table("escalation")
    escalation = _parse_escalation(esc_t) if esc_t is not None else None
    output_ids = {o.id for o in outputs}
    if commands is not None:
        known = ", ".join(sorted(output_ids)) or "none configured"
        if commands.ack_lamp is not None and commands.ack_lamp not in output_ids:
            raise ConfigError(path, "commands.ack_lamp", f"{commands.ack_lamp!r} is not an output"
                              f" id (outputs: {known})")
        point_ids = {i.id for i in inputs} | {p.id for p in modbus.points}
        for point_id, lamp in commands.ack_lamps:
            if point_id not in point_ids:
                raise ConfigError(path, f"commands.ack_lamps.{point_id}", "not an input id")
            if lamp not in output_ids:
                raise ConfigError(path, f"commands.ack_lamps.{point_id}", f"{lamp!r} is not an"
                                  f" output id (outputs: {known})")
    if escalation is not None and escalation.sounder is not None and \
            escalation.sounder not in {o.id for o in outputs}:
        known = ", ".join(o.id for o in outputs) or "none configured"
        raise ConfigError(path, "escalation.sounder", f"{escalation.sounder!r} is not an output"
                          f" id (outputs: {known})")
    root.done()
    return Config(path=path, gateway=gateway, broker=broker, store=store, clock=clock,
                  health=health, gpio=gpio, inputs=inputs, modbus=modbus, outputs=outputs,
                  links=links, commands=commands, escalation=escalation, cameras=cameras)


_PHONE = re.compile(r"^\+?[0-9]{3,20}$")


def _parse_escalation(t: _Table) -> EscalationSettings:
    t.expect("ack_timeout_s", "uplink_down_s", "sounder", "sounder_s", "sms_to", "modem")
    sms_to: list[str] = []
    raw = t.data.get("sms_to", [])
    t.seen.add("sms_to")
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise t.error("sms_to", "must be an array of phone numbers, e.g. [\"+8613800000000\"]")
    for n in raw:
        if not _PHONE.match(n):
            raise t.error("sms_to", f"{n!r} is not a phone number (digits, optionally a"
                          " leading +)")
        sms_to.append(n)
    modem_t = t.table("modem")
    port = None
    baud = 115200
    pin = None
    timeout = 60.0
    check_s = 600.0
    if modem_t is not None:
        modem_t.expect("port", "baud", "pin_file", "sms_timeout_s", "check_interval_s")
        port = modem_t.text("port", required=True)
        baud = modem_t.integer("baud", 115200, min=1200, max=4_000_000)
        pin_file = modem_t.opt_path("pin_file")
        if pin_file is not None:
            try:
                pin = pin_file.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise modem_t.error("pin_file", f"cannot read {pin_file}: {exc}") from exc
        timeout = modem_t.number("sms_timeout_s", 60.0, min=5.0, max=600.0)
        check_s = modem_t.number("check_interval_s", 600.0, min=5.0, max=86400.0)
        modem_t.done()
    if sms_to and port is None:
        raise t.error("modem", "missing: sms_to needs an [escalation.modem] with the modem's"
                      " serial port")
    sounder_s: float | None = t.number("sounder_s", 300.0, min=0.0, max=86400.0)
    if sounder_s == 0:
        sounder_s = None
    settings = EscalationSettings(
        ack_timeout_s=t.number("ack_timeout_s", 60.0, min=1.0, max=3600.0),
        uplink_down_s=t.number("uplink_down_s", 30.0, min=1.0, max=3600.0),
        sounder=t.opt_str("sounder"),
        sounder_s=sounder_s,
        sms_to=tuple(sms_to),
        modem_port=port,
        modem_baud=baud,
        modem_pin=pin,
        sms_timeout_s=timeout,
        modem_check_s=check_s,
    )
    t.done()
    return settings


def _parse_commands(t: _Table) -> CommandSettings:
    t.expect("key_file", "require_signature", "max_age_s", "max_future_s", "ack_lamp",
             "ack_lamps", "ack_lamp_s")
    require = t.flag("require_signature", True)
    key_file = t.opt_path("key_file")
    key: bytes | None = None
    if key_file is not None:
        try:
            text = key_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise t.error("key_file", f"cannot read {key_file}: {exc}") from exc
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise t.error("key_file", f"{key_file} must hold the key as hex digits (make one"
                          " with: openssl rand -hex 32)") from None
        if len(key) < 16:
            raise t.error("key_file", f"the key in {key_file} is {len(key)} bytes; use at"
                          " least 16 (openssl rand -hex 32)")
    elif require:
        raise t.error("key_file", "missing: commands must be signed; give the platform's"
                      " per-gateway key file, or set require_signature = false (not for"
                      " production)")
    lamps_t = t.table("ack_lamps")
    lamps: list[tuple[str, str]] = []
    if lamps_t is not None:
        for point_id in lamps_t.data:
            lamps.append((point_id, lamps_t.text(point_id)))
        lamps_t.done()
    lamp_s: float | None = t.number("ack_lamp_s", 300.0, min=0.0, max=86400.0)
    settings = CommandSettings(
        key=key,
        require_signature=require,
        max_age_s=t.number("max_age_s", 40.0, min=1.0, max=3600.0),
        max_future_s=t.number("max_future_s", 20.0, min=0.0, max=3600.0),
        ack_lamp=t.opt_str("ack_lamp"),
        ack_lamps=tuple(lamps),
        ack_lamp_s=lamp_s or None,
    )
    t.done()
    return settings


def _parse_broker(root: _Table, gateway: GatewaySettings) -> BrokerSettings:
    b = root.table("broker", required=True)
    assert b is not None
    host = b.text("host", required=True)
    plaintext = b.flag("plaintext", False)
    b.expect("host", "port", "plaintext", "tls", "client_id", "username", "password",
             "password_file", "keepalive_s", "connect_timeout_s", "window", "reconnect_min_s",
             "reconnect_max_s")
    tls_t = b.table("tls")
    if tls_t is None and not plaintext:
        raise b.error("tls", "missing: the uplink uses TLS; add a [broker.tls] table (ca = ...),"
                      " or set broker.plaintext = true for a test broker on loopback")
    if tls_t is not None and plaintext:
        raise b.error("plaintext", "true contradicts the [broker.tls] table: remove one")
    if plaintext and not _is_loopback(host):
        raise b.error("plaintext", f"true is only allowed for a broker on loopback, not {host!r}:"
                      " alarms never cross a network in plaintext")
    tls: TlsSettings | None = None
    if tls_t is not None:
        ca = tls_t.opt_path("ca")
        cert = tls_t.opt_path("cert")
        key = tls_t.opt_path("key")
        if (cert is None) != (key is None):
            missing = "key" if key is None else "cert"
            raise tls_t.error(missing, "missing: cert and key go together for mutual TLS")
        tls_t.expect("ca", "cert", "key")
        for name, p in (("ca", ca), ("cert", cert), ("key", key)):
            if p is not None and not p.is_file():
                raise tls_t.error(name, f"file {p} does not exist or is not a file")
        _check_tls_files(tls_t, ca, cert, key)
        tls = TlsSettings(ca=ca, cert=cert, key=key)
        tls_t.done()
    port = b.integer("port", 1883 if plaintext else 8883, min=1, max=65535)
    username, password = _credentials(b)
    keepalive = b.integer("keepalive_s", 10, min=2, max=300)
    rmin = b.number("reconnect_min_s", 0.5, min=0.05, max=60.0)
    rmax = b.number("reconnect_max_s", 10.0, min=0.1, max=600.0)
    if rmax < rmin:
        raise b.error("reconnect_max_s", f"{rmax} is below reconnect_min_s ({rmin})")
    settings = BrokerSettings(
        host=host,
        port=port,
        client_id=b.text("client_id", f"alarmgw-{gateway.site}-{gateway.id}"),
        username=username,
        password=password,
        tls=tls,
        keepalive_s=keepalive,
        connect_timeout_s=b.number("connect_timeout_s", 5.0, min=0.5, max=60.0),
        window=b.integer("window", 64, min=1, max=1000),
        reconnect_min_s=rmin,
        reconnect_max_s=rmax,
    )
    b.done()
    return settings


def _check_tls_files(t: _Table, ca: Path | None, cert: Path | None, key: Path | None) -> None:
    """Load the TLS files now, so that a bad one stops the config, not the first connect."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    except ssl.SSLError as exc:  # pragma: no cover - the system store itself is broken
        raise t.error("ca", f"cannot create a TLS context: {exc}") from exc
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise t.error("ca", f"{ca} is not a usable PEM CA certificate ({_ssl_reason(exc)})"
                          ) from exc
    if cert is not None and key is not None:
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as exc:
            reason = _ssl_reason(exc)
            name = "key" if "KEY_VALUES_MISMATCH" in reason or "key" in reason.lower() else "cert"
            raise t.error(name, f"cannot use certificate {cert} with key {key} ({reason}): check"
                          " that both are PEM, the key is not encrypted, and they belong"
                          " together") from exc


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_store(t: _Table) -> StoreSettings:
    t.expect("max_bytes", "keep_acked", "reserve_bytes")
    s = StoreSettings(
        max_bytes=t.integer("max_bytes", 256 * 1024 * 1024, min=64 * 1024, max=1 << 40),
        keep_acked=t.integer("keep_acked", 1000, min=0, max=1_000_000),
        reserve_bytes=t.integer("reserve_bytes", 4 * 1024 * 1024, min=0, max=1 << 30),
    )
    t.done()
    return s


_ACTIVE_LEVEL: dict[tuple[str, str], Level] = {
    # A normally-open contact closes to the rail opposite the pull when pressed;
    # a normally-closed one opens, letting the pull win.
    ("up", "NO"): "low",
    ("up", "NC"): "high",
    ("down", "NO"): "high",
    ("down", "NC"): "low",
}


def _parse_inputs(root: _Table, gpio: GpioSettings, modbus_tables: list[_Table] | None = None,
                  cameras: tuple[CameraSettings, ...] = ()) -> tuple[InputSettings, ...]:
    """The GPIO inputs; tables with a `modbus` key go to `modbus_tables` (config_modbus)."""
    tables = root.array_of_tables("inputs")
    if not tables:
        raise ConfigError(root.path, "inputs", "missing: configure at least one [[inputs]]")
    result: list[InputSettings] = []
    ids: dict[str, str] = {}
    pins: dict[int, str] = {}
    for t in tables:
        if "modbus" in t.data and modbus_tables is not None:
            modbus_tables.append(t)
            continue
        t.expect("id", "name", "location", "kind", "gpio", "contact", "pull", "active_level",
                 "debounce_ms", "cameras")
        point_id = t.text("id", pattern=_POINT_ID, required=True)
        if point_id in ids:
            raise t.error("id", f"{point_id!r} is already used by {ids[point_id]}")
        ids[point_id] = t.prefix
        kind: InputKind = t.choice("kind", ("panic", "tamper", "input"))
        if "gpio" not in t.data:
            raise t.error("gpio", "missing: say where the input is wired, gpio = N (a BCM pin)"
                          " or modbus = { device = \"io1\", table = \"di\", address = 0 }")
        pin = t.integer("gpio", None, min=-(1 << 31), max=1 << 31)
        if pin not in _GPIO_PINS:
            raise t.error("gpio", f"pin {pin} is not a usable GPIO: use a BCM number from 2 to"
                          " 27 (GPIO17 is physical pin 11)")
        if pin in pins:
            raise t.error("gpio", f"GPIO{pin} is already used by {pins[pin]}")
        pins[pin] = t.prefix
        contact: Contact = t.choice("contact", ("NO", "NC"), "NO")
        pull: Pull = t.choice("pull", ("up", "down", "off"), "up")
        if pin in _FIXED_PULL_UP and pull != "up":
            raise t.error("pull", f"GPIO{pin} has a fixed pull-up on the board: use pull = \"up\"")
        active_level: Level
        if pull == "off":
            active_level = t.choice("active_level", ("low", "high"))
        else:
            derived = _ACTIVE_LEVEL[(pull, contact)]
            active_level = t.choice("active_level", ("low", "high"), derived)
            if active_level != derived:
                raise t.error("active_level", f"{active_level!r} contradicts pull = {pull!r} with"
                              f" contact = {contact!r} (that wiring is active {derived}); leave"
                              " active_level out")
        result.append(InputSettings(
            id=point_id,
            name=t.text("name", point_id),
            location=t.opt_str("location") or "",
            kind=kind,
            gpio=pin,
            contact=contact,
            pull=pull,
            active_level=active_level,
            debounce_ms=t.integer("debounce_ms", gpio.debounce_ms, min=0, max=5000),
            cameras=_camera_refs(t, cameras),
        ))
        t.done()
    for cam_t, cam in zip(root.array_of_tables("cameras"), cameras, strict=True):
        if cam.id in ids:
            raise cam_t.error("id", f"{cam.id!r} is already used by {ids[cam.id]}: a camera's"
                              " id names its fault events, so it must differ from every input's")
    return tuple(result)


# -- cameras -------------------------------------------------------------------------------

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


def _parse_cameras(root: _Table) -> tuple[CameraSettings, ...]:
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
        cam_id = t.text("id", pattern=_POINT_ID, required=True)
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
            name=t.text("name", cam_id),
            location=t.opt_str("location") or "",
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


def _camera_http_url(t: _Table) -> str:
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


def _check_camera_url(t: _Table, url: str, schemes: tuple[str, ...]) -> None:
    from urllib.parse import urlsplit

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


def _credentials(t: _Table) -> tuple[str | None, str | None]:
    """username with password or password_file (read here, never logged)."""
    username = t.opt_str("username")
    password = t.opt_str("password")
    password_file = t.opt_path("password_file")
    if password is not None and password_file is not None:
        raise t.error("password_file", "give password or password_file, not both")
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise t.error("password_file", f"cannot read {password_file}: {exc.strerror}"
                          ) from exc
    if password is not None and username is None:
        raise t.error("username", "missing: a password needs a username")
    return username, password


def _camera_credentials(t: _Table) -> tuple[str | None, str | None]:
    username, password = _credentials(t)
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


def _camera_refs(t: _Table, cameras: tuple[CameraSettings, ...]) -> tuple[str, ...]:
    """The `cameras = [...]` of an input: ids of configured cameras, each once."""
    value = t._get("cameras", False)
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

"""The whole config: `load_config` reads the TOML file, `parse_config` has every section
read its table, and `Config` holds the result.

The sections are read in the order their references need: cameras before the
inputs that name them, GPIO inputs before Modbus ones (ids must all differ),
inputs and Modbus modules before the outputs and links that use them, and the
police tables' output and input ids last.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config._fields import TomlTable
from gateway.config.broker import BrokerSettings, parse_broker
from gateway.config.cameras import CameraSettings, parse_cameras
from gateway.config.clock import ClockSettings, parse_clock
from gateway.config.gateway import GatewaySettings, parse_gateway
from gateway.config.health import HealthSettings, parse_health
from gateway.config.inputs import GpioSettings, InputSettings, parse_gpio, parse_inputs
from gateway.config.inspection import InspectionSettings, parse_inspection
from gateway.config.modbus import ModbusSettings, parse_modbus
from gateway.config.outputs import LinkSettings, OutputSettings, parse_outputs
from gateway.config.overrides import apply_overrides
from gateway.config.paths import PathSettings, parse_paths
from gateway.config.police import (
    CommandSettings,
    EscalationSettings,
    check_targets,
    parse_commands,
    parse_escalation,
)
from gateway.config.store import StoreSettings, parse_store
from gateway.errors import ConfigError

DEFAULT_PATH = Path("/etc/alarmgw/config.toml")

_SECTIONS = ("gateway", "broker", "store", "clock", "health", "gpio", "inputs", "modbus",
             "outputs", "links", "commands", "escalation", "cameras", "inspection", "paths")


@dataclass(frozen=True)
class Config:
    """A validated config: the settings of every section, and the file they came from."""

    path: Path
    """The config file, as given (relative paths in it are relative to its directory)."""
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
    inspection: InspectionSettings = field(default_factory=InspectionSettings)
    """Inspection windows and the maintenance record ([inspection], every key optional)."""
    paths: PathSettings = field(default_factory=PathSettings)
    """The alarm transmission paths: MQTT, and SIA DC-09 to a receiving centre ([paths])."""

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
    root = TomlTable(path, "", raw)
    root.expect(*_SECTIONS)
    gateway = parse_gateway(root)
    broker = parse_broker(root, gateway)
    store = parse_store(root)
    clock = parse_clock(root)
    health = parse_health(root)
    gpio = parse_gpio(root)
    cameras = parse_cameras(root)
    modbus_tables: list[TomlTable] = []
    inputs = parse_inputs(root, gpio, modbus_tables, cameras)
    taken = {i.id: f"inputs ({i.id})" for i in inputs}
    modbus = parse_modbus(root, modbus_tables, taken, cameras)
    outputs, links = parse_outputs(root, inputs, modbus, taken)
    commands = parse_commands(root, test_broker=broker.tls is None)
    escalation = parse_escalation(root)
    check_targets(path, commands, escalation,
                  point_ids=[i.id for i in inputs] + [p.id for p in modbus.points],
                  output_ids=[o.id for o in outputs])
    inspection = parse_inspection(root)
    points = [(i.id, i.kind) for i in inputs] + [(p.id, p.kind) for p in modbus.points]
    paths = parse_paths(root, [pid for pid, _ in points],
                        [pid for pid, kind in points if kind == "panic"], health.interval_s)
    root.done()
    return Config(path=path, gateway=gateway, broker=broker, store=store, clock=clock,
                  health=health, gpio=gpio, inputs=inputs, modbus=modbus, outputs=outputs,
                  links=links, commands=commands, escalation=escalation, cameras=cameras,
                  inspection=inspection, paths=paths)

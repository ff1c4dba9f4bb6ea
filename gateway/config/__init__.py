"""The configuration: one TOML file, validated on load into frozen dataclasses.

Nothing half-configured ever starts: `load_config` either returns a complete
`Config` or raises `ConfigError` naming the file, the dotted key and what is
wrong with it ("/etc/alarmgw/config.toml: inputs[2].gpio: pin 40 does not
exist ..."). Unknown keys are errors too, because a mistyped key that is
silently ignored is a button that silently does not work; the message names the
closest known key.

This module is the package's door: import from `gateway.config`. Behind it, one
module per section of the file, each owning its dataclasses and its parser:

    gateway     [gateway]: site, gateway id, state and runtime directories
    broker      [broker], [broker.tls]: the uplink, TLS files and credentials
    store       [store]: the outbox's budget
    clock       [clock]: how wall-clock sync is known
    health      [health]: the heartbeat
    inputs      [gpio] and the [[inputs]] on GPIO pins
    cameras     [[cameras]]
    modbus      [modbus], its buses and modules, the [[inputs]] on them, the poll plan
    outputs     [[outputs]] and [[links]]
    police      [commands] and [escalation]
    inspection  [inspection]: test presses' sounder, the age a point may go untested
    paths       [paths]: the transmission paths, the DC-09 path to a receiving centre,
                the EN 50136-1 category and its supervision intervals
    overrides   `--set KEY=VALUE`
    loader      `Config`, `load_config`, `parse_config`: every section in order
    _fields     what the sections share: the table reader, id patterns, key-file rules

A section imports `_fields` and the sections it refers to, in one direction only
(outputs -> modbus -> inputs -> cameras; broker -> gateway; clock -> gateway.clock),
never this module.
"""

from __future__ import annotations

from gateway.clock import ClockSource
from gateway.config.broker import BrokerSettings, TlsSettings
from gateway.config.cameras import CAMERA_PRESETS, CameraDriver, CameraSettings
from gateway.config.clock import ClockSettings
from gateway.config.gateway import GatewaySettings
from gateway.config.health import HealthSettings
from gateway.config.inputs import (
    Contact,
    GpioBackend,
    GpioSettings,
    InputKind,
    InputSettings,
    Level,
    Pull,
)
from gateway.config.inspection import InspectionSettings
from gateway.config.loader import DEFAULT_PATH, Config, load_config, parse_config
from gateway.config.modbus import ModbusSettings, parse_modbus
from gateway.config.outputs import LinkSettings, OutputSettings, parse_outputs
from gateway.config.overrides import apply_overrides, parse_override
from gateway.config.paths import Dc09Settings, PathSettings
from gateway.config.police import CommandSettings, EscalationSettings
from gateway.config.store import StoreSettings

__all__ = [
    "CAMERA_PRESETS",
    "DEFAULT_PATH",
    "BrokerSettings",
    "CameraDriver",
    "CameraSettings",
    "ClockSettings",
    "ClockSource",
    "CommandSettings",
    "Config",
    "Contact",
    "Dc09Settings",
    "EscalationSettings",
    "GatewaySettings",
    "GpioBackend",
    "GpioSettings",
    "HealthSettings",
    "InputKind",
    "InputSettings",
    "InspectionSettings",
    "Level",
    "LinkSettings",
    "ModbusSettings",
    "OutputSettings",
    "PathSettings",
    "Pull",
    "StoreSettings",
    "TlsSettings",
    "apply_overrides",
    "load_config",
    "parse_config",
    "parse_modbus",
    "parse_outputs",
    "parse_override",
]

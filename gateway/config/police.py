"""The [commands] and [escalation] tables: what the police platform may ask, and what the
gateway does by itself when the police do not answer.

    [commands]            signed platform commands (ack = 接警确认, drill, ping, ...)
    key_file = "/etc/alarmgw/command.key"     HMAC-SHA256 key, hex, mode 0600
    ack_lamp = "ack-lamp"                     the output a platform ack lights

    [escalation]          an alarm not acknowledged in time, or not delivered
    ack_timeout_s = 60
    sounder = "sounder"                       an output id
    sms_to = ["+8613800000000"]
    [escalation.modem]
    port = "/dev/ttyUSB2"

Both name outputs and inputs; `check_targets` checks those ids once every
section is read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config._fields import TomlTable, suggest, unprotected_key_file
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

_PHONE = re.compile(r"^\+?[0-9]{3,20}$")


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


def parse_commands(root: TomlTable, *, test_broker: bool = False) -> CommandSettings | None:
    """Read [commands]; None when there is no such table (no commands are subscribed to).

    `test_broker`: the uplink is a plaintext broker on loopback, which only a test or demo
    setup has (plaintext is refused for any other host). There a key file that others may
    read is a warning, not a refusal: the demo's key is public in the repository, and git
    checks files out readable by all.
    """
    t = root.table("commands")
    if t is None:
        return None
    t.expect("key_file", "require_signature", "max_age_s", "max_future_s", "ack_lamp",
             "ack_lamps", "ack_lamp_s")
    require = t.flag("require_signature", True)
    key_file = t.opt_path("key_file")
    key: bytes | None = None
    if key_file is not None:
        if (problem := unprotected_key_file(key_file)) is not None:
            if not test_broker:
                raise t.error("key_file", problem)
            log.warning("%s: %s: %s (allowed only with a plaintext test broker on loopback)",
                        t.path, t.key("key_file"), problem)
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


def parse_escalation(root: TomlTable) -> EscalationSettings | None:
    """Read [escalation]; None when there is no such table (alarms are never escalated)."""
    t = root.table("escalation")
    if t is None:
        return None
    t.expect("ack_timeout_s", "uplink_down_s", "sounder", "sounder_s", "sms_to", "modem")
    sms_to: list[str] = []
    raw = t.data.get("sms_to", [])
    t.seen.add("sms_to")
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise t.error("sms_to", "must be an array of phone numbers, e.g. [\"+8613800000000\"]")
    for n in raw:
        if not _PHONE.fullmatch(n):
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


def check_targets(path: Path, commands: CommandSettings | None,
                  escalation: EscalationSettings | None, point_ids: Collection[str],
                  output_ids: Collection[str]) -> None:
    """Refuse lamps and sounders that name no configured output, and ack lamps of inputs
    that do not exist. `point_ids`: every input's id (GPIO and Modbus)."""
    if commands is not None:
        known = ", ".join(sorted(output_ids)) or "none configured"
        if commands.ack_lamp is not None and commands.ack_lamp not in output_ids:
            raise ConfigError(path, "commands.ack_lamp", f"{commands.ack_lamp!r} is not an output"
                              f" id (outputs: {known})")
        for point_id, lamp in commands.ack_lamps:
            if point_id not in point_ids:
                raise ConfigError(path, f"commands.ack_lamps.{point_id}",
                                  "not an input id" + suggest(point_id, point_ids))
            if lamp not in output_ids:
                raise ConfigError(path, f"commands.ack_lamps.{point_id}", f"{lamp!r} is not an"
                                  f" output id (outputs: {known})")
    if escalation is not None and escalation.sounder is not None and \
            escalation.sounder not in output_ids:
        known = ", ".join(output_ids) or "none configured"
        raise ConfigError(path, "escalation.sounder", f"{escalation.sounder!r} is not an output"
                          f" id (outputs: {known})")

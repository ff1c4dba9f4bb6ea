"""The [paths] table: the alarm transmission paths, and the second one, SIA DC-09 with
Contact ID to an alarm-receiving centre (ARC).

    [paths]
    ats = "DP3"                EN 50136-1 category of the alarm transmission system: sets
                               each path's supervision interval (table below); SP1-SP6
                               name a single path's category, DP1-DP4 a dual path's
    path_fail_s = 90           a path that cannot deliver this long is a fault
                               (point path-mqtt / path-dc09), sent on the other path

    [paths.mqtt]
    role = "primary"           primary or secondary; MQTT carries every event

    [paths.dc09]               absent: MQTT is the only path
    role = "secondary"
    host = "arc.example.cn"
    port = 12128
    transport = "tcp"          tcp or udp
    account = "1234"           3-16 hex digits, the account the ARC knows this site by
    receiver = "1"             the receiver number (R), 1-6 hex digits; optional
    line = "1"                 the line number (L), 1-6 hex digits
    key_file = "/etc/alarmgw/dc09.key"   the AES key: 16, 24 or 32 hex characters
                               (AES-128/192/256, used as those characters' bytes, as the
                               receivers do); no key: messages go unencrypted
    carries = ["alarms", "faults", "restores", "tests"]   alarms always
    supervision_s = 45         NULL message interval; default from `ats` and the role
    supervision = "null"       null (DC-09 NULL messages) or "602" (Contact ID periodic test)
    ack_timeout_s = 5          how long one message waits for the receiver's ACK
    retry_max_s = 30           a failing path retries after 1 s, doubling up to this
    partition = 1              the Contact ID partition (group), 1-99
    zones = { gate-panic = 1 } the Contact ID zone of each point, 1-999; the default is
                               the point's place among the configured inputs (1, 2, ...)
    silent = ["office-panic"]  panic inputs reported as silent panic (122)
    duress = []                panic inputs reported as duress (121)
    codes = { box-tamper = 137 }   a point's own Contact ID code in place of the usual one

The reporting times are those of EN 50136-1:2012 as alarmgw applies them (docs/protocol/
dc09.md has the table and what to check against the edition an ARC certifies to).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gateway.config._fields import TomlTable, type_name, unprotected_key_file
from gateway.errors import ConfigError

Role = Literal["primary", "secondary"]
Transport = Literal["tcp", "udp"]
Carry = Literal["alarms", "faults", "restores", "tests"]
CARRIES: tuple[Carry, ...] = ("alarms", "faults", "restores", "tests")
ATS_CATEGORIES = ("SP1", "SP2", "SP3", "SP4", "SP5", "SP6", "DP1", "DP2", "DP3", "DP4")

_HOUR = 3600.0
#: Single-path categories: the reporting time of the path, in seconds.
SP_REPORTING_S: dict[str, float] = {
    "SP1": 32 * 24 * _HOUR, "SP2": 25 * _HOUR, "SP3": 30 * 60.0, "SP4": 180.0,
    "SP5": 90.0, "SP6": 20.0,
}
#: Dual-path categories: (primary path, secondary path while the primary works), in s.
#: When the primary has failed, the secondary is supervised at the primary's time.
DP_REPORTING_S: dict[str, tuple[float, float]] = {
    "DP1": (25 * _HOUR, 25 * _HOUR), "DP2": (30 * 60.0, 25 * _HOUR),
    "DP3": (180.0, 25 * _HOUR), "DP4": (90.0, 180.0),
}
#: A path is polled at half its reporting time: one lost poll and its retries still
#: reach the receiver before the receiver would report the path failed.
POLLS_PER_REPORTING_TIME = 2

_HEX = re.compile(r"^[0-9A-Fa-f]+$")


def reporting_time(ats: str, role: Role) -> float:
    """The reporting time, in seconds, category `ats` asks of a path of `role`."""
    if ats in SP_REPORTING_S:
        return SP_REPORTING_S[ats]
    primary, secondary = DP_REPORTING_S[ats]
    return primary if role == "primary" else secondary


def category_met(intervals: dict[Role, float], dual: bool,
                 failover_s: float | None = None) -> str | None:
    """The strictest category whose reporting times polls at `intervals` (role -> s) meet,
    or None when none is. A poll interval meets a reporting time it fits into
    POLLS_PER_REPORTING_TIME times. `failover_s` (dual only): the secondary's interval
    while the primary is in fault, which must meet the primary's reporting time (None:
    the secondary keeps `intervals["secondary"]`)."""
    def meets(interval: float, reporting: float) -> bool:
        return interval * POLLS_PER_REPORTING_TIME <= reporting + 1e-9

    if dual:
        alone = intervals["secondary"] if failover_s is None else failover_s
        for name in ("DP4", "DP3", "DP2", "DP1"):
            primary, secondary = DP_REPORTING_S[name]
            if (meets(intervals["primary"], primary) and meets(intervals["secondary"], secondary)
                    and meets(alone, primary)):
                return name
        return None
    interval = min(intervals.values())
    for name in ("SP6", "SP5", "SP4", "SP3", "SP2", "SP1"):
        if meets(interval, SP_REPORTING_S[name]):
            return name
    return None


@dataclass(frozen=True)
class Dc09Settings:
    """The DC-09 path to an alarm-receiving centre."""

    host: str
    port: int
    transport: Transport
    account: str
    """3-16 hex digits, upper case."""
    line: str
    receiver: str | None
    key: bytes | None = field(repr=False, default=None)
    """The AES key (16, 24 or 32 bytes), None for unencrypted messages. Never logged."""
    key_file: Path | None = None
    role: Role = "secondary"
    carries: frozenset[Carry] = frozenset(CARRIES)
    supervision_s: float = 45.0
    """Interval of supervision messages while the other path works, in seconds."""
    supervision_failover_s: float = 45.0
    """Interval while the other path is in fault (it then carries the category alone)."""
    supervision: Literal["null", "602"] = "null"
    ack_timeout_s: float = 5.0
    retry_max_s: float = 30.0
    """A failing path retries after 1 s, then doubling up to this, in seconds."""
    partition: int = 1
    zones: dict[str, int] = field(default_factory=dict)
    """Contact ID zone of every point (inputs and Modbus points), 1-999."""
    silent: frozenset[str] = frozenset()
    duress: frozenset[str] = frozenset()
    codes: dict[str, int] = field(default_factory=dict)
    """A point's Contact ID code in place of the one its kind has (gateway.dc09.contactid)."""

    @property
    def endpoint(self) -> str:
        return f"{self.transport}://{self.host}:{self.port}"


@dataclass(frozen=True)
class PathSettings:
    """The transmission paths: MQTT always, DC-09 when configured."""

    ats: str | None = None
    """The EN 50136-1 category asked for; None: none named (intervals as configured)."""
    path_fail_s: float = 90.0
    mqtt_role: Role = "primary"
    dc09: Dc09Settings | None = None

    @property
    def dual(self) -> bool:
        return self.dc09 is not None


def parse_paths(root: TomlTable, point_ids: list[str], panic_ids: list[str],
                heartbeat_s: float) -> PathSettings:
    """Read the optional [paths] table. `point_ids`: every input and Modbus point, in
    config order (their default zones); `panic_ids`: the panic inputs (silent and duress
    name them); `heartbeat_s`: the MQTT path's supervision (the health heartbeat)."""
    t = root.table("paths")
    if t is None:
        return PathSettings()
    t.expect("ats", "path_fail_s", "mqtt", "dc09")
    given = t.data.get("ats")
    if isinstance(given, str) and given not in ATS_CATEGORIES and given.upper() in ATS_CATEGORIES:
        raise t.error("ats", f"{given!r} is not one of {', '.join(ATS_CATEGORIES)};"
                      f" did you mean {given.upper()}?")
    ats = t.choice("ats", ATS_CATEGORIES) if "ats" in t.data else None
    path_fail_s = t.number("path_fail_s", 90.0, min=5.0, max=7 * 24 * _HOUR)
    mqtt_t = t.table("mqtt")
    mqtt_role: Role = "primary"
    if mqtt_t is not None:
        mqtt_t.expect("role")
        mqtt_role = mqtt_t.choice("role", ("primary", "secondary"), "primary")
        mqtt_t.done()
    dc09_t = t.table("dc09")
    dc09 = None
    if dc09_t is not None:
        default_role: Role = "secondary" if mqtt_role == "primary" else "primary"
        dc09 = _parse_dc09(dc09_t, ats, default_role, point_ids, panic_ids)
        if dc09.role == mqtt_role:
            raise dc09_t.error("role", f"is {dc09.role!r}, as is paths.mqtt.role: one path is"
                               " the primary, the other the secondary")
    elif mqtt_role == "secondary":
        raise t.error("mqtt", "role = \"secondary\", but MQTT is the only path: a secondary"
                      " needs a primary; configure [paths.dc09] or leave the role out")
    elif ats is not None and ats.startswith("DP"):
        raise t.error("ats", f"{ats} is a dual-path category: configure the second path"
                      " in [paths.dc09], or name a single-path category (SP1-SP6)")
    if ats is not None:
        need = reporting_time(ats, mqtt_role)
        if heartbeat_s * POLLS_PER_REPORTING_TIME > need:
            raise t.error("ats", f"{ats} asks the MQTT path ({mqtt_role}) to be reported within"
                          f" {need:g} s, but its heartbeat (health.interval_s) is every"
                          f" {heartbeat_s:g} s: set health.interval_s to at most"
                          f" {need / POLLS_PER_REPORTING_TIME:g}")
    t.done()
    return PathSettings(ats=ats, path_fail_s=path_fail_s, mqtt_role=mqtt_role, dc09=dc09)


def _supervision(t: TomlTable) -> Literal["null", "602"]:
    value = t.raw("supervision", False)
    if value == 602 and not isinstance(value, bool):
        return "602"  # supervision = 602 written without quotes: the code, as meant
    return t.choice("supervision", ("null", "602"), "null")


def _hex_text(t: TomlTable, name: str, lo: int, hi: int, *, default: str | None = None,
              what: str = "") -> str:
    value = t.raw(name, default is None)
    if value is None:
        assert default is not None
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # account = 1234 written without quotes
    if not isinstance(value, str):
        raise t.error(name, f"must be a string of hex digits, not {type_name(value)}")
    if not (_HEX.fullmatch(value) and lo <= len(value) <= hi):
        raise t.error(name, f"{value!r} is not {lo}-{hi} hex digits (0-9, A-F){what}")
    return value.upper()


def _parse_dc09(t: TomlTable, ats: str | None, default_role: Role, point_ids: list[str],
                panic_ids: list[str]) -> Dc09Settings:
    # Before `expect`, which would call `key` an unknown key and never say where keys go.
    if "key" in t.data:
        raise t.error("key", "put the key in a file readable by the service only and name it"
                      " with key_file (a key in the config would be shown by every copy of it)")
    t.expect("role", "host", "port", "transport", "account", "receiver", "line", "key_file",
             "carries", "supervision_s", "supervision", "ack_timeout_s", "retry_max_s",
             "partition", "zones", "silent", "duress", "codes", related=("key",))
    role: Role = t.choice("role", ("primary", "secondary"), default_role)
    host = t.text("host", required=True)
    port = t.integer("port", None, min=1, max=65535)
    transport: Transport = t.choice("transport", ("tcp", "udp"), "tcp")
    account = _hex_text(t, "account", 3, 16, what=": the account number the receiving"
                        " centre gave this site")
    receiver = (_hex_text(t, "receiver", 1, 6, what=" (the receiver number, R)")
                if "receiver" in t.data else None)
    t.seen.add("receiver")
    line = _hex_text(t, "line", 1, 6, default="0", what=" (the line number, L)")
    key_file = t.opt_path("key_file")
    key = _read_key(t, key_file) if key_file is not None else None
    carries = _carries(t)
    if ats is not None:
        reporting = reporting_time(ats, role)
        default_interval = reporting / POLLS_PER_REPORTING_TIME
        failover = (DP_REPORTING_S[ats][0] if ats in DP_REPORTING_S else reporting
                    ) / POLLS_PER_REPORTING_TIME
    else:
        default_interval = failover = 3600.0
    supervision_s = t.number("supervision_s", default_interval, min=5.0, max=32 * 24 * _HOUR)
    if ats is not None and supervision_s * POLLS_PER_REPORTING_TIME > reporting + 1e-9:
        raise t.error("supervision_s", f"{supervision_s:g} s does not meet {ats}: a {role}"
                      f" path must be reported within {reporting:g} s, so poll at most every"
                      f" {reporting / POLLS_PER_REPORTING_TIME:g} s (or leave supervision_s out)")
    zones = _zones(t, point_ids)
    silent = _point_set(t, "silent", panic_ids)
    duress = _point_set(t, "duress", panic_ids)
    if both := silent & duress:
        raise t.error("duress", f"{sorted(both)} are named in silent too: a panic input is"
                      " silent (122) or duress (121), not both")
    s = Dc09Settings(
        host=host, port=port, transport=transport, account=account, line=line,
        receiver=receiver, key=key, key_file=key_file, role=role, carries=carries,
        supervision_s=supervision_s, supervision_failover_s=min(supervision_s, failover),
        supervision=_supervision(t),
        ack_timeout_s=t.number("ack_timeout_s", 5.0, min=0.2, max=60.0),
        retry_max_s=t.number("retry_max_s", 30.0, min=1.0, max=600.0),
        partition=t.integer("partition", 1, min=1, max=99),
        zones=zones, silent=silent, duress=duress, codes=_codes(t, point_ids),
    )
    t.done()
    return s


def _read_key(t: TomlTable, path: Path) -> bytes:
    problem = unprotected_key_file(path)
    if problem is not None:
        raise t.error("key_file", problem)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise t.error("key_file", f"{path} does not exist: write the receiving centre's key"
                      " there (16, 24 or 32 hex characters)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise t.error("key_file", f"cannot read {path}: {exc}") from exc
    if not (_HEX.fullmatch(text) and len(text) in (16, 24, 32)):
        # The key itself is never repeated in a message.
        raise t.error("key_file", f"{path} must hold 16, 24 or 32 hex characters (AES-128,"
                      f" -192 or -256), found {len(text)} characters"
                      + ("" if not text or _HEX.fullmatch(text)
                         else " that are not all hex digits"))
    return text.encode("ascii")


def _carries(t: TomlTable) -> frozenset[Carry]:
    value = t.raw("carries", False)
    if value is None:
        return frozenset(CARRIES)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise t.error("carries", f"must be a list of {', '.join(CARRIES)}")
    for v in value:
        if v not in CARRIES:
            raise t.error("carries", f"{v!r} is not one of {', '.join(CARRIES)}")
    if "alarms" not in value:
        raise t.error("carries", "must include \"alarms\": every path carries the alarms")
    return frozenset(v for v in CARRIES if v in value)


def _zones(t: TomlTable, point_ids: list[str]) -> dict[str, int]:
    zones = {pid: n for n, pid in enumerate(point_ids, start=1) if n <= 999}
    given = t.raw("zones", False)
    if given is None:
        return zones
    if not isinstance(given, dict):
        raise t.error("zones", "must be a table of point id = zone number, e.g."
                      " zones = { gate-panic = 1 }")
    for pid, zone in given.items():
        if pid not in point_ids:
            raise ConfigError(t.path, t.key(f"zones.{pid}"), f"no input {pid!r} is configured"
                              f" (inputs: {', '.join(point_ids) or 'none'})")
        if isinstance(zone, bool) or not isinstance(zone, int) or not 1 <= zone <= 999:
            raise ConfigError(t.path, t.key(f"zones.{pid}"), f"{zone!r} is not a zone number"
                              " from 1 to 999 (Contact ID zones have 3 digits)")
        zones[pid] = zone
    taken: dict[int, str] = {}
    for pid in point_ids:
        zone = zones.get(pid)
        if zone is None:
            raise ConfigError(t.path, t.key(f"zones.{pid}"), "missing: past the 999th point"
                              " every zone must be given")
        if zone in taken:
            raise ConfigError(t.path, t.key(f"zones.{pid}"), f"zone {zone} is also"
                              f" {taken[zone]}'s: the receiving centre could not tell them apart")
        taken[zone] = pid
    return zones


def _codes(t: TomlTable, point_ids: list[str]) -> dict[str, int]:
    given = t.raw("codes", False)
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise t.error("codes", "must be a table of point id = Contact ID code, e.g."
                      " codes = { box-tamper = 137 }")
    for pid, code in given.items():
        if pid not in point_ids:
            raise ConfigError(t.path, t.key(f"codes.{pid}"), f"no input {pid!r} is configured")
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 999:
            raise ConfigError(t.path, t.key(f"codes.{pid}"), f"{code!r} is not a Contact ID"
                              " event code (three digits, 100-999)")
    return dict(given)


def _point_set(t: TomlTable, name: str, panic_ids: list[str]) -> frozenset[str]:
    value = t.raw(name, False)
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise t.error(name, "must be a list of panic input ids")
    for v in value:
        if v not in panic_ids:
            raise t.error(name, f"{v!r} is not a panic input (panic inputs:"
                          f" {', '.join(panic_ids) or 'none'})")
    return frozenset(value)

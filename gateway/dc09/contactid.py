"""Ademco Contact ID for alarmgw's events: what a receiving centre is told of each one.

A Contact ID event is four fields: the qualifier (1 new event or opening, 3 restore or
closing, 6 a status report), a three-digit event code, the partition (two digits) and the
zone (three digits), written `QEEE GG CCC` ("1120 01 003": a panic alarm, partition 1,
zone 3). The table below is the one docs/protocol/dc09.md documents:

    alarmgw event                      Contact ID                 zone
    alarm (panic input)                1 120 panic                the input's
      the input in `silent`            1 122 silent panic
      the input in `duress`            1 121 duress
    alarm (another kind of input)      1 150 24-hour auxiliary
    restore                            3 and the alarm's code
    tamper / tamper_cleared            1 144 / 3 144 sensor tamper
    fault / fault_cleared of           1 / 3 and:
      a point (its input)                380 sensor trouble       the point's
      a Modbus module, camera,           330 system peripheral    000
      output or modem                        trouble
      path-mqtt, path-dc09               354 failure to communicate
      the police platform                350 communication trouble
      the clock                          626 time/date inaccurate
      the state directory's disk         300 system trouble
    test (alarmgw test-alarm)          1 601 manual test          the point's
    drill                              1 601 manual test          the point's
    test press under inspection        1 601 manual test          the point's (its
                                                                  restore: 3 601)
    inspection_started / _ended        1 607 / 3 607 walk test    000
    supervision (supervision = "602")  1 602 periodic test        000

`codes` in the config replaces the code of a point's alarm (e.g. 137 for the gateway
cabinet's own tamper switch, 301 for an input wired to a mains-failure relay). Events a
receiving centre has no code for (escalation, inspection_report, notice) are not sent on
this path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config.paths import Carry, Dc09Settings

#: Event types by what the [paths.dc09] `carries` key names them.
CARRIED_TYPES: dict[Carry, frozenset[str]] = {
    "alarms": frozenset({"alarm", "tamper"}),
    "restores": frozenset({"restore", "tamper_cleared"}),
    "faults": frozenset({"fault", "fault_cleared"}),
    "tests": frozenset({"test", "drill", "inspection_started", "inspection_ended"}),
}
NEW, RESTORE = 1, 3

PANIC, SILENT_PANIC, DURESS, AUXILIARY = 120, 122, 121, 150
SENSOR_TAMPER, SENSOR_TROUBLE, PERIPHERAL_TROUBLE = 144, 380, 330
FAILURE_TO_COMMUNICATE, COMMUNICATION_TROUBLE = 354, 350
TIME_INACCURATE, SYSTEM_TROUBLE = 626, 300
MANUAL_TEST, PERIODIC_TEST, WALK_TEST = 601, 602, 607

#: Faults of alarmgw's own parts, by the fault's point id.
_SYSTEM_FAULTS = {
    "path-mqtt": FAILURE_TO_COMMUNICATE,
    "path-dc09": FAILURE_TO_COMMUNICATE,
    "platform": COMMUNICATION_TROUBLE,
    "uplink": FAILURE_TO_COMMUNICATE,
    "clock": TIME_INACCURATE,
    "disk": SYSTEM_TROUBLE,
}


def carried_types(s: Dc09Settings) -> frozenset[str]:
    """The event types the path carries: alarms always, the rest as `carries` says."""
    types: set[str] = set(CARRIED_TYPES["alarms"])
    for carry in s.carries:
        types |= CARRIED_TYPES[carry]
    return frozenset(types)


@dataclass(frozen=True)
class ContactId:
    """One Contact ID event."""

    qualifier: int
    code: int
    partition: int
    zone: int

    def __post_init__(self) -> None:
        if self.qualifier not in (1, 3, 6):
            raise ValueError(f"Contact ID qualifier {self.qualifier} is not 1, 3 or 6")
        if not (100 <= self.code <= 999 and 0 <= self.partition <= 99 and 0 <= self.zone <= 999):
            raise ValueError(f"not a Contact ID event: code {self.code}, partition"
                             f" {self.partition}, zone {self.zone}")

    def text(self) -> str:
        """`QEEE GG CCC`, as it goes in the message."""
        return f"{self.qualifier}{self.code:03d} {self.partition:02d} {self.zone:03d}"

    def data(self, account: str) -> str:
        """The message's data block (between its brackets): `#ACCT|QEEE GG CCC`."""
        return f"#{account}|{self.text()}"


def for_event(doc: dict[str, Any], s: Dc09Settings) -> ContactId | None:
    """The Contact ID event of event document `doc`, or None when this path does not carry
    it (its type is not in `carries`, or no receiving centre has a code for it)."""
    etype = doc.get("type")
    if not isinstance(etype, str) or etype not in carried_types(s):
        return None
    point = doc.get("point") or {}
    pid = str(point.get("id", ""))
    kind = point.get("kind")
    detail = doc.get("detail") or {}
    zone = s.zones.get(pid, 0)
    overrides = s.codes

    def make(qualifier: int, code: int, zone: int = zone) -> ContactId:
        return ContactId(qualifier, code, s.partition, zone)

    if etype in ("alarm", "restore"):
        qualifier = NEW if etype == "alarm" else RESTORE
        if etype == "restore" and detail.get("inspection"):
            return make(RESTORE, MANUAL_TEST)
        return make(qualifier, overrides.get(pid, _alarm_code(pid, kind, s)))
    if etype in ("tamper", "tamper_cleared"):
        return make(NEW if etype == "tamper" else RESTORE, overrides.get(pid, SENSOR_TAMPER))
    if etype in ("fault", "fault_cleared"):
        qualifier = NEW if etype == "fault" else RESTORE
        if pid in _SYSTEM_FAULTS:
            return make(qualifier, _SYSTEM_FAULTS[pid], 0)
        if pid in s.zones:
            return make(qualifier, SENSOR_TROUBLE)
        return make(qualifier, PERIPHERAL_TROUBLE, 0)
    if etype in ("test", "drill"):
        return make(NEW, MANUAL_TEST)
    if etype in ("inspection_started", "inspection_ended"):
        return make(NEW if etype == "inspection_started" else RESTORE, WALK_TEST, 0)
    return None


def _alarm_code(pid: str, kind: object, s: Dc09Settings) -> int:
    if kind != "panic":
        return AUXILIARY
    if pid in s.duress:
        return DURESS
    if pid in s.silent:
        return SILENT_PANIC
    return PANIC


def periodic_test(s: Dc09Settings) -> ContactId:
    """The periodic test report sent as supervision when `supervision = "602"`."""
    return ContactId(NEW, PERIODIC_TEST, s.partition, 0)


def manual_test(s: Dc09Settings, point_id: str) -> ContactId:
    """`alarmgw test-alarm --path dc09`: a manual test of the point, on this path alone."""
    return ContactId(NEW, MANUAL_TEST, s.partition, s.zones.get(point_id, 0))

"""Events: what the gateway detected, as the platform receives it (protocol v1).

An event is built once, with its seq, when it is committed to the outbox;
the stored bytes are what every retry publishes, so `id` and every other
field are stable across retries. The JSON Schema of this document is
`gateway/uplink/schemas/event.schema.json`.

`InputChange` and `FaultChange` are what reaches the engine's door before an event
exists: from a driver (the contract is in `gateway.drivers`), a watch or the uplink.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.store import Lane

PROTOCOL_VERSION = 1

EventType = Literal[
    "alarm", "restore", "tamper", "tamper_cleared", "fault", "fault_cleared", "test", "drill",
    "escalation", "inspection_started", "inspection_ended", "inspection_report", "notice",
]

# Drills and tests take the alarm lane on purpose: a drill that skipped the
# queue an alarm takes would measure nothing. An inspection's start and end take it too:
# the platform must know of the window before the first test press of it arrives, and
# the outbox keeps one lane in commit order.
LANE: dict[str, Lane] = {
    "alarm": Lane.ALARM,
    "tamper": Lane.ALARM,
    "test": Lane.ALARM,
    "drill": Lane.ALARM,
    "inspection_started": Lane.ALARM,
    "inspection_ended": Lane.ALARM,
    "restore": Lane.EVENT,
    "tamper_cleared": Lane.EVENT,
    "fault": Lane.EVENT,
    "fault_cleared": Lane.EVENT,
    "escalation": Lane.EVENT,
    "inspection_report": Lane.EVENT,
    "notice": Lane.EVENT,
}


@dataclass(frozen=True)
class Point:
    """The configured button or device an event is about."""

    id: str
    name: str
    location: str
    kind: str
    """'panic', 'tamper', 'input' for inputs; 'device' for a supervised device or link."""
    source: str = ""
    """Where it is read or reached, e.g. 'gpio:17'."""


@dataclass(frozen=True)
class Occurrence:
    """Something that happened, before it has a seq and an id."""

    type: EventType
    point: Point
    wall_ns: int
    """Wall time of the occurrence, in ns since the epoch (may be unsynced)."""
    mono_ns: int
    """CLOCK_BOOTTIME of the occurrence, in ns."""
    time_synced: bool
    detected_at_startup: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    snapshots: tuple[dict[str, Any], ...] = ()
    """The pictures that will follow the event on the snapshot topic."""


def new_event_id() -> str:
    """A fresh, globally unique event id.

    Random rather than derived from seq: a gateway whose SD card is replaced
    restarts its seq at 1, and its new events must not collide with old ones
    in the platform's de-duplication.
    """
    return str(uuid.uuid4())


def event_document(occ: Occurrence, *, event_id: str, seq: int, site: str, gateway: str,
                   boot_id: str, occurred_at: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "id": event_id,
        "seq": seq,
        "type": occ.type,
        "site": site,
        "gateway": gateway,
        "point": {"id": occ.point.id, "name": occ.point.name, "location": occ.point.location,
                  "kind": occ.point.kind},
        "source": occ.point.source,
        "occurred_at": occurred_at,
        "time_synced": occ.time_synced,
        "mono_ns": occ.mono_ns,
        "boot_id": boot_id,
        "detected_at_startup": occ.detected_at_startup,
        "snapshots": list(occ.snapshots),
    }
    if occ.detail:
        doc["detail"] = occ.detail
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; Chinese point names travel as they are."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class InputChange:
    """A debounced change of one input's state, as a driver reports it."""

    point_id: str
    active: bool
    """True when the input is in its active state (pressed, tampered)."""
    mono_ns: int
    """CLOCK_BOOTTIME when the new level began, in ns."""
    initial: bool = False
    """True for the reading taken when the driver started."""


@dataclass(frozen=True)
class FaultChange:
    """A supervised device failed (`active`) or recovered, as a driver reports it."""

    device_id: str
    """The device's id from the config (becomes the event's point id)."""
    name: str
    """What a person calls it, e.g. 'Modbus unit 3 on bus rs485'."""
    source: str
    """Where it is reached, e.g. 'modbus:rs485/3' or 'camera:gate'."""
    active: bool
    reason: str
    """What is wrong and what to check; empty when it recovered."""
    mono_ns: int
    location: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

"""MQTT protocol v1: topic names and the documents that are not events.

    alarmgw/v1/{site}/{gateway}/event                          up, QoS 1
    alarmgw/v1/{site}/{gateway}/snapshot/{event_id}/{camera}   up, QoS 1, image/jpeg
    alarmgw/v1/{site}/{gateway}/snapshot/{event_id}/{camera}/failed   up, QoS 1, JSON
    alarmgw/v1/{site}/{gateway}/status                         up, QoS 1, retained
    alarmgw/v1/{site}/{gateway}/health                         up, QoS 0, memory only
    alarmgw/v1/{site}/{gateway}/cmd                            down, QoS 1
    alarmgw/v1/{site}/{gateway}/cmd/result                     up, QoS 1

The outbox stores a topic relative to the gateway's root ("event"); the
uplink adds the root when it publishes. Schemas for every payload live in
`gateway/uplink/schemas/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.events import PROTOCOL_VERSION

SCHEMA_DIR = Path(__file__).parent / "schemas"


@dataclass(frozen=True)
class Topics:
    site: str
    gateway: str

    @property
    def root(self) -> str:
        return f"alarmgw/v{PROTOCOL_VERSION}/{self.site}/{self.gateway}"

    def full(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    @property
    def event(self) -> str:
        return self.full("event")

    @property
    def status(self) -> str:
        return self.full("status")

    @property
    def health(self) -> str:
        return self.full("health")

    @property
    def cmd(self) -> str:
        return self.full("cmd")

    @property
    def cmd_result(self) -> str:
        return self.full("cmd/result")


def status_document(*, state: str, version: str, started_at: str, boot_id: str,
                    time_synced: bool, reason: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "state": state,
        "version": version,
        "started_at": started_at,
        "boot_id": boot_id,
        "time_synced": time_synced,
    }
    if reason is not None:
        doc["reason"] = reason
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of a payload: 'event', 'status', 'health' or 'snapshot_failed'."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text("utf-8"))
    return schema


# -- snapshots ----------------------------------------------------------------------------

SnapshotPhase = Literal["pre", "post", "request"]
"""pre: before the alarm (from the ring); post: after it; request: asked for by the
platform's `snapshot` command (the topic's event id is then the command's id)."""


def snapshot_topic(event_id: str, camera: str) -> str:
    """Relative topic of one JPEG of `event_id` from `camera`."""
    return f"snapshot/{event_id}/{camera}"


def snapshot_failed_topic(event_id: str, camera: str) -> str:
    """Relative topic of a `snapshot_failed` record."""
    return f"snapshot/{event_id}/{camera}/failed"


def snapshot_properties(*, event_id: str, camera: str, phase: SnapshotPhase, shot: int,
                        taken_at: str, mono_ns: int, time_synced: bool) -> dict[str, Any]:
    """MQTT 5 PUBLISH properties of one JPEG (stored with the row; see docs/protocol/README.md)."""
    return {
        "ContentType": "image/jpeg",
        "UserProperty": [["event_id", event_id], ["camera", camera], ["phase", phase],
                         ["shot", str(shot)], ["taken_at", taken_at], ["mono_ns", str(mono_ns)],
                         ["time_synced", "true" if time_synced else "false"]],
    }


def snapshot_failed_document(*, event_id: str, camera: str, phase: SnapshotPhase, shot: int,
                             reason: str, error: str, at: str, mono_ns: int,
                             time_synced: bool) -> dict[str, Any]:
    """A picture that was listed in an event's `snapshots` and will not come."""
    return {
        "v": PROTOCOL_VERSION,
        "event_id": event_id,
        "camera": camera,
        "phase": phase,
        "shot": shot,
        "reason": reason,
        "error": error,
        "at": at,
        "mono_ns": mono_ns,
        "time_synced": time_synced,
    }


def json_properties(**user: str) -> dict[str, Any]:
    """Stored PUBLISH properties of a JSON document, with optional user properties."""
    props: dict[str, Any] = {"ContentType": "application/json", "PayloadFormatIndicator": 1}
    if user:
        props["UserProperty"] = [[k, v] for k, v in user.items()]
    return props

"""MQTT protocol v1: topic names and the documents that are not events.

    alarmgw/v1/{site}/{gateway}/event                          up, QoS 1
    alarmgw/v1/{site}/{gateway}/snapshot/{event_id}/{camera}   up, QoS 1, image/jpeg
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
from typing import Any

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
    """The JSON Schema of a payload: 'event', 'status' or 'health'."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text("utf-8"))
    return schema

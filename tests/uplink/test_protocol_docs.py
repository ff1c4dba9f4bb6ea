"""The AsyncAPI document is the contract: real messages on the wire validate against it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from gw import InProcessGateway, write_config

from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI = ROOT / "docs" / "protocol" / "asyncapi.yaml"


def channel_schemas() -> list[tuple[re.Pattern[str], dict[str, Any]]]:
    """(topic pattern, JSON Schema) for every channel of the AsyncAPI document; a binary
    channel (JPEG snapshots) has its inline schema {"type": "string", "format": "binary"}."""
    doc = yaml.safe_load(ASYNCAPI.read_text())
    out = []
    for channel in doc["channels"].values():
        pattern = re.escape(channel["address"])
        pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", pattern)
        (message,) = channel["messages"].values()
        payload = message["payload"]
        if "$ref" in payload:
            ref = (ASYNCAPI.parent / payload["$ref"]).resolve()
            out.append((re.compile(f"^{pattern}$"), json.loads(ref.read_text())))
        else:
            assert payload == {"type": "string", "format": "binary"}, payload
            out.append((re.compile(f"^{pattern}$"), payload))
    return out


def test_every_channel_points_at_an_existing_schema() -> None:
    schemas = channel_schemas()
    assert len(schemas) == 7
    for _, schema in schemas:
        jsonschema.Draft202012Validator.check_schema(schema)


def test_messages_seen_on_the_wire_validate_against_the_asyncapi_schemas(
        tmp_path: Path, broker: Mosquitto) -> None:
    key = bytes(range(32))
    (tmp_path / "k").write_text(key.hex())
    cam = {"id": "gate-cam", "name": "南门摄像机", "driver": "sim", "username": "admin",
           "password": "sim-pass", "width": 160, "height": 90, "timeout_s": 1.0}
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                       health_interval_s=1.0, cameras=[cam])
    with cfg.open("a") as f:
        f.write(f'\n[commands]\nkey_file = "{tmp_path / "k"}"\n')
    with PlatformConsole(broker.host, broker.port, persistent=False, command_key=key,
                         auto_ack_s=0.0) as console, InProcessGateway(cfg) as gw:
        assert console.wait_for(lambda c: bool(c.status), 10)
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        gw.panel.release("gate-panic")
        console.send_command("test-school", "gw-test", "ping")
        console.send_command("test-school", "gw-test", "reboot")
        console.send_command("test-school", "gw-test", "snapshot", {"camera": "gate-cam"})
        assert console.wait_for(lambda c: len(c.results) >= 4 and len(c.health) >= 1
                                and len(c.snapshots) >= 1, 10)
    schemas = channel_schemas()
    checked: set[str] = set()
    for rec in console.raw:
        matching = [schema for pattern, schema in schemas if pattern.match(rec.topic)]
        assert len(matching) == 1, rec.topic
        checked.add(rec.topic.rsplit("/", 1)[-1])
        if matching[0].get("format") == "binary":
            assert rec.payload[:2] == b"\xff\xd8", rec.topic  # a JPEG
            continue
        jsonschema.validate(json.loads(rec.payload), matching[0],
                            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert {"event", "status", "health", "result", "gate-cam"} <= checked


@pytest.mark.parametrize("name", ["event", "status", "health", "command", "cmd_result"])
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = json.loads((ROOT / "gateway" / "uplink" / "schemas" / f"{name}.schema.json")
                        .read_text())
    jsonschema.Draft202012Validator.check_schema(schema)

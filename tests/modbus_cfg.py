"""Test helpers for Modbus: write a config with buses, modules, Modbus inputs, outputs, links."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gw import write_config


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v), ensure_ascii=False)


def tables(name: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for row in rows:
        lines += ["", f"[[{name}]]"] + [f"{k} = {toml_value(v)}" for k, v in row.items()]
    return lines


#: Fast test settings: a fault after 2 failed requests, probes every 0.2 s.
FAST = {"fail_after": 2, "probe_interval_s": 0.2}


def write_modbus_config(directory: Path, *, broker_port: int, buses: Sequence[dict[str, Any]],
                        devices: Sequence[dict[str, Any]], inputs: Sequence[dict[str, Any]],
                        outputs: Sequence[dict[str, Any]] = (),
                        links: Sequence[dict[str, Any]] = (),
                        modbus: dict[str, Any] | None = None,
                        gpio_inputs: Sequence[dict[str, Any]] = (), **kwargs: Any) -> Path:
    """A simulator config (gw.write_config) with Modbus parts appended; `modbus` holds the
    [modbus] keys (default: the simulator in the service, FAST supervision)."""
    path = write_config(directory, broker_port=broker_port, inputs=list(gpio_inputs), **kwargs)
    m = {"simulator": True, **FAST, **(modbus or {})}
    lines = ["", "[modbus]"] + [f"{k} = {toml_value(v)}" for k, v in m.items()]
    lines += tables("modbus.buses", buses)
    lines += tables("modbus.devices", devices)
    lines += tables("inputs", inputs)
    lines += tables("outputs", outputs)
    lines += tables("links", links)
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def rtu_bus(port: str = "run/ttyRS485", bus_id: str = "rs485", **kw: Any) -> dict[str, Any]:
    return {"id": bus_id, "type": "rtu", "port": port, "baud": 115200, "timeout_ms": 30,
            "poll_interval_ms": 20, **kw}


def tcp_bus(bus_id: str = "lan", host: str = "127.0.0.1", **kw: Any) -> dict[str, Any]:
    return {"id": bus_id, "type": "tcp", "host": host, "timeout_ms": 100,
            "poll_interval_ms": 20, **kw}


def device(dev_id: str, unit: int, bus: str = "rs485", **kw: Any) -> dict[str, Any]:
    return {"id": dev_id, "bus": bus, "unit": unit, "name": f"模块 {dev_id}",
            "location": f"Room of {dev_id}", **kw}


def modbus_input(point_id: str, dev: str, address: int, *, kind: str = "panic",
                 table: str = "di", contact: str = "NO", **kw: Any) -> dict[str, Any]:
    where: dict[str, Any] = {"device": dev, "table": table, "address": address}
    if "bit" in kw:
        where["bit"] = kw.pop("bit")
    return {"id": point_id, "name": f"按钮 {point_id}", "location": f"Corridor {point_id}",
            "kind": kind, "modbus": where, "contact": contact, **kw}

"""The Modbus, outputs and links parts of the config: a mistake names the file, the key and the fix.

Modbus inputs are `[[inputs]]` with `modbus = {...}` instead of `gpio = N`; buses, modules,
outputs and links have their own tables. The read plan (which requests a poll cycle makes)
follows from the config and is checked here too.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from gw import REPO
from modbus_cfg import toml_value
from pki import Pki, write_key_file
from test_config import alarmgw, base, refused

from gateway.config import load_config
from gateway.config.modbus import ReadBlock, cycle_wire_s, plan_reads, rtu_char_s, rtu_gap_s

MODBUS: dict[str, Any] = {
    "buses": [
        {"id": "rs485", "type": "rtu", "port": "/dev/ttyUSB0", "baud": 9600},
        {"id": "lan", "type": "tcp", "host": "192.168.1.50"},
    ],
    "devices": [
        {"id": "io1", "bus": "rs485", "unit": 1, "name": "一层模块"},
        {"id": "io2", "bus": "rs485", "unit": 2},
        {"id": "gym", "bus": "lan", "unit": 1},
    ],
}
MODBUS_INPUTS: list[dict[str, Any]] = [
    {"id": "hall-panic", "kind": "panic", "contact": "NO",
     "modbus": {"device": "io1", "table": "di", "address": 2}},
    {"id": "lid", "kind": "tamper", "contact": "NC",
     "modbus": {"device": "io2", "table": "ir", "address": 0, "bit": 3}},
]
OUTPUTS: list[dict[str, Any]] = [
    {"id": "sounder", "modbus": {"device": "io1", "table": "coil", "address": 0}},
    {"id": "strobe", "gpio": 23, "active_level": "low"},
]
LINKS: list[dict[str, Any]] = [
    {"inputs": ["hall-panic", "gate-panic"], "outputs": ["sounder", "strobe"], "for_s": 180},
]


def to_toml(d: dict[str, Any]) -> str:
    """Top-level tables, [modbus] with its arrays of tables, [[inputs]] and the like; inside
    an array's table, every value inline (modbus = { device = ... })."""
    lines: list[str] = []

    def table(prefix: str, t: dict[str, Any]) -> None:
        for k, v in t.items():
            if not (isinstance(v, dict) or _tables(v)):
                lines.append(f"{k} = {toml_value(v)}")
        for k, v in t.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                lines.extend(["", f"[{name}]"])
                table(name, v)
            elif _tables(v):
                for item in v:
                    lines.extend(["", f"[[{name}]]"])
                    lines.extend(f"{ik} = {toml_value(iv)}" for ik, iv in item.items())

    table("", d)
    return "\n".join(lines) + "\n"


def _tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def write(directory: Any, d: dict[str, Any]) -> Any:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(to_toml(d), encoding="utf-8")
    return path


def doc() -> dict[str, Any]:
    d = base()
    d["modbus"] = copy.deepcopy(MODBUS)
    d["inputs"] += copy.deepcopy(MODBUS_INPUTS)
    d["outputs"] = copy.deepcopy(OUTPUTS)
    d["links"] = copy.deepcopy(LINKS)
    return d


def test_modbus_config_loads(tmp_path: Any) -> None:
    cfg = load_config(write(tmp_path, doc()))
    assert [i.id for i in cfg.inputs] == ["gate-panic", "box-tamper"]  # the GPIO ones
    m = cfg.modbus
    assert m.simulator is False and m.fail_after == 3 and m.probe_interval_s == 2.0
    rtu, tcp = m.buses
    assert (rtu.port, rtu.baud, rtu.parity, rtu.stopbits) == ("/dev/ttyUSB0", 9600, "N", 1)
    assert (rtu.timeout_ms, rtu.poll_interval_ms) == (100, 50)
    assert rtu.where == "/dev/ttyUSB0 9600 8N1"
    assert (tcp.host, tcp.tcp_port, tcp.timeout_ms) == ("192.168.1.50", 502, 300)
    hall, lid = m.points
    assert hall.source == "modbus:rs485/1/di2"
    assert (hall.bus, hall.unit, hall.active_value, hall.debounce_ms) == ("rs485", 1, True, 0)
    assert lid.source == "modbus:rs485/2/ir0.3"
    assert lid.active_value is False  # normally closed: active when the bit reads 0
    assert m.devices[1].name == "Modbus unit 2 on rs485"
    sounder, strobe = cfg.outputs
    assert sounder.source == "modbus:rs485/1/coil0"
    assert (strobe.source, strobe.active_level) == ("gpio:23", "low")
    (link,) = cfg.links
    assert (link.for_s, link.until, link.drill) == (180.0, None, False)


def test_relative_serial_port_resolves_against_the_config_directory(tmp_path: Any) -> None:
    d = doc()
    d["modbus"]["buses"][0]["port"] = "run/ttyRS485"
    cfg = load_config(write(tmp_path, d))
    assert cfg.modbus.buses[0].port == str(tmp_path / "run" / "ttyRS485")


def _set_input(i: int, **kv: Any) -> Any:
    def apply(d: dict[str, Any]) -> None:
        d["inputs"][2 + i].update(kv)
    return apply


def _set_where(i: int, **kv: Any) -> Any:
    def apply(d: dict[str, Any]) -> None:
        where = d["inputs"][2 + i]["modbus"]
        where.update(kv)
        for k in [k for k, v in where.items() if v is None]:
            del where[k]
    return apply


def _set_bus(i: int, **kv: Any) -> Any:
    def apply(d: dict[str, Any]) -> None:
        d["modbus"]["buses"][i].update(kv)
    return apply


def _set_dev(i: int, **kv: Any) -> Any:
    def apply(d: dict[str, Any]) -> None:
        d["modbus"]["devices"][i].update(kv)
    return apply


def _set_out(i: int, **kv: Any) -> Any:
    def apply(d: dict[str, Any]) -> None:
        d["outputs"][i].update(kv)
    return apply


def _set_link(**kv: Any) -> Any:
    def apply(d: dict[str, Any]) -> None:
        d["links"][0].update(kv)
        for k, v in list(d["links"][0].items()):
            if v is None:
                del d["links"][0][k]
    return apply


def _no_buses(d: dict[str, Any]) -> None:
    del d["modbus"]
    d["outputs"] = [OUTPUTS[1]]
    d["links"] = []


REFUSALS = [
    pytest.param(_no_buses, "inputs[2].modbus", ["no Modbus bus", "[[modbus.buses]]"],
                 id="modbus-input-without-bus"),
    pytest.param(_set_input(0, gpio=5), "inputs[2].gpio", ["not both"], id="gpio-and-modbus"),
    pytest.param(_set_input(0, pull="up"), "inputs[2].pull", ["GPIO pins", "contact"],
                 id="pull-on-modbus"),
    pytest.param(_set_input(0, kind="smoke"), "inputs[2].kind", ["'smoke' is not one of"],
                 id="kind-unknown"),
    pytest.param(_set_input(0, id="gate-panic"), "inputs[2].id", ["already used"],
                 id="id-taken-by-gpio-input"),
    pytest.param(_set_input(0, id="io1"), "inputs[2].id", ["already used", "must all differ"],
                 id="id-taken-by-module"),
    pytest.param(_set_where(0, device="io9"), "inputs[2].modbus.device",
                 ["no module 'io9'", "io1, io2"], id="unknown-module"),
    pytest.param(_set_where(0, table="do"), "inputs[2].modbus.table", ["'do' is not one of"],
                 id="unknown-table"),
    pytest.param(_set_where(0, bit=3), "inputs[2].modbus.bit", ["register tables"],
                 id="bit-on-discrete-input"),
    pytest.param(_set_where(1, bit=None), "inputs[3].modbus.bit", ["missing"],
                 id="register-without-bit"),
    pytest.param(_set_where(1, bit=16), "inputs[3].modbus.bit", ["out of range"],
                 id="bit-16"),
    pytest.param(_set_where(0, address=70000), "inputs[2].modbus.address", ["out of range"],
                 id="address-too-big"),
    pytest.param(_set_where(0, adress=3), "inputs[2].modbus.adress", ["unknown key"],
                 id="typo-in-where"),
    pytest.param(_set_input(1, modbus={"device": "io1", "table": "di", "address": 2}),
                 "inputs[3].modbus", ["already read by inputs[2]"], id="same-bit-twice"),
    pytest.param(_set_bus(0, baud=96000), "modbus.buses[0].baud",
                 ["not a standard baud rate", "9600"], id="baud-typo"),
    pytest.param(_set_bus(0, parity="X"), "modbus.buses[0].parity", ["'X' is not one of"],
                 id="parity"),
    pytest.param(_set_bus(0, host="10.0.0.1"), "modbus.buses[0].host", ["tcp"],
                 id="host-on-rtu"),
    pytest.param(_set_bus(1, baud=9600), "modbus.buses[1].baud", ["rtu"], id="baud-on-tcp"),
    pytest.param(_set_bus(0, type="ascii"), "modbus.buses[0].type", ["'ascii' is not one of"],
                 id="bus-type"),
    pytest.param(_set_bus(0, baud=1200, timeout_ms=50), "modbus.buses[0].timeout_ms",
                 ["shorter than", "1200 baud", "at least"], id="timeout-shorter-than-wire"),
    pytest.param(_set_bus(1, id="io1"), "modbus.devices[0].id", ["already used"],
                 id="bus-and-module-share-an-id"),
    pytest.param(_set_dev(1, unit=1), "modbus.devices[1].unit",
                 ["already", "own address"], id="two-modules-one-address"),
    pytest.param(_set_dev(0, unit=0), "modbus.devices[0].unit", ["1 to 247", "broadcast"],
                 id="rtu-unit-0"),
    pytest.param(_set_dev(0, bus="rs232"), "modbus.devices[0].bus",
                 ["no bus 'rs232'", "lan, rs485"], id="unknown-bus"),
    pytest.param(_set_out(0, gpio=24), "outputs[0].gpio", ["exactly one"],
                 id="output-gpio-and-modbus"),
    pytest.param(_set_out(1, gpio=17), "outputs[1].gpio", ["already used by input gate-panic"],
                 id="output-on-an-input-pin"),
    pytest.param(_set_out(0, modbus={"device": "io1", "table": "di", "address": 0}),
                 "outputs[0].modbus.table", ["'di' is not one of"], id="output-on-an-input"),
    pytest.param(_set_out(0, active_level="low"), "outputs[0].active_level", ["GPIO"],
                 id="active-level-on-a-coil"),
    pytest.param(_set_link(inputs=["nobody"]), "links[0].inputs", ["no input 'nobody'"],
                 id="link-unknown-input"),
    pytest.param(_set_link(outputs=["siren"]), "links[0].outputs", ["no output 'siren'"],
                 id="link-unknown-output"),
    pytest.param(_set_link(for_s=None), "links[0].until", ["how long", "until = \"reset\""],
                 id="link-without-duration"),
    pytest.param(_set_link(until="reset"), "links[0].for_s", ["exactly one"],
                 id="link-with-two-durations"),
    pytest.param(_set_link(for_s=None, until="forever"), "links[0].until",
                 ["'forever' is not one of"], id="link-until-unknown"),
    pytest.param(_set_link(inputs=[]), "links[0].inputs", ["non-empty list"],
                 id="link-no-inputs"),
]


@pytest.mark.parametrize(("mutate", "key", "words"), REFUSALS)
def test_bad_modbus_config_is_refused_naming_file_and_key(tmp_path: Any, mutate: Any, key: str,
                                                          words: list[str]) -> None:
    d = doc()
    mutate(d)
    refused(write(tmp_path, d), key, *words)


def test_a_link_from_a_plain_input_is_refused(tmp_path: Any) -> None:
    d = doc()
    d["inputs"][2]["kind"] = "input"
    refused(write(tmp_path, d), "links[0].inputs", "plain input", "raises no event")



def test_a_modbus_input_links_cameras_and_only_configured_ones(tmp_path: Any) -> None:
    d = doc()
    assert "modbus" in d["inputs"][2]
    d["cameras"] = [{"id": "hall-cam", "driver": "sim"}]
    d["inputs"][2]["cameras"] = ["hall-cam"]
    cfg = load_config(write(tmp_path, d))
    (point,) = [p for p in cfg.modbus.points if p.id == d["inputs"][2]["id"]]
    assert point.cameras == ("hall-cam",)
    d["inputs"][2]["cameras"] = ["attic-cam"]
    refused(write(tmp_path, d), "inputs[2].cameras", "'attic-cam' is not a configured camera")

def test_a_gpio_input_without_gpio_says_both_ways(tmp_path: Any) -> None:
    d = base()
    del d["inputs"][0]["gpio"]
    refused(write(tmp_path, d), "inputs[0].gpio", "gpio = N", "modbus = {")


# -- the read plan ------------------------------------------------------------------------

def _points(tmp_path: Any, where: list[tuple[str, str, int]]) -> Any:
    d = doc()
    d["inputs"] = d["inputs"][:2] + [
        {"id": f"p{i}", "kind": "panic",
         "modbus": {"device": dev, "table": table, "address": addr,
                    **({"bit": 0} if table in ("ir", "hr") else {})}}
        for i, (dev, table, addr) in enumerate(where)]
    d["links"] = []
    d["outputs"] = []
    return load_config(write(tmp_path, d))


def test_points_close_together_are_one_request(tmp_path: Any) -> None:
    cfg = _points(tmp_path, [("io1", "di", 7), ("io1", "di", 0), ("io1", "di", 3),
                             ("io1", "di", 200), ("io2", "di", 1), ("io1", "ir", 4),
                             ("io1", "ir", 5)])
    blocks = plan_reads(cfg.modbus.points, cfg.modbus.devices)
    assert [(b.device, b.table, b.start, b.count) for b in blocks] == [
        ("io1", "di", 0, 8), ("io1", "di", 200, 1), ("io1", "ir", 4, 2), ("io2", "di", 1, 1)]
    assert blocks[0].points == ("p1", "p2", "p0")


def test_wire_time_of_a_cycle_at_9600_baud(tmp_path: Any) -> None:
    cfg = _points(tmp_path, [("io1", "di", 0), ("io2", "di", 0)])
    bus = cfg.modbus.buses[0]
    char = rtu_char_s(9600, "N", 1)
    assert char == pytest.approx(10 / 9600)
    assert rtu_gap_s(9600, "N", 1) == pytest.approx(3.5 * char)
    assert rtu_gap_s(115200, "E", 1) == pytest.approx(0.00175)
    # Each: 8-byte request, 6-byte reply, two 3.5-character gaps: 21 characters.
    assert cycle_wire_s(bus, plan_reads(cfg.modbus.points, cfg.modbus.devices)) == \
        pytest.approx(2 * 21 * char)
    assert ReadBlock("x", 1, "hr", 0, 10, ()).reply_bytes == 25


# -- the shipped examples and check-config --------------------------------------------------

def test_example_configs_have_modbus_outputs_and_links(pki: Pki, tmp_path: Path) -> None:
    sim = load_config(REPO / "examples" / "sim.toml")
    assert sim.modbus.simulator is True
    assert {b.type for b in sim.modbus.buses} == {"rtu", "tcp"}
    assert len([d for d in sim.modbus.devices if d.bus == "rs485"]) == 2
    assert sim.outputs and sim.links
    key = write_key_file(tmp_path / "command.key", "ab" * 32)
    real = load_config(REPO / "examples" / "config.toml", overrides={
        "broker.tls.ca": str(pki.ca_cert), "broker.tls.cert": str(pki.client_cert),
        "broker.tls.key": str(pki.client_key), "commands.key_file": str(key)})
    assert real.modbus.simulator is False
    assert real.modbus.points and real.outputs and real.links


def test_check_config_prints_the_modbus_parts() -> None:
    res = alarmgw("check-config", str(REPO / "examples" / "sim.toml"))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "bus       rs485" in out and "9600 8N1" in out
    assert "a press is seen within about" in out
    assert "module    io1" in out and "reads di 0-7" in out
    assert "modbus:rs485/1/di0" in out
    assert "output    sounder          modbus:rs485/1/coil0" in out
    assert "-> sounder, strobe for 180 s" in out
    res = alarmgw("check-config", "--json", str(REPO / "examples" / "sim.toml"))
    j = json.loads(res.stdout)
    assert {b["id"] for b in j["modbus"]["buses"]} == {"rs485", "lan"}
    assert any(i["source"] == "modbus:lan/1/di2" for i in j["inputs"])
    assert j["outputs"][0]["id"] == "sounder"

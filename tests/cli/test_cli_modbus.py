"""The technician's Modbus commands, as real `alarmgw` processes: sim, status, scan, outputs.

A gateway runs in this process on simulated modules (an RTU bus with units 3 and 4, a TCP
module); `alarmgw` talks to it over its control socket, and events are checked at a
PlatformConsole on a real Mosquitto. `modbus-scan` opens a bus itself, as on site.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gw import InProcessGateway
from modbus_cfg import device, modbus_input, rtu_bus, tcp_bus, write_modbus_config
from test_cli import alarmgw, ok, ok_json

from hw_sim.broker import Mosquitto
from hw_sim.modbus import SimModbus, SimRtuBus, SimTcpBus
from hw_sim.platform import PlatformConsole

WAIT = 10.0


@dataclass
class Running:
    config: Path
    gw: InProcessGateway
    console: PlatformConsole
    sim: SimModbus


@pytest.fixture
def running(tmp_path: Path, broker: Mosquitto) -> Iterator[Running]:
    config = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus(), tcp_bus()],
        devices=[device("io3", 3), device("io4", 4), device("gym", 1, bus="lan")],
        inputs=[modbus_input("p3", "io3", 2), modbus_input("p4", "io4", 0, contact="NC"),
                modbus_input("gym-panic", "gym", 1)],
        outputs=[{"id": "sounder", "name": "警号", "modbus": {"device": "io4", "address": 0}}],
        links=[{"inputs": ["gym-panic"], "outputs": ["sounder"], "until": "reset"}])
    with PlatformConsole(broker.host, broker.port, persistent=False) as console:
        gw = InProcessGateway(config)
        try:
            gw.start()
            assert gw.service.modbus is not None and gw.service.modbus.wait_first_cycle(WAIT)
            sim = gw.service.modbus_sim
            assert isinstance(sim, SimModbus)
            yield Running(config, gw, console, sim)
        finally:
            gw.stop()


def test_sim_press_and_release_a_modbus_button(running: Running) -> None:
    assert ok(running.config, "sim", "press", "p3").strip() == "p3: ACTIVE"
    assert running.console.wait_for(lambda c: bool(c.events_of("alarm", "p3")), WAIT)
    assert ok(running.config, "sim", "release", "p3").strip() == "p3: normal"
    assert running.console.wait_for(lambda c: bool(c.events_of("restore", "p3")), WAIT)
    assert running.console.events_of("alarm", "p3")[0]["source"] == "modbus:rs485/3/di2"
    # GPIO-only actions are refused for a Modbus button, clearly.
    res = alarmgw(running.config, "sim", "bounce", "p3")
    assert res.returncode == 2 and "not for Modbus inputs" in res.stderr


def test_sim_modbus_fault_breaks_and_mends_a_module(running: Running) -> None:
    out = ok(running.config, "sim", "modbus-fault", "io4", "silent")
    assert out.strip() == "simulated module io4: silent"
    assert running.console.wait_for(lambda c: bool(c.events_of("fault", "io4")), WAIT)
    res = alarmgw(running.config, "status")
    status = res.stdout
    assert res.returncode == 1, res  # an open fault: status says so in its exit code
    assert re.search(r"^faults:\s+1 open\n\s+io4\s+modbus:rs485/4\s+since \S+:"
                     r" Modbus unit 4 \(io4\) on bus rs485", status, re.M), status
    assert re.search(r"^\s+io4\s+unit 4\s+FAULTY", status, re.M), status
    assert "no reply within 30 ms" in status  # the last frames
    ok(running.config, "sim", "modbus-fault", "io4", "ok")
    assert running.console.wait_for(lambda c: bool(c.events_of("fault_cleared", "io4")), WAIT)
    out = ok(running.config, "sim", "modbus-fault", "io3", "exception", "--code", "2",
             "--count", "1")
    assert out.strip() == "simulated module io3: exception for the next 1 requests"


@pytest.mark.parametrize(("args", "code", "words"), [
    (("sim", "modbus-fault", "io9", "silent"), 2, ["no Modbus module 'io9'", "io3, io4"]),
    (("sim", "modbus-fault", "io3"), 2, ["give a mode", "bad-crc"]),
    (("sim", "modbus-fault", "io3", "melt"), 2, ["give a mode"]),
    (("sim", "press", "p3", "extra"), 2, ["unexpected argument"]),
])
def test_sim_mistakes_are_clear(running: Running, args: tuple[str, ...], code: int,
                                words: list[str]) -> None:
    res = alarmgw(running.config, *args)
    assert res.returncode == code, res
    for w in words:
        assert w in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_status_shows_buses_counters_modules_and_frames(running: Running) -> None:
    out = ok(running.config, "status")
    assert re.search(r"^modbus:$", out, re.M), out
    assert re.search(r"^\s+rs485\s+rtu \S+ttyRS485 115200 8N1\s+UP\s+cycle [\d.]+ ms .*"
                     r"requests \d+\s+timeouts 0\s+crc 0\s+exceptions 0\s+wrong unit 0", out,
                     re.M), out
    assert re.search(r"^\s+lan\s+tcp 127\.0\.0\.1:\d+\s+UP", out, re.M), out
    assert re.search(r"^\s+io3\s+unit 3\s+OK\s+requests \d+ failures 0", out, re.M), out
    assert re.search(r"^\s+-?[\d.]+ ms\s+tx\s+unit 3\s+03 02 00 02 00 01 19 e8", out, re.M), out
    assert re.search(r"^outputs:\n\s+sounder\s+modbus:rs485/4/coil0\s+off", out, re.M), out
    st = ok_json(running.config, "status")
    rs485 = next(b for b in st["modbus"] if b["id"] == "rs485")
    assert rs485["link"] == "up"
    assert rs485["counters"]["requests"] >= rs485["counters"]["ok"] > 0
    assert rs485["counters"]["rtt_mean_ms"] > 0
    assert {f["dir"] for f in rs485["frames"]} == {"tx", "rx"}
    assert [d["id"] for d in rs485["devices"]] == ["io3", "io4"]


def test_inputs_show_modbus_points_beside_gpio_ones(running: Running) -> None:
    out = ok(running.config, "inputs")
    assert re.search(r"^\s+p3\s+panic\s+modbus:rs485/3/di2\s+normal\s+bit 0 NO module io3 ok",
                     out, re.M), out
    assert re.search(r"^\s+p4\s+panic\s+modbus:rs485/4/di0\s+normal\s+bit 1 NC module io4 ok",
                     out, re.M), out
    running.sim.press("p4")
    assert running.console.wait_for(lambda c: bool(c.events_of("alarm", "p4")), WAIT)
    inputs = {p["id"]: p for p in ok_json(running.config, "inputs")}
    assert inputs["p4"]["active"] is True
    assert inputs["p4"]["wire"]["bit"] == 0
    assert inputs["gym-panic"]["source"] == "modbus:lan/1/di1"


def test_outputs_and_output_by_hand(running: Running) -> None:
    assert re.search(r"^\s+sounder\s+modbus:rs485/4/coil0\s+off\s", ok(running.config,
                                                                      "outputs"), re.M)
    out = ok(running.config, "output", "sounder", "on")
    assert re.search(r"sounder\s+modbus:rs485/4/coil0\s+ON\s+警号\s+held by alarmgw output",
                     out), out
    assert running.sim.coil("io4", 0) is True
    out = ok(running.config, "output", "sounder", "off")
    assert running.sim.coil("io4", 0) is False
    # A link with until = "reset": the gym button holds it on until switched off.
    running.sim.press("gym-panic")
    assert running.sim.wait_for_coil("io4", 0, True, WAIT)
    [sounder] = ok_json(running.config, "outputs")
    assert sounder["on"] is True and "gym-panic" in sounder["held_by"][0]["by"]
    assert sounder["held_by"][0]["until"] == "reset"
    ok(running.config, "output", "sounder", "off")
    assert running.sim.coil("io4", 0) is False
    res = alarmgw(running.config, "output", "siren", "on")
    assert res.returncode == 2 and "no output 'siren'" in res.stderr


# -- modbus-scan: opens the bus itself -----------------------------------------------------------

def test_scan_finds_the_units_on_an_rtu_bus(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB0"
    with SimRtuBus(port, [2, 4, 7], baud=19200) as sim:
        sim.set_fault(7, "bad-crc")
        res = alarmgw(tmp_path / "none.toml", "modbus-scan", "--port", str(port), "--baud",
                      "19200", "--units", "1-8")
        assert res.returncode == 0, res.stderr
        out = res.stdout
        assert f"scanning {port} 19200 8N1 for units 1-8" in out
        assert re.search(r"^\s+unit 2\s+FOUND\s+[\d.]+ ms\s+holding register 0 = 0", out, re.M)
        assert re.search(r"^\s+unit 4\s+FOUND", out, re.M)
        assert re.search(r"^\s+unit 7\s+-\s+.*garbled reply: check the baud rate", out, re.M)
        assert f"2 unit(s) answer on {port} 19200 8N1: 2, 4" in out
        res = alarmgw(tmp_path / "none.toml", "modbus-scan", "--port", str(port), "--baud",
                      "19200", "--units", "1,2", "--json")
        doc = json.loads(res.stdout)
        assert doc["found"] == [2]
        assert [r["result"] for r in doc["results"]] == ["timeout", "answers"]


def test_scan_of_a_silent_bus_says_what_to_check(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB0"
    with SimRtuBus(port, [9], baud=115200):
        res = alarmgw(tmp_path / "none.toml", "modbus-scan", "--port", str(port), "--baud",
                      "115200", "--units", "1-3", "--timeout-ms", "20")
    assert res.returncode == 1
    assert "no unit answers" in res.stdout and "baud rate" in res.stdout


def test_scan_of_a_missing_port_or_host_is_a_clear_error(tmp_path: Path) -> None:
    res = alarmgw(tmp_path / "none.toml", "modbus-scan", "--port", str(tmp_path / "ttyUSB9"))
    assert res.returncode == 1
    assert "cannot open serial port" in res.stderr and "plugged in" in res.stderr
    assert "Traceback" not in res.stderr
    res = alarmgw(tmp_path / "none.toml", "modbus-scan", "--units", "x", "--host", "127.0.0.1")
    assert res.returncode == 2 and "--units" in res.stderr


def test_scan_a_tcp_module(tmp_path: Path) -> None:
    module = SimTcpBus([1, 5])
    module.start()
    try:
        res = alarmgw(tmp_path / "none.toml", "modbus-scan", "--host", "127.0.0.1",
                      "--tcp-port", str(module.port), "--units", "1-6")
        assert res.returncode == 0, res.stderr
        assert f"2 unit(s) answer on 127.0.0.1:{module.port}: 1, 5" in res.stdout
        # --bus takes a bus of the config, with its settings.
        config = write_modbus_config(
            tmp_path / "gw", broker_port=1, modbus={"simulator": False},
            buses=[tcp_bus(port=module.port)], devices=[device("gym", 1, bus="lan")],
            inputs=[modbus_input("gym-panic", "gym", 1)])
        res = alarmgw(config, "modbus-scan", "--bus", "lan")
        assert res.returncode == 0, res.stderr
        assert f"scanning 127.0.0.1:{module.port} for units 1,255, 100 ms" in res.stdout
        assert "1 unit(s) answer" in res.stdout
        res = alarmgw(config, "modbus-scan", "--bus", "rs232")
        assert res.returncode == 2 and "no bus 'rs232'" in res.stderr
    finally:
        module.stop()


def test_scan_does_not_fight_the_service_for_its_port(running: Running) -> None:
    res = alarmgw(running.config, "modbus-scan", "--bus", "rs485", "--units", "3")
    assert res.returncode == 1
    assert "no other program has the port open" in res.stderr


# -- modbus-scan of a simulated bus: where the running service serves it --------------------------

def test_scan_a_simulated_tcp_bus_where_the_running_service_serves_it(running: Running) -> None:
    """modbus.simulator = true: the TCP module is on a free loopback port that only the
    running service knows (it used to scan the configured port, 502)."""
    endpoint = running.sim.endpoints()["lan"]
    assert isinstance(endpoint, tuple)
    host, port = endpoint
    res = alarmgw(running.config, "modbus-scan", "--bus", "lan")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"scanning {host}:{port} for units 1,255" in res.stdout
    assert f"1 unit(s) answer on {host}:{port}: 1" in res.stdout
    doc = ok_json(running.config, "modbus-scan", "--bus", "lan", "--units", "1")
    assert (doc["found"], doc["where"]) == ([1], f"{host}:{port}")


def test_scan_a_simulated_bus_without_the_service_says_its_modules_live_there(
        tmp_path: Path) -> None:
    config = write_modbus_config(tmp_path / "gw", broker_port=1, buses=[tcp_bus()],
                                 devices=[device("gym", 1, bus="lan")],
                                 inputs=[modbus_input("gym-panic", "gym", 1)])
    res = alarmgw(config, "modbus-scan", "--bus", "lan")
    assert res.returncode == 3, res
    assert "bus lan is simulated" in res.stderr
    assert "exist only inside the running service" in res.stderr
    assert "alarmgw status" in res.stderr
    assert "scanning" not in res.stdout  # nothing was scanned at port 502
    doc = json.loads(alarmgw(config, "modbus-scan", "--bus", "lan", "--json").stdout)
    assert (doc["ok"], doc["running"], doc["bus"]) == (False, False, "lan")


# -- selftest counts every input -------------------------------------------------------------------

def test_selftest_counts_gpio_and_modbus_inputs_alike(running: Running) -> None:
    """Three Modbus inputs, no GPIO ones: the config line used to say "0 inputs" and the
    inputs line "3 inputs read"."""
    res = alarmgw(running.config, "selftest", "--json")
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    assert ", 3 inputs (0 GPIO, 3 Modbus), broker " in checks["config"]["detail"]
    assert checks["inputs"]["detail"].startswith("3 inputs read")
    out = alarmgw(running.config, "selftest").stdout
    assert re.search(r"^PASS\s+config\s+.*, 3 inputs \(0 GPIO, 3 Modbus\), broker", out, re.M)

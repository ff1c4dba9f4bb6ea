"""A Modbus-only gateway and the GPIO backend; Modbus inputs offline; an output's own fault.

- The default `[gpio] backend = "lgpio"` with no GPIO input or output: no GPIO backend is
  needed, and the service must not open lgpio (it used to stop at start where lgpio is
  not installed, after check-config had said OK).
- With GPIO points and lgpio missing, check-config must say so (exit 1), not OK.
- `alarmgw status` with the service stopped counts the Modbus inputs too.
- A missing module's linked output fails its start-up OFF write: that is the output's
  fault, listed under the output's id, beside the module's own.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from gw import write_config
from modbus_cfg import device, modbus_input, rtu_bus, write_modbus_config
from test_cli import alarmgw

from gateway.cli.status import render_status
from gateway.config import load_config
from gateway.service import Service
from hw_sim.broker import Mosquitto
from hw_sim.modbus import SimModbus
from hw_sim.platform import PlatformConsole

WAIT = 10.0
LGPIO_MISSING = importlib.util.find_spec("lgpio") is None
needs_no_lgpio = pytest.mark.skipif(not LGPIO_MISSING, reason="lgpio is installed here: the"
                                    " missing-lgpio case cannot be seen")


def with_backend(path: Path, backend: str | None) -> Path:
    """The config at `path` with `[gpio] backend` set to `backend` (None: the default)."""
    text = path.read_text()
    line = "" if backend is None else f'backend = "{backend}"'
    text, n = re.subn(r'^backend = "mock"$', line, text, flags=re.M)
    assert n == 1
    path.write_text(text)
    return path


def modbus_only(tmp_path: Path, broker_port: int = 1, **kw: Any) -> Path:
    """Three Modbus buttons on an RTU bus (units 3 and 4), no GPIO input."""
    return write_modbus_config(
        tmp_path / "gw", broker_port=broker_port, buses=[rtu_bus()],
        devices=[device("io3", 3), device("io4", 4)],
        inputs=[modbus_input("p3", "io3", 2), modbus_input("p4", "io4", 0, contact="NC"),
                modbus_input("p5", "io3", 3)], **kw)


# -- check-config ---------------------------------------------------------------------------------

@needs_no_lgpio
def test_check_config_says_lgpio_is_missing_when_gpio_inputs_need_it(tmp_path: Path) -> None:
    config = with_backend(write_config(tmp_path / "gw", broker_port=1), None)  # the default
    res = alarmgw(config, "check-config")
    assert res.returncode == 1, res
    assert "OK" not in res.stdout.splitlines()[0]
    assert 'gpio.backend = "lgpio" but the lgpio module is missing' in res.stderr
    assert "python3-lgpio" in res.stderr
    assert "3 GPIO input(s)" in res.stderr
    doc = json.loads(alarmgw(config, "check-config", "--json").stdout)
    assert doc["ok"] is False and "lgpio module is missing" in doc["error"]
    assert any("lgpio module is missing" in p for p in doc["problems"])


@needs_no_lgpio
def test_check_config_says_lgpio_is_missing_for_a_gpio_output_alone(tmp_path: Path) -> None:
    config = with_backend(modbus_only(tmp_path, outputs=[
        {"id": "strobe", "name": "警灯", "gpio": 23}]), "lgpio")
    res = alarmgw(config, "check-config")
    assert res.returncode == 1, res
    assert "lgpio module is missing" in res.stderr and "1 GPIO output(s)" in res.stderr


def test_check_config_of_a_modbus_only_config_needs_no_gpio_backend(tmp_path: Path) -> None:
    config = with_backend(modbus_only(tmp_path), None)
    res = alarmgw(config, "check-config")
    assert res.returncode == 0, res.stderr
    assert f"{config}: OK" in res.stdout
    assert re.search(r"^\s+gpio\s+backend lgpio \(not used: no GPIO input or output\)$",
                     res.stdout, re.M), res.stdout
    doc = json.loads(alarmgw(config, "check-config", "--json").stdout)
    assert doc["ok"] is True and doc["problems"] == []


# -- the service ----------------------------------------------------------------------------------

def test_a_modbus_only_service_never_opens_the_gpio_backend(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = load_config(with_backend(modbus_only(tmp_path, broker.port), None))
    assert cfg.gpio.backend == "lgpio"
    service = Service(cfg)
    service.start()
    try:
        assert service.pin_factory is None  # lgpio was not even looked up
        assert service.modbus is not None and service.modbus.wait_first_cycle(WAIT)
        sim = service.modbus_sim
        assert isinstance(sim, SimModbus)
        sim.press("p3")
        assert console.wait_for(lambda c: len(c.events_of("alarm", "p3")) == 1, WAIT)
        assert [p["id"] for p in service.status()["inputs"]] == ["p3", "p4", "p5"]
    finally:
        service.stop()


# -- status with the service stopped --------------------------------------------------------------

def test_offline_status_counts_the_modbus_inputs(tmp_path: Path) -> None:
    config = modbus_only(tmp_path)
    res = alarmgw(config, "status")
    assert res.returncode == 3, res
    assert "inputs:  not read while the service is down (3 configured: p3, p4, p5)" \
        in res.stdout, res.stdout
    doc = json.loads(alarmgw(config, "status", "--json").stdout)
    assert [(i["id"], i["source"]) for i in doc["inputs"]] == [
        ("p3", "modbus:rs485/3/di2"), ("p4", "modbus:rs485/4/di0"), ("p5", "modbus:rs485/3/di3")]


def test_offline_status_lists_gpio_inputs_then_modbus_ones(tmp_path: Path) -> None:
    config = modbus_only(tmp_path, gpio_inputs=[{"id": "gate-panic", "kind": "panic",
                                                 "gpio": 17, "contact": "NO", "pull": "up"}])
    res = alarmgw(config, "status")
    assert "(4 configured: gate-panic, p3, p4, p5)" in res.stdout, res.stdout


# -- a missing module and its output --------------------------------------------------------------

def test_a_missing_modules_output_is_its_own_fault_under_its_own_id(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = load_config(modbus_only(tmp_path, broker.port, outputs=[
        {"id": "sounder", "name": "警号", "modbus": {"device": "io4", "address": 0}}]))
    with SimModbus(cfg.modbus, cfg.outputs) as sim:
        sim.set_fault("io4", "silent")  # the module is missing from the start
        service = Service(cfg, modbus_sim=sim)
        service.start()
        try:
            assert console.wait_for(lambda c: bool(c.events_of("fault", "io4"))
                                    and bool(c.events_of("fault", "sounder")), WAIT)
            assert sorted(f["device"] for f in service.status()["faults"]) == [
                "io4", "sounder"]
            faults = {f["device"]: f for f in service.status()["faults"]}
            out_fault = console.events_of("fault", "sounder")[0]
            assert out_fault["point"]["id"] == "sounder"
            assert out_fault["detail"]["output"] == "sounder"
            assert out_fault["detail"]["module"] == "io4"
            assert "cannot be switched off" in out_fault["detail"]["reason"]
            assert faults["sounder"]["source"] == "modbus:rs485/4/coil0"
            text = "\n".join(render_status(service.status()))
            assert re.search(r"^  sounder\s+modbus:rs485/4/coil0\s+since \S+: output sounder",
                             text, re.M), text
            assert re.search(r"^  io4\s+modbus:rs485/4\s+since", text, re.M), text
            # What a restart finds open: each fault under its own device.
            assert sorted(r["device"] for r in service.outbox.open_faults()) == [
                "io4", "sounder"]

            sim.set_fault("io4", "ok")  # the module is fitted
            assert console.wait_for(lambda c: bool(c.events_of("fault_cleared", "io4"))
                                    and bool(c.events_of("fault_cleared", "sounder")), WAIT)
            assert service.engine is not None
            assert service.engine.call(service.engine.open_faults).result(WAIT) == []
            assert service.outbox.open_faults() == []
        finally:
            service.stop()

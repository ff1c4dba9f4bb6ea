"""The backend registry: real and simulated hardware side by side, chosen by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from gw import DUTY_NUMBER as DUTY
from gw import REPO, InProcessGateway
from gw import escalation_config as config

from gateway.config import load_config
from gateway.drivers import backends
from gateway.drivers.cameras.http import HttpCamera
from gateway.errors import HardwareError
from hw_sim.broker import Mosquitto
from hw_sim.camera import SimCamera
from hw_sim.gpio import SimPanel
from hw_sim.modem import SimModem
from hw_sim.platform import PlatformConsole


def test_the_real_backends_are_registered_by_gateway_and_sim_by_hw_sim() -> None:
    assert {"lgpio"} <= set(backends.names("gpio"))
    assert {"http", "picamera", "rtsp"} <= set(backends.names("camera"))
    assert {"wire"} <= set(backends.names("modbus"))
    assert {"serial"} <= set(backends.names("modem"))
    backends.gpio("sim")  # imports hw_sim.backends on first demand
    for kind in ("gpio", "modbus", "camera", "modem"):
        assert "sim" in backends.names(kind), kind  # type: ignore[arg-type]


def test_an_unknown_backend_is_refused_naming_the_kind_and_the_known_names() -> None:
    with pytest.raises(HardwareError, match=r"no camera backend named 'onvif' \(known: .*http"):
        backends.camera("onvif")


def test_the_config_s_mock_gpio_backend_is_the_simulator(tmp_path: Path) -> None:
    cfg = load_config(REPO / "examples" / "sim.toml")
    pins = backends.gpio(cfg.gpio.backend)(cfg.inputs)
    try:
        assert cfg.gpio.backend == "mock"
        assert isinstance(pins.simulated, SimPanel)
        assert pins.simulated.handles({"action": "press"})
        assert not pins.simulated.handles({"action": "modbus-fault"})
    finally:
        pins.factory.close()


def test_a_simulated_camera_is_the_real_http_driver_pointed_at_the_simulator() -> None:
    cfg = load_config(REPO / "examples" / "sim.toml")
    cam_settings = next(c for c in cfg.cameras if c.driver == "sim")
    camera, sim = backends.camera("sim")(cam_settings)
    try:
        assert isinstance(camera, HttpCamera) and isinstance(sim, SimCamera)
        assert camera.capture().jpeg.startswith(b"\xff\xd8")
        assert sim.control({"camera": cam_settings.id, "mode": "500"})["mode"] == "500"
    finally:
        camera.close()
        assert sim is not None
        sim.stop()


def test_escalation_modem_port_sim_texts_through_the_simulated_modem(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    with InProcessGateway(config(tmp_path, broker.port, "sim")) as gw:
        assert gw.panel is not None
        police = gw.service.police
        assert police is not None and isinstance(police.modem_sim, SimModem)
        modem = police.modem_sim
        gw.panel.press("gate-panic")
        (sms,) = modem.wait_for_messages(1, timeout=15)
    assert sms.number == DUTY and "南门门卫室一键报警" in sms.text
    assert not modem.is_running  # stopped with the service

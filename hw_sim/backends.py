"""The simulator's backends, registered by name beside the real ones.

Importing this module registers `"sim"` for every kind in
`gateway.drivers.backends` (the registry imports it on the first lookup of
"sim"): gpiozero MockFactory pins wired to simulated contacts, pymodbus modules
on a socat pty pair and loopback TCP, digest-auth HTTP cameras on loopback, and
an AT-command modem on a pty. Each opener returns the real driver's input (a pin
factory, the buses' endpoints, an `HttpCamera` pointed at the simulated camera,
a `Modem` on the simulated modem's pty) and the simulator, which `alarmgw sim`
drives through the service's control socket.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.drivers import backends
from gateway.drivers.backends import ModbusTransport, PinBackend, Simulated

if TYPE_CHECKING:
    from gateway.config import CameraSettings, EscalationSettings, InputSettings
    from gateway.config.modbus import ModbusSettings
    from gateway.config.outputs import OutputSettings
    from gateway.drivers.cameras.base import Camera
    from gateway.drivers.modem import Modem


#: Input ids, comma-separated, whose contact is active when the simulated pins are made:
#: a panic button latched before the gateway started (bench/boot.py).
LATCHED_ENV = "ALARMGW_SIM_LATCHED"


def _gpio(inputs: Sequence[InputSettings]) -> PinBackend:
    from hw_sim.gpio import SimPanel, make_sim_factory

    factory = make_sim_factory()
    panel = SimPanel(factory, inputs)
    for point in filter(None, os.environ.get(LATCHED_ENV, "").split(",")):
        panel.set_active(point.strip(), True)
    return PinBackend(factory, panel)


def _modbus(settings: ModbusSettings, outputs: Sequence[OutputSettings]) -> ModbusTransport:
    from hw_sim.modbus import SimModbus

    sim = SimModbus(settings, outputs)
    sim.start()
    return ModbusTransport(sim.endpoints(), sim)


def _camera(settings: CameraSettings) -> tuple[Camera, Simulated | None]:
    from gateway.drivers.cameras.http import HttpCamera
    from hw_sim.camera import SimCamera

    sim = SimCamera(settings.id, username=settings.username, password=settings.password,
                    width=settings.width, height=settings.height)
    sim.start()
    return HttpCamera(settings, url=sim.url), sim


def _modem(settings: EscalationSettings, workdir: Path) -> tuple[Modem, Simulated | None]:
    from gateway.drivers.modem import Modem
    from hw_sim.modem import SimModem

    sim = SimModem(workdir)
    sim.start()
    return Modem(sim.port, settings.modem_baud, pin=settings.modem_pin,
                 send_timeout_s=settings.sms_timeout_s), sim


backends.register("gpio", "sim", _gpio)
backends.register("modbus", "sim", _modbus)
backends.register("camera", "sim", _camera)
backends.register("modem", "sim", _modem)

"""The backend registry: which implementation stands behind each kind of hardware, by name.

gpiozero's way: the real pin backends and `MockFactory` are registered side by side
and chosen by name; nothing that uses a pin knows which one it got. Here the same
holds for the four kinds of hardware the gateway drives:

    kind     names                          chosen by
    gpio     "lgpio", "sim" (alias "mock")  gpio.backend
    modbus   "wire", "sim"                  modbus.simulator (true: "sim")
    camera   "http", "picamera", "rtsp",    cameras[].driver
             "sim"
    modem    "serial", "sim"                escalation.modem.port ("sim": "sim")

The real backends are registered by `gateway.drivers` (below, each importing its
driver only when it is opened, so that lgpio or picamera2 are touched only where a
config asks for them). `"sim"` is registered by `hw_sim.backends`, imported on the
first lookup of a name nobody has registered: this module is the one place in
`gateway` that reaches into the simulator, and the service never names a
simulator class. The demo (`alarmgw demo`, in `hw_sim.demo`) is reached the same
way, through `run_demo`.

What a backend returns:

- gpio: an opener `(inputs) -> PinBackend`: a gpiozero pin factory, and the
  simulator behind it when there is one;
- modbus: an opener `(modbus settings, outputs) -> ModbusTransport`: where each
  bus really is (None: where the config says), and the simulator when there is one;
- camera: an opener `(camera settings) -> (Camera, simulator or None)`;
- modem: an opener `(escalation settings, work dir) -> (Modem, simulator or None)`.

A simulator (`Simulated`) is driven by `alarmgw sim ...` through the control
socket, and stopped with the service.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from gateway.errors import HardwareError

if TYPE_CHECKING:
    from gateway.config import CameraSettings, EscalationSettings, InputSettings
    from gateway.config.modbus import ModbusSettings
    from gateway.config.outputs import OutputSettings
    from gateway.drivers.cameras.base import Camera
    from gateway.drivers.modem import Modem

log = logging.getLogger(__name__)

Kind = Literal["gpio", "modbus", "camera", "modem"]

#: The module that registers the simulator's backends when first asked for.
SIMULATOR_MODULE = "hw_sim.backends"


class Simulated(Protocol):
    """Simulated hardware behind a backend, driven by `alarmgw sim ...`."""

    def handles(self, req: dict[str, Any]) -> bool:
        """Whether this simulator is the one a control request (`{"cmd": "sim", ...}`)
        is for."""

    def control(self, req: dict[str, Any]) -> dict[str, Any]:
        """Carry out a control request; raise ValueError naming what is wrong."""

    def stop(self) -> None:
        """Stop whatever the simulator runs (servers, pty pairs); idempotent."""


class SimulatedBuses(Simulated, Protocol):
    """Simulated Modbus modules: where the driver finds each simulated bus."""

    def endpoints(self) -> dict[str, str | tuple[str, int]]:
        """By bus id: the pty path or the loopback (host, port) the modules serve on."""


@dataclass
class PinBackend:
    """GPIO pins: a gpiozero pin factory, closed by its owner with `close()`."""

    factory: Any
    simulated: Simulated | None = None


@dataclass
class ModbusTransport:
    """Where the configured buses really are."""

    endpoints: dict[str, str | tuple[str, int]] | None = None
    """By bus id: a serial port path or a (host, port); None: as the config says."""
    simulated: Simulated | None = None


GpioOpener = Callable[["Sequence[InputSettings]"], PinBackend]
ModbusOpener = Callable[["ModbusSettings", "Sequence[OutputSettings]"], ModbusTransport]
CameraOpener = Callable[["CameraSettings"], "tuple[Camera, Simulated | None]"]
ModemOpener = Callable[["EscalationSettings", Path], "tuple[Modem, Simulated | None]"]

_lock = threading.Lock()
_registry: dict[Kind, dict[str, Callable[..., Any]]] = {
    "gpio": {}, "modbus": {}, "camera": {}, "modem": {}}
_aliases: dict[tuple[Kind, str], str] = {("gpio", "mock"): "sim"}


def register(kind: Kind, name: str, opener: Callable[..., Any]) -> None:
    """Make `opener` the backend `name` of `kind` (a later registration replaces it)."""
    with _lock:
        _registry[kind][name] = opener


def names(kind: Kind) -> list[str]:
    """The names registered for `kind` so far."""
    with _lock:
        return sorted(_registry[kind])


def _lookup(kind: Kind, name: str) -> Callable[..., Any]:
    name = _aliases.get((kind, name), name)
    with _lock:
        opener = _registry[kind].get(name)
    if opener is None and name == "sim":
        try:
            importlib.import_module(SIMULATOR_MODULE)
        except ImportError as exc:
            raise HardwareError(f"{kind} backend \"sim\" needs the simulator ({SIMULATOR_MODULE}),"
                                f" which cannot be imported: {exc}") from exc
        with _lock:
            opener = _registry[kind].get(name)
    if opener is None:
        raise HardwareError(f"no {kind} backend named {name!r} (known: {', '.join(names(kind))})")
    return opener


def gpio(name: str) -> GpioOpener:
    """The GPIO backend `name` (gpio.backend)."""
    opener: GpioOpener = _lookup("gpio", name)
    return opener


def modbus(name: str) -> ModbusOpener:
    """The Modbus transport `name`: "wire", or "sim" when modbus.simulator is true."""
    opener: ModbusOpener = _lookup("modbus", name)
    return opener


def camera(name: str) -> CameraOpener:
    """The camera driver `name` (cameras[].driver)."""
    opener: CameraOpener = _lookup("camera", name)
    return opener


def modem(name: str) -> ModemOpener:
    """The modem backend `name`: "serial", or "sim" when escalation.modem.port is "sim"."""
    opener: ModemOpener = _lookup("modem", name)
    return opener


def run_demo(config: Path | None, duration: float | None) -> int:
    """`alarmgw demo`: the whole system on the simulator (`hw_sim.demo`), which starts a
    private broker, the reference platform console and the gateway on simulated hardware.
    Returns the demo's exit code."""
    try:
        demo = importlib.import_module("hw_sim.demo")
    except ImportError as exc:
        raise HardwareError(f"the demo needs the simulator (hw_sim), which cannot be imported:"
                            f" {exc}") from exc
    code: int = demo.run_demo(config=config, duration=duration)
    return code


def open_camera(settings: CameraSettings) -> Camera:
    """A camera with no simulator behind it (or whose simulator the caller does not
    drive): `alarmgw snapshot`, selftest."""
    cam, sim = camera(settings.driver)(settings)
    if sim is not None:
        log.debug("camera %s: simulator %r is not driven by this caller", settings.id, sim)
    return cam


# -- the real backends --------------------------------------------------------------------


def _lgpio(inputs: Sequence[InputSettings]) -> PinBackend:
    try:
        from gpiozero.pins.lgpio import LGPIOFactory
    except ImportError as exc:
        raise HardwareError("gpio.backend = \"lgpio\" but the lgpio module is missing: on"
                            " Raspberry Pi OS install python3-lgpio (or pip install"
                            " 'alarmgw[pi]')") from exc
    try:
        return PinBackend(LGPIOFactory())
    except Exception as exc:
        raise HardwareError(f"cannot open the GPIO chip through lgpio: {exc}; check that"
                            " /dev/gpiochip* exists and the service user is in the gpio"
                            " group") from exc


def _wire(settings: ModbusSettings, outputs: Sequence[OutputSettings]) -> ModbusTransport:
    return ModbusTransport()


def _http(settings: CameraSettings) -> tuple[Camera, Simulated | None]:
    from gateway.drivers.cameras.http import HttpCamera

    return HttpCamera(settings), None


def _picamera(settings: CameraSettings) -> tuple[Camera, Simulated | None]:
    from gateway.drivers.cameras.picamera import PiCamera

    return PiCamera(settings), None


def _rtsp(settings: CameraSettings) -> tuple[Camera, Simulated | None]:
    from gateway.drivers.cameras.rtsp import RtspCamera

    return RtspCamera(settings), None


def _serial_modem(settings: EscalationSettings, workdir: Path) -> tuple[Modem, Simulated | None]:
    from gateway.drivers.modem import Modem

    assert settings.modem_port is not None
    return Modem(settings.modem_port, settings.modem_baud, pin=settings.modem_pin,
                 send_timeout_s=settings.sms_timeout_s), None


register("gpio", "lgpio", _lgpio)
register("modbus", "wire", _wire)
register("camera", "http", _http)
register("camera", "picamera", _picamera)
register("camera", "rtsp", _rtsp)
register("modem", "serial", _serial_modem)

__all__ = ["Kind", "ModbusTransport", "PinBackend", "Simulated", "SimulatedBuses", "camera",
           "gpio", "modbus", "modem", "names", "open_camera", "register", "run_demo"]

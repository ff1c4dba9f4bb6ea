"""`ModbusInputs`: the Modbus driver the service starts, every configured bus at once.

Each bus polls in its own thread (see `gateway.drivers.modbus.bus`) and hands
`InputChange`s and `FaultChange`s to the engine's door; nothing here waits on the
engine.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from gateway.config.modbus import ModbusSettings
from gateway.drivers.modbus.bus import Door, ModbusBus
from gateway.drivers.modbus.links import Endpoint


class ModbusInputs:
    """Every configured Modbus bus, each polled by its own thread."""

    def __init__(self, settings: ModbusSettings, door: Door, *,
                 endpoints: Mapping[str, Endpoint] | None = None) -> None:
        """`door`: the engine's door; `endpoints`: where buses really are, by bus id (the
        simulator's ports), instead of where the config says."""
        self.settings = settings
        endpoints = endpoints or {}
        self.buses = [ModbusBus(b, settings.devices, settings.points, door,
                                fail_after=settings.fail_after,
                                probe_interval_s=settings.probe_interval_s,
                                endpoint=endpoints.get(b.id))
                      for b in settings.buses]

    def start(self) -> None:
        for bus in self.buses:
            bus.start()

    def stop(self) -> None:
        for bus in self.buses:
            bus.stop()

    def wait_first_cycle(self, timeout: float) -> bool:
        """Wait until every bus has asked each of its modules once (or found itself down):
        from then on, every input's first reading has been handed to the engine."""
        deadline = time.monotonic() + timeout
        return all(b.first_cycle.wait(max(0.0, deadline - time.monotonic()))
                   for b in self.buses)

    def write_coil(self, device_id: str, address: int, on: bool) -> Future[None]:
        for bus in self.buses:
            if bus.has_device(device_id):
                return bus.write_coil(device_id, address, on)
        raise KeyError(f"no Modbus module {device_id!r}")

    def bus_of(self, device_id: str) -> ModbusBus:
        for bus in self.buses:
            if bus.has_device(device_id):
                return bus
        raise KeyError(f"no Modbus module {device_id!r}")

    def status(self) -> list[dict[str, Any]]:
        return [bus.status() for bus in self.buses]

    def point_status(self) -> list[dict[str, Any]]:
        return [p for bus in self.buses for p in bus.point_status()]

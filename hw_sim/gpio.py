"""Simulated panic buttons: gpiozero MockFactory pins with a contact wired to them.

gpiozero's MockPin models a pin with nothing attached: it sits at its pull.
A real input has a contact between the pin and the opposite rail: a
normally-closed contact holds the line against the pull until it is
pressed. `WiredPin` adds that contact, so the gateway's GPIO driver reads
the same levels from the simulator as from a wired Pi, including a
normally-closed button that reads "normal" at start.

`SimPanel` presses, releases and bounces the configured inputs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from gateway.config import InputSettings


class WiredPin(MockPin):  # type: ignore[misc]
    """A MockPin with a wire: `wire_level` None means the contact is open (the pull wins)."""

    def __init__(self, factory: Any, info: Any) -> None:
        self.wire_level: bool | None = None
        super().__init__(factory, info)

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)  # validates and drives the line to the pull
        if self.wire_level is not None:
            self._drive(self.wire_level)

    def _drive(self, high: bool, edge: bool = True) -> None:
        if self._function != "input":
            return
        if not edge:
            # The level changes but no edge is reported: as when the kernel loses an
            # interrupt, or a glitch hides it. when_changed is not called.
            self._change_state(high)
        elif high:
            self.drive_high()
        else:
            self.drive_low()

    def set_wire(self, level: bool | None, *, edge: bool = True) -> None:
        """Hold the line at `level` through a closed contact, or open it (None).

        `edge=False`: change the level without its edge reaching the pin's
        `when_changed` callback (a lost edge), so that only a re-read of the level finds
        the change."""
        self.wire_level = level
        if level is not None:
            self._drive(level, edge)
        elif self._pull == "up":
            self._drive(True, edge)
        elif self._pull == "down":
            self._drive(False, edge)


def make_sim_factory() -> MockFactory:
    """A MockFactory whose pins are `WiredPin`s."""
    return MockFactory(pin_class=WiredPin)


class SimPanel:
    """Press, release and bounce simulated inputs wired to a `make_sim_factory()` factory.

    Create it before the gateway's driver opens the pins: it puts every
    contact in its normal state, as the installer's wiring would.
    """

    def __init__(self, factory: Any, inputs: Sequence[InputSettings]) -> None:
        self.factory = factory
        self._inputs = {inp.id: inp for inp in inputs}
        for inp in inputs:
            self.set_active(inp.id, False)

    def _pin(self, point_id: str) -> tuple[WiredPin, InputSettings]:
        try:
            inp = self._inputs[point_id]
        except KeyError:
            known = ", ".join(sorted(self._inputs))
            raise KeyError(f"no simulated input {point_id!r} (inputs: {known})") from None
        pin = self.factory.pin(inp.gpio)
        if not isinstance(pin, WiredPin):
            raise TypeError(f"GPIO{inp.gpio} is a {type(pin).__name__}, not a WiredPin: build"
                            " the factory with make_sim_factory()")
        return pin, inp

    def set_active(self, point_id: str, active: bool, *, edge: bool = True) -> None:
        """Put the input's contact in its active (pressed) or normal state; `edge=False`:
        without the edge reaching the gateway's driver (a lost edge, see WiredPin)."""
        pin, inp = self._pin(point_id)
        closed = active if inp.contact == "NO" else not active
        if inp.pull == "off":
            # External resistors: the line simply reads the level its state gives.
            high = active == (inp.active_level == "high")
            pin.set_wire(high, edge=edge)
        elif closed:
            # The contact ties the line to the other rail.
            pin.set_wire(inp.pull == "down", edge=edge)
        else:
            pin.set_wire(None, edge=edge)

    def press(self, point_id: str) -> None:
        self.set_active(point_id, True)

    def release(self, point_id: str) -> None:
        self.set_active(point_id, False)

    def bounce(self, point_id: str, edges: int = 3, interval_s: float = 0.001) -> None:
        """Make `edges` contact bounces of `interval_s` seconds each, ending where it began.

        This is how a bouncing contact looks on the wire; the gateway's debounce
        must see no change and count the excursions as glitches.
        """
        active = self.is_active(point_id)
        for _ in range(edges):
            self.set_active(point_id, not active)
            time.sleep(interval_s)  # the bounce itself: the wire holds this level this long
            self.set_active(point_id, active)
            time.sleep(interval_s)

    def is_active(self, point_id: str) -> bool:
        pin, inp = self._pin(point_id)
        return bool(pin.state) == (inp.active_level == "high")

    # -- driven by `alarmgw sim` (gateway.drivers.backends.Simulated) ---------------------

    def handles(self, req: dict[str, Any]) -> bool:
        """Every `sim` request but a Modbus module's fault is for the GPIO panel."""
        return req.get("action") != "modbus-fault"

    def control(self, req: dict[str, Any]) -> dict[str, Any]:
        action = req.get("action")
        point = str(req.get("input", ""))
        if action == "press":
            self.press(point)
        elif action == "release":
            self.release(point)
        elif action == "bounce":
            self.bounce(point, int(req.get("edges", 3)))
        else:
            raise ValueError(f"unknown sim action {action!r} (press, release, bounce)")
        return {"input": point, "active": self.is_active(point)}

    def stop(self) -> None:
        """Nothing runs behind the panel: its pins belong to the factory."""

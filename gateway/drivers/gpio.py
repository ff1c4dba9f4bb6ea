"""GPIO inputs through gpiozero pins, with our own "stable for N ms" debounce.

The pin factory is passed in (looked up by gpio.backend in
`gateway.drivers.backends`): lgpio on a Raspberry Pi, gpiozero's MockFactory on
the simulator. gpiozero's `bounce_time` is not used: its
mock backend ignores it and a lock-out debounce reports the first edge of a
bounce. Here a new level counts only once it has held for `debounce_ms`; an
excursion that ends sooner is a glitch, counted per input and shown in
`alarmgw inputs`, and raises nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from gateway.clock import mono_ns
from gateway.config import InputSettings
from gateway.drivers import InputChange
from gateway.errors import HardwareError

log = logging.getLogger(__name__)

_PULL = {"up": "up", "down": "down", "off": "floating"}


class _Line:
    """One input pin and its debounce state. Fields are guarded by GpioInputs._cond."""

    def __init__(self, owner: GpioInputs, settings: InputSettings, pin: Any) -> None:
        self.owner = owner
        self.settings = settings
        self.pin = pin
        self.debounce_ns = settings.debounce_ms * 1_000_000
        self.stable_high = False
        self.last_edge_ns = 0
        self.run_start_ns = 0
        """When the current raw level began."""
        self.deadline_ns: int | None = None
        self.glitches = 0
        self.changes = 0
        self.last_change_ns: int | None = None

    def is_active_level(self, high: bool) -> bool:
        return high == (self.settings.active_level == "high")

    def on_edge(self, ticks: float, state: int) -> None:
        # Runs in gpiozero's callback thread (lgpio) or the caller's (mock).
        try:
            self.owner._edge(self, bool(state))
        except Exception:
            log.exception("input %s (GPIO%d): edge handling failed", self.settings.id,
                          self.settings.gpio)


class GpioInputs:
    """Debounced GPIO inputs that report to one door callable."""

    def __init__(self, inputs: Sequence[InputSettings], factory: Any,
                 door: Callable[[InputChange], None], *,
                 on_glitch: Callable[[str, int, int], None] | None = None) -> None:
        """`inputs`: the configured GPIO inputs; `factory`: a gpiozero pin factory;
        `door`: called with each confirmed change (must not block); `on_glitch(input id,
        glitches so far, CLOCK_BOOTTIME ns)`: called for each glitch (must not block)."""
        self.factory = factory
        self._door = door
        self._on_glitch = on_glitch
        self._settings = list(inputs)
        self._lines: list[_Line] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open every pin, report its initial state, and start debouncing."""
        for s in self._settings:
            try:
                pin = self.factory.pin(s.gpio)
                pin.function = "input"
                pin.pull = _PULL[s.pull]
                pin.bounce = None
                pin.edges = "both"
            except Exception as exc:
                self._close_pins()
                raise HardwareError(f"input {s.id}: cannot set up GPIO{s.gpio}: {exc}; check"
                                    " that no other program uses the pin") from exc
            self._lines.append(_Line(self, s, pin))
        initial: list[InputChange] = []
        now = mono_ns()
        with self._cond:
            for line in self._lines:
                line.stable_high = bool(line.pin.state)
                line.run_start_ns = now
                initial.append(InputChange(line.settings.id,
                                           line.is_active_level(line.stable_high), now,
                                           initial=True))
                # Assigned after the initial read so that no edge is missed or doubled:
                # an edge from here on is compared with stable_high.
                line.pin.when_changed = line.on_edge
        for change in initial:
            self._door(change)
        self._thread = threading.Thread(target=self._run, name="gpio-debounce", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close_pins()

    def _close_pins(self) -> None:
        for line in self._lines:
            try:
                line.pin.when_changed = None
                line.pin.close()
            except Exception:
                log.exception("input %s: error closing GPIO%d", line.settings.id,
                              line.settings.gpio)
        self._lines.clear()

    def _edge(self, line: _Line, high: bool) -> None:
        now = mono_ns()
        confirmed: InputChange | None = None
        glitches: int | None = None
        with self._cond:
            line.last_edge_ns = now
            line.run_start_ns = now
            if line.debounce_ns == 0:
                if high != line.stable_high:
                    confirmed = self._confirm(line, high, now)
            elif high == line.stable_high:
                # Back to the stable level before the deadline: a glitch.
                if line.deadline_ns is not None:
                    line.deadline_ns = None
                    line.glitches += 1
                    glitches = line.glitches
            else:
                line.deadline_ns = now + line.debounce_ns
                self._cond.notify()
        if confirmed is not None:
            self._door(confirmed)
        if glitches is not None and self._on_glitch is not None:
            self._on_glitch(line.settings.id, glitches, now)

    def _confirm(self, line: _Line, high: bool, began_ns: int) -> InputChange:
        line.stable_high = high
        line.changes += 1
        line.last_change_ns = began_ns
        return InputChange(line.settings.id, line.is_active_level(high), began_ns)

    def _run(self) -> None:
        while True:
            due: list[InputChange] = []
            with self._cond:
                if self._stop:
                    return
                now = mono_ns()
                next_deadline: int | None = None
                for line in self._lines:
                    dl = line.deadline_ns
                    if dl is None:
                        continue
                    if dl <= now:
                        line.deadline_ns = None
                        high = bool(line.pin.state)
                        if high != line.stable_high:
                            # Held since the last edge for the whole debounce time.
                            due.append(self._confirm(line, high, line.run_start_ns))
                    elif next_deadline is None or dl < next_deadline:
                        next_deadline = dl
                if not due:
                    timeout = None if next_deadline is None else (next_deadline - now) / 1e9
                    self._cond.wait(timeout)
            for change in due:
                self._door(change)

    def status(self) -> list[dict[str, Any]]:
        with self._cond:
            return [{
                "id": line.settings.id,
                "source": line.settings.source,
                "kind": line.settings.kind,
                "level": "high" if line.pin.state else "low",
                "active": line.is_active_level(line.stable_high),
                "debounce_ms": line.settings.debounce_ms,
                "glitches": line.glitches,
                "changes": line.changes,
            } for line in self._lines]

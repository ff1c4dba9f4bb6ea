"""GPIO inputs through gpiozero pins, with our own "stable for N ms" debounce.

The pin factory is passed in (looked up by gpio.backend in
`gateway.drivers.backends`): lgpio on a Raspberry Pi, gpiozero's MockFactory on
the simulator. gpiozero's `bounce_time` is not used: its
mock backend ignores it and a lock-out debounce reports the first edge of a
bounce. Here a new level counts only once it has held for `debounce_ms`; an
excursion that ends sooner is a glitch, counted per input and shown in
`alarmgw inputs`, and raises nothing.

Edges can be lost (by the kernel, or hidden in a glitch), and a lost edge would leave
the debounced state wrong until the next one: a latched panic button would never
alarm. So the debounce thread also re-reads every input's level each `RESYNC_S`
seconds (in memory; nothing is written). A level that disagrees with the debounced
state, with no edge pending, is treated like an edge: if it still disagrees after the
debounce time (at least `RESYNC_HOLD_MS`) and no edge came meanwhile, it is a change,
counted per input as a missed edge (`missed_edges` in `alarmgw status` and `inputs`).
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

#: How often every input's level is re-read to find a lost edge, in seconds.
RESYNC_S = 1.0
#: How long a level found by a re-read must hold before it counts, at least, in ms: an
#: input with `debounce_ms = 0` still gives its edge callback (which runs a little after
#: the level changes) the time to arrive, so that a re-read racing it is not a missed edge.
RESYNC_HOLD_MS = 20


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
        self.resyncing = False
        """The pending deadline was set by a re-read of the level, not by an edge."""
        self.glitches = 0
        self.changes = 0
        self.missed_edges = 0
        """Changes found by re-reading the level: their edge never came."""
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
                 on_glitch: Callable[[str, int, int], None] | None = None,
                 resync_s: float = RESYNC_S) -> None:
        """`inputs`: the configured GPIO inputs; `factory`: a gpiozero pin factory;
        `door`: called with each confirmed change (must not block); `on_glitch(input id,
        glitches so far, CLOCK_BOOTTIME ns)`: called for each glitch (must not block);
        `resync_s`: how often every level is re-read (a lost edge), in seconds."""
        self.factory = factory
        self.resync_ns = int(resync_s * 1e9)
        self._next_resync_ns = 0
        self._read_errors: dict[str, str] = {}
        """By input id: the last error re-reading its level (logged once, on change)."""
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
            line.resyncing = False  # an edge came: it decides, as ever
            if line.debounce_ns == 0:
                line.deadline_ns = None
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

    def _read(self, line: _Line) -> bool | None:
        """The pin's level now, or None when it cannot be read (logged on change)."""
        sid = line.settings.id
        try:
            high = bool(line.pin.state)
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            if self._read_errors.get(sid) != msg:
                self._read_errors[sid] = msg
                log.error("input %s (GPIO%d): cannot re-read the level: %s", sid,
                          line.settings.gpio, msg)
            return None
        if self._read_errors.pop(sid, None) is not None:
            log.info("input %s (GPIO%d): its level can be read again", sid, line.settings.gpio)
        return high

    def _resync(self, line: _Line, now: int) -> None:
        """Re-read a line with nothing pending: a level that disagrees with the debounced
        state starts a deadline, as an edge would (its edge was lost, or is still on its
        way: an edge arriving before the deadline takes over)."""
        high = self._read(line)
        if high is None or high == line.stable_high:
            return
        line.resyncing = True
        line.run_start_ns = now
        line.deadline_ns = now + max(line.debounce_ns, RESYNC_HOLD_MS * 1_000_000)

    def _run(self) -> None:
        while True:
            due: list[InputChange] = []
            missed: list[tuple[str, int, bool, int]] = []
            with self._cond:
                if self._stop:
                    return
                now = mono_ns()
                resync = now >= self._next_resync_ns
                if resync:
                    self._next_resync_ns = now + self.resync_ns
                next_deadline: int | None = None
                for line in self._lines:
                    if line.deadline_ns is None and resync:
                        self._resync(line, now)
                    dl = line.deadline_ns
                    if dl is None:
                        continue
                    if dl <= now:
                        line.deadline_ns = None
                        found_by_read, line.resyncing = line.resyncing, False
                        high = self._read(line)
                        if high is not None and high != line.stable_high:
                            # Held since the last edge (or the re-read that found it) for
                            # the whole debounce time.
                            due.append(self._confirm(line, high, line.run_start_ns))
                            if found_by_read:
                                line.missed_edges += 1
                                missed.append((line.settings.id, line.settings.gpio, high,
                                               line.missed_edges))
                    elif next_deadline is None or dl < next_deadline:
                        next_deadline = dl
                if not due:
                    if not self._lines:
                        self._cond.wait()  # no GPIO input: nothing to re-read until stop
                        continue
                    wake = self._next_resync_ns if next_deadline is None else min(
                        next_deadline, self._next_resync_ns)
                    self._cond.wait(max(0, wake - now) / 1e9)
            for sid, pin, high, count in missed:
                log.warning("input %s (GPIO%d): its level changed to %s without an edge (found"
                            " by re-reading it; %d missed edge(s) so far): check the wiring"
                            " for interference", sid, pin, "high" if high else "low", count)
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
                "missed_edges": line.missed_edges,
            } for line in self._lines]

"""Outputs and linkage: sounders, strobes and lamps that follow alarms, off the alarm path.

The engine tells us about every committed event through `on_committed`, a
Service listener that runs in the engine thread: it only queues the event
and returns. The linkage thread decides which outputs must be on (from the
config's [[links]] and from `alarmgw output` commands) and hands the
wanted state to each output's own writer thread. A writer switches its
output (a GPIO pin, or a Modbus coil written by its bus's poll thread),
retries a failed write with tenacity, and when the retries are spent
reports the output as faulty (a `fault` event with the output as its
device) and keeps trying every `retry_interval_s` until it works
(`fault_cleared`). So a dead module delays neither an alarm nor any other
output.

Outputs start off. On a clean stop they are switched off again; after a
restart a still latched panic button raises its alarm at start, and the
alarm switches its links' outputs on again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential

from gateway.clock import mono_ns
from gateway.config.outputs import LinkSettings, OutputSettings
from gateway.drivers import FaultChange
from gateway.engine import Committed
from gateway.errors import HardwareError, ModbusError, OutputError

log = logging.getLogger(__name__)

#: Attempts per switching before the output is reported faulty.
ATTEMPTS = 4
#: First wait between two attempts, in seconds (doubling, at most 1 s).
FIRST_BACKOFF_S = 0.05
#: How often a faulty output is tried again, in seconds.
RETRY_INTERVAL_S = 2.0
#: How long a clean stop waits for outputs to go off, in seconds.
STOP_GRACE_S = 2.0

_TRIGGERS = ("alarm", "tamper")
_CLEARS = ("restore", "tamper_cleared")


class Switch(Protocol):
    """Something that switches one output. `set` raises HardwareError when it cannot."""

    def set(self, on: bool) -> None: ...

    def close(self) -> None: ...


class GpioSwitch:
    """An output on a GPIO pin through the gpiozero pin factory."""

    def __init__(self, settings: OutputSettings, factory: Any) -> None:
        assert settings.gpio is not None
        self.settings = settings
        self._on_high = settings.active_level == "high"
        try:
            self._pin = factory.pin(settings.gpio)
            self._pin.function = "output"
            self._pin.state = not self._on_high  # off
        except Exception as exc:
            raise OutputError(f"output {settings.id}: cannot set up GPIO{settings.gpio} as an"
                              f" output: {exc}; check that no other program uses the pin"
                              ) from exc

    def set(self, on: bool) -> None:
        try:
            self._pin.state = on == self._on_high
        except Exception as exc:
            raise OutputError(f"cannot drive GPIO{self.settings.gpio}: {exc}") from exc

    def close(self) -> None:
        try:
            self._pin.close()
        except Exception:
            log.exception("output %s: error closing GPIO%s", self.settings.id, self.settings.gpio)


class CoilSwitch:
    """An output on a Modbus coil, written by the poll thread of the module's bus."""

    def __init__(self, settings: OutputSettings,
                 write: Callable[[str, int, bool], Any], wait_s: float) -> None:
        """`write(device, address, on)` returns a Future; `wait_s`: how long to wait for it."""
        assert settings.device is not None
        self.settings = settings
        self._write = write
        self.wait_s = wait_s

    def set(self, on: bool) -> None:
        s = self.settings
        assert s.device is not None
        fut = self._write(s.device, s.address, on)
        try:
            fut.result(self.wait_s)
        except ModbusError:
            raise  # (a ModbusTimeoutError is a TimeoutError too: keep it first)
        except FutureTimeout:
            fut.cancel()
            raise OutputError(f"coil {s.address} of {s.device} was not written within"
                              f" {self.wait_s:.1f} s") from None

    def close(self) -> None:
        pass


@dataclass
class _Activation:
    """Why an output is on."""

    by: str
    mode: str
    """'for' (until `deadline`), 'reset' or 'restore' (while `inputs` are active)."""
    deadline: float | None = None
    inputs: frozenset[str] = frozenset()


class _Writer:
    """One output's writer thread: makes the output what `want` says, retrying."""

    def __init__(self, settings: OutputSettings, switch: Switch,
                 door: Callable[[FaultChange], None], *, attempts: int, first_backoff_s: float,
                 retry_interval_s: float) -> None:
        self.settings = settings
        self.switch = switch
        self._door = door
        self.attempts = attempts
        self.first_backoff_s = first_backoff_s
        self.retry_interval_s = retry_interval_s
        self._cond = threading.Condition()
        self.want = False
        self.applied: bool | None = None
        """What the output was last switched to; None before the first switching."""
        self._stopping = False
        self._retry_at: float | None = None
        self.fault_open = False
        self.switchings = 0
        self.failures = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name=f"output-{settings.id}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("output %s: writer did not stop within %.0f s", self.settings.id, timeout)

    def request(self, on: bool) -> None:
        with self._cond:
            if on != self.want:
                self.want = on
                self._retry_at = None
                self._cond.notify_all()

    def wait_applied(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.applied == self.want, timeout)

    def _sleep(self, seconds: float) -> None:
        # tenacity's sleep: cut short by stop or by a new wanted state.
        want = self.want
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or self.want != want, seconds)
        if self.want != want:
            raise _Superseded

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping and self.applied == self.want:
                        return
                    due = self.applied != self.want and (
                        self._retry_at is None or time.monotonic() >= self._retry_at)
                    if due:
                        break
                    if self._stopping:
                        return  # a faulty output is not waited for on stop
                    timeout = None if self._retry_at is None else max(
                        0.0, self._retry_at - time.monotonic())
                    self._cond.wait(timeout)
                on = self.want
            self._switch(on)

    def _switch(self, on: bool) -> None:
        attempts = 1 if self._stopping else self.attempts
        t0 = time.monotonic()
        tries = 0

        def count(state: RetryCallState) -> None:
            nonlocal tries
            tries = state.attempt_number

        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=self.first_backoff_s, max=1.0),
            retry=retry_if_exception_type(HardwareError),
            sleep=self._sleep,
            before=count,
            reraise=True,
        )
        try:
            retrying(self.switch.set, on)
        except _Superseded:
            return
        except HardwareError as exc:
            with self._cond:
                self.failures += 1
                self.last_error = str(exc)
                self._retry_at = time.monotonic() + self.retry_interval_s
                report = not self.fault_open and not self._stopping
                if report:
                    self.fault_open = True
            log.warning("output %s: cannot switch %s after %d attempts: %s", self.settings.id,
                        "on" if on else "off", tries, exc)
            if report:
                self._report(on, exc, tries, time.monotonic() - t0)
            return
        except Exception:
            log.exception("output %s: switching failed unexpectedly", self.settings.id)
            with self._cond:
                self._retry_at = time.monotonic() + self.retry_interval_s
            return
        with self._cond:
            self.applied = on
            self.switchings += 1
            self._retry_at = None
            cleared = self.fault_open
            self.fault_open = False
            self._cond.notify_all()
        log.info("output %s (%s) %s", self.settings.id, self.settings.name, "ON" if on else "off")
        if cleared:
            s = self.settings
            self._door(FaultChange(device_id=s.id, name=s.name, source=s.source, active=False,
                                   reason="", mono_ns=mono_ns(), location=s.location,
                                   detail={"output": s.id}))

    def _report(self, on: bool, exc: HardwareError, tries: int, took_s: float) -> None:
        s = self.settings
        if s.gpio is not None:
            check = "check the relay board's supply and wiring"
        else:
            check = (f"check module {s.device} (alarmgw status shows its bus and frames) and"
                     f" that it has coil {s.address}")
        reason = (f"output {s.id} ({s.name}) cannot be switched {'on' if on else 'off'}:"
                  f" {exc} ({tries} attempts in {took_s:.1f} s); {check}")
        detail: dict[str, Any] = {"output": s.id, "wanted": "on" if on else "off",
                                  "attempts": tries}
        if s.device is not None:
            # "module", not "device": the engine keys an open fault (in memory and in the
            # store) by its "device", which is this output's id, and a detail key of that
            # name would list the output's fault under its module and overwrite the
            # module's own fault where both are open.
            detail.update({"bus": s.bus, "unit": s.unit, "module": s.device})
        detail["error"] = exc.kind if isinstance(exc, ModbusError) else "output"
        self._door(FaultChange(device_id=s.id, name=s.name, source=s.source, active=True,
                               reason=reason, mono_ns=mono_ns(), location=s.location,
                               detail=detail))


class _Superseded(Exception):
    """The wanted state changed while a failed switching waited to be retried."""


class Outputs:
    """Every configured output and link."""

    def __init__(self, outputs: Sequence[OutputSettings], links: Sequence[LinkSettings], *,
                 door: Callable[[FaultChange], None], pin_factory: Any | None = None,
                 write_coil: Callable[[str, int, bool], Any] | None = None,
                 coil_wait_s: Callable[[str], float] | None = None,
                 attempts: int = ATTEMPTS, first_backoff_s: float = FIRST_BACKOFF_S,
                 retry_interval_s: float = RETRY_INTERVAL_S,
                 tests_fire_links: bool = False) -> None:
        """`door`: the engine's door, for the outputs' faults; `pin_factory`: for GPIO outputs;
        `write_coil(device, address, on)` -> Future: the Modbus driver's; `coil_wait_s(device)`:
        how long a coil write of that module may take, in seconds; `tests_fire_links`: a
        test press under inspection fires its links as an alarm would
        (`inspection.sounder`; otherwise it switches nothing)."""
        self.tests_fire_links = tests_fire_links
        self.settings = {o.id: o for o in outputs}
        self.links = list(links)
        self._door = door
        self._pin_factory = pin_factory
        self._write_coil = write_coil
        self._coil_wait_s = coil_wait_s or (lambda device: 2.0)
        self.attempts = attempts
        self.first_backoff_s = first_backoff_s
        self.retry_interval_s = retry_interval_s
        self.writers: dict[str, _Writer] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._activations: dict[tuple[str, str], _Activation] = {}
        """(why, output id) -> activation; why is 'link N' or 'manual'."""
        self._active_inputs: set[str] = set()
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Set every output up (off) and start the threads."""
        try:
            for s in self.settings.values():
                self.writers[s.id] = _Writer(
                    s, self._make_switch(s), self._door, attempts=self.attempts,
                    first_backoff_s=self.first_backoff_s, retry_interval_s=self.retry_interval_s)
        except BaseException:
            for w in self.writers.values():
                w.switch.close()
            self.writers.clear()
            raise
        for w in self.writers.values():
            w.start()  # its first switching is "off": a coil may still be on from before
        self._thread = threading.Thread(target=self._run, name="linkage", daemon=True)
        self._thread.start()

    def _make_switch(self, s: OutputSettings) -> Switch:
        if s.gpio is not None:
            if self._pin_factory is None:
                raise OutputError(f"output {s.id}: no GPIO pin factory")
            return GpioSwitch(s, self._pin_factory)
        if self._write_coil is None or s.device is None:
            raise OutputError(f"output {s.id}: no Modbus driver for module {s.device}")
        return CoilSwitch(s, self._write_coil, self._coil_wait_s(s.device))

    def stop(self) -> None:
        """Switch every output off (waiting up to STOP_GRACE_S), then stop."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        for w in self.writers.values():
            w.request(False)
        deadline = time.monotonic() + STOP_GRACE_S
        for w in self.writers.values():
            w.stop(max(0.1, deadline - time.monotonic()))
        for w in self.writers.values():
            w.switch.close()
        self.writers.clear()

    # -- inputs ---------------------------------------------------------------------------

    def on_committed(self, committed: Committed) -> None:
        """Service listener (engine thread): queue the event; never blocks."""
        if committed.type in _TRIGGERS or committed.type in _CLEARS or committed.type == "drill" \
                or (committed.type == "test" and self._fires(committed)):
            self._queue.put(committed)

    def _fires(self, committed: Committed) -> bool:
        """Whether a test event fires links: a press under inspection, with
        inspection.sounder on (a `test-alarm` test never does)."""
        return self.tests_fire_links and "inspection" in committed.detail

    def set(self, output_id: str, on: bool, for_s: float | None = None,
            by: str = "alarmgw output") -> dict[str, Any]:
        """Switch an output by hand: on (for `for_s` seconds, or until switched off), or off
        (which also ends every link's hold on it)."""
        if output_id not in self.settings:
            known = ", ".join(sorted(self.settings)) or "none"
            raise KeyError(f"no output {output_id!r} (outputs: {known})")
        done = threading.Event()
        self._queue.put((output_id, on, for_s, by, done))
        done.wait(5.0)
        return self.status_of(output_id)

    # -- the linkage thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            timeout = self._next_deadline()
            try:
                msg = self._queue.get(timeout=timeout)
            except queue.Empty:
                msg = "tick"
            if msg is None:
                return
            try:
                if isinstance(msg, Committed):
                    self._on_event(msg)
                elif isinstance(msg, tuple):
                    output_id, on, for_s, by, done = msg
                    self._on_manual(output_id, on, for_s, by)
                    done.set()
                self._apply()
            except Exception:
                log.exception("linkage: error handling %r", msg)

    def _next_deadline(self) -> float | None:
        with self._lock:
            deadlines = [a.deadline for a in self._activations.values()
                         if a.deadline is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _on_event(self, c: Committed) -> None:
        now = time.monotonic()
        with self._lock:
            if c.type in _CLEARS:
                self._active_inputs.discard(c.point_id)
                for key, act in list(self._activations.items()):
                    if act.mode == "restore" and c.point_id in act.inputs:
                        rest = act.inputs - {c.point_id}
                        if rest:
                            self._activations[key] = _Activation(act.by, act.mode, None, rest)
                        else:
                            del self._activations[key]
                return
            if c.type in _TRIGGERS or c.type == "test":
                self._active_inputs.add(c.point_id)
            for i, link in enumerate(self.links):
                if c.point_id not in link.inputs:
                    continue
                if c.type == "drill" and not link.drill:
                    continue
                by = f"link {i + 1}: {c.type} of {c.point_id} (event seq {c.seq})"
                for out in link.outputs:
                    key = (f"link {i + 1}", out)
                    old = self._activations.get(key)
                    if link.for_s is not None:
                        self._activations[key] = _Activation(by, "for", now + link.for_s)
                    elif link.until == "reset":
                        self._activations[key] = _Activation(by, "reset")
                    else:
                        inputs = (old.inputs if old is not None else frozenset()) | {c.point_id}
                        self._activations[key] = _Activation(by, "restore", None, inputs)
                log.info("linkage: %s switches %s on", by, ", ".join(link.outputs))

    def _on_manual(self, output_id: str, on: bool, for_s: float | None, by: str) -> None:
        with self._lock:
            if on:
                if for_s is not None:
                    act = _Activation(by, "for", time.monotonic() + for_s)
                else:
                    act = _Activation(by, "reset")
                self._activations[("manual", output_id)] = act
            else:
                for key in [k for k in self._activations if k[1] == output_id]:
                    del self._activations[key]
        log.warning("output %s switched %s by %s", output_id, "on" if on else "off", by)

    def _apply(self) -> None:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, a in self._activations.items()
                        if a.deadline is not None and a.deadline <= now]:
                del self._activations[key]
            wanted = {o: False for o in self.settings}
            for (_, out) in self._activations:
                wanted[out] = True
        for out, on in wanted.items():
            w = self.writers.get(out)
            if w is not None:
                w.request(on)

    # -- status --------------------------------------------------------------------------------

    def status_of(self, output_id: str) -> dict[str, Any]:
        s = self.settings[output_id]
        now = time.monotonic()
        with self._lock:
            acts = [{"by": a.by,
                     "until": (a.mode if a.deadline is None
                               else f"{max(0.0, a.deadline - now):.1f} s left")}
                    for (why, out), a in self._activations.items() if out == output_id]
        w = self.writers.get(output_id)
        return {
            "id": s.id, "name": s.name, "location": s.location, "source": s.source,
            "on": bool(w.want) if w else False,
            "applied": None if w is None or w.applied is None else bool(w.applied),
            "state": ("faulty" if w and w.fault_open else
                      "ok" if w and w.applied == w.want else "switching"),
            "switchings": w.switchings if w else 0, "failures": w.failures if w else 0,
            "last_error": (w.last_error or None) if w else None,
            "held_by": acts,
        }

    def status(self) -> list[dict[str, Any]]:
        return [self.status_of(o) for o in self.settings]

    def wait_applied(self, output_id: str, timeout: float) -> bool:
        """Wait until the output is what it should be (tests, `alarmgw output`)."""
        return self.writers[output_id].wait_applied(timeout)

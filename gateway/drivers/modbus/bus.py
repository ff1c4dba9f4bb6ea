"""One Modbus bus: its link, its poll thread, its modules' supervision and its coil writes.

RS-485 is half duplex: one request at a time, so a bus is one thread that owns its
link. A poll cycle reads every configured point with the requests
`gateway.config.modbus.plan_reads` plans (points close together on a module in one
request); a cycle starts every `poll_interval_ms`, or at once when the previous one
took longer: no idle time beyond the interval. Coil writes for outputs go between
two requests.

Supervision: a module that fails `fail_after` requests in a row (timeout, bad CRC,
exception code, reply from another unit) is reported faulty once, naming the bus, the
unit and the reason, with its last frames; it is then probed once every
`probe_interval_s`, at most one faulty module per cycle, with its timeout capped to
three times the longest round trip it ever had (every fourth probe waits the full
timeout, in case it came back slower): a dead module costs the others a few
milliseconds now and then, never a timeout every cycle. When it answers again, its
fault clears and its points are read: a latched panic button pressed during the
outage raises its alarm. A serial port that is missing or a TCP module that cannot be
reached is a fault of the bus, tried again every `probe_interval_s`.

Somewhat over 500 lines, and one thing: the poll loop, the supervision and the
writes share one thread, one lock and one set of per-module records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import mono_ns
from gateway.config.modbus import (
    TIMEOUT_MARGIN_S,
    BusSettings,
    DeviceSettings,
    ModbusPointSettings,
    ReadBlock,
    plan_reads,
)
from gateway.drivers import FaultChange, InputChange
from gateway.drivers.modbus.frames import (
    Exchange,
    FrameRing,
    decode_read,
    exception_name,
    read_pdu,
    write_coil_pdu,
)
from gateway.drivers.modbus.links import Endpoint, Link, make_link
from gateway.errors import (
    ModbusError,
    ModbusExceptionReplyError,
    ModbusFrameError,
    ModbusLinkError,
)

log = logging.getLogger(__name__)

#: Frames of the failing unit put in its fault event.
FRAMES_IN_FAULT = 8

Door = Callable[[InputChange | FaultChange], None]


@dataclass
class _Point:
    settings: ModbusPointSettings
    value: bool | None = None
    """The bit as last read."""
    reported: bool | None = None
    """Active state last handed to the engine; None before the first reading."""
    candidate: bool | None = None
    candidate_ns: int = 0
    changes: int = 0


@dataclass
class _Device:
    settings: DeviceSettings
    blocks: list[ReadBlock]
    state: str = "unknown"
    """'unknown' (not answered yet), 'ok' or 'faulty'."""
    consecutive: int = 0
    requests: int = 0
    failures: int = 0
    last_error: str = ""
    last_error_kind: str = ""
    faulty_since: float | None = None
    next_probe: float = 0.0
    last_ok: float | None = None
    max_rtt_s: float | None = None
    """The longest round trip seen from this module, in seconds."""
    probes: int = 0
    """Probes since it became faulty."""


@dataclass
class _Write:
    device: _Device
    address: int
    on: bool
    future: Future[None]


@dataclass
class BusCounters:
    requests: int = 0
    ok: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    exceptions: int = 0
    wrong_unit: int = 0
    malformed: int = 0
    link_errors: int = 0
    writes: int = 0
    write_failures: int = 0
    rtt_sum_s: float = 0.0
    rtt_max_s: float = 0.0
    cycles: int = 0
    last_cycle_s: float = 0.0
    max_cycle_s: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)

    def count_error(self, kind: str) -> None:
        attr = {"timeout": "timeouts", "crc": "crc_errors", "exception": "exceptions",
                "wrong_unit": "wrong_unit", "malformed": "malformed",
                "link": "link_errors"}.get(kind, "malformed")
        setattr(self, attr, getattr(self, attr) + 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "ok": self.ok, "timeouts": self.timeouts,
            "crc_errors": self.crc_errors, "exceptions": self.exceptions,
            "wrong_unit": self.wrong_unit, "malformed": self.malformed,
            "link_errors": self.link_errors, "writes": self.writes,
            "write_failures": self.write_failures,
            "rtt_mean_ms": round(self.rtt_sum_s / self.ok * 1000, 2) if self.ok else None,
            "rtt_max_ms": round(self.rtt_max_s * 1000, 2) if self.ok else None,
            "cycles": self.cycles,
            "last_cycle_ms": round(self.last_cycle_s * 1000, 2),
            "max_cycle_ms": round(self.max_cycle_s * 1000, 2),
        }


class ModbusBus:
    """One bus: its link, its poll thread, its modules' supervision and its coil writes."""

    def __init__(self, settings: BusSettings, devices: Sequence[DeviceSettings],
                 points: Sequence[ModbusPointSettings], door: Door, *, fail_after: int = 3,
                 probe_interval_s: float = 2.0, endpoint: Endpoint | None = None,
                 link: Link | None = None) -> None:
        """`door`: the engine's door (never blocks); `endpoint`: where the bus really is
        (the simulator's TCP port); `link`: a link to use instead of making one."""
        self.settings = settings
        self._door = door
        self.fail_after = fail_after
        self.probe_interval_s = probe_interval_s
        self.ring = FrameRing()
        self.link: Link = link or make_link(settings, self.ring, endpoint)
        mine = [d for d in devices if d.bus == settings.id]
        my_points = [p for p in points if p.bus == settings.id]
        blocks = plan_reads(my_points, mine)
        self._devices = [_Device(d, [b for b in blocks if b.device == d.id]) for d in mine]
        self._by_id = {d.settings.id: d for d in self._devices}
        self._points = {p.id: _Point(p) for p in my_points}
        self.timeout_s = settings.timeout_ms / 1000
        self.interval_s = settings.poll_interval_ms / 1000
        self.counters = BusCounters()
        self._cond = threading.Condition()
        self._writes: deque[_Write] = deque()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.link_state = "closed"
        """'closed' (not tried yet), 'up', or 'down' (its fault is open)."""
        self.link_error = ""
        self._next_link_try = 0.0
        self._link_fault_open = False
        self.first_cycle = threading.Event()
        """Set once every module has been asked once (or the bus found down)."""

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"modbus-{self.settings.id}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.link.abort()
        if self._thread is not None:
            self._thread.join(10.0)
            if self._thread.is_alive():
                log.error("Modbus bus %s: poll thread did not stop within 10 s", self.settings.id)
            self._thread = None
        self.link.close()
        with self._cond:
            writes, self._writes = list(self._writes), deque()
        for w in writes:
            if w.future.set_running_or_notify_cancel():
                w.future.set_exception(ModbusLinkError(self.settings.id, w.device.settings.unit,
                                                       "the Modbus driver is stopping"))

    # -- outputs --------------------------------------------------------------------

    def has_device(self, device_id: str) -> bool:
        return device_id in self._by_id

    def write_coil(self, device_id: str, address: int, on: bool) -> Future[None]:
        """Queue a coil write for the poll thread; the future has its outcome (a ModbusError
        on failure). Never blocks."""
        fut: Future[None] = Future()
        w = _Write(self._by_id[device_id], address, on, fut)
        with self._cond:
            if self._stopping:
                fut.set_exception(ModbusLinkError(self.settings.id, w.device.settings.unit,
                                                  "the Modbus driver is stopping"))
                return fut
            self._writes.append(w)
            self._cond.notify_all()
        return fut

    def _do_writes(self) -> None:
        while True:
            with self._cond:
                if not self._writes:
                    return
                w = self._writes.popleft()
            if not w.future.set_running_or_notify_cancel():
                continue
            unit = w.device.settings.unit
            if self.link_state != "up":
                w.future.set_exception(ModbusLinkError(
                    self.settings.id, unit, f"bus {self.settings.id} is down: {self.link_error}"))
                continue
            pdu = write_coil_pdu(w.address, w.on)
            with self._cond:
                self.counters.writes += 1
            try:
                ex = self._transact(unit, pdu)
                if ex.reply != pdu:
                    raise ModbusFrameError(self.settings.id, unit, "malformed",
                                           f"unit {unit} did not echo the coil write")
            except ModbusError as exc:
                with self._cond:
                    self.counters.write_failures += 1
                if isinstance(exc, ModbusLinkError):
                    self._link_down(exc)
                w.future.set_exception(exc)
            else:
                w.future.set_result(None)

    # -- the poll loop ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                if self.link_state != "up" and not self._open_link():
                    self._idle_until(self._next_link_try)
                    continue
                cycle_start = time.monotonic()
                probed = False
                for dev in self._devices:
                    self._do_writes()
                    if self._stopping or self.link_state != "up":
                        break
                    if dev.state == "faulty":
                        # A faulty module costs at most one timeout per cycle, and only
                        # every probe interval.
                        if probed or cycle_start < dev.next_probe:
                            continue
                        probed = True
                    self._poll_device(dev)
                self._do_writes()
                self.first_cycle.set()
                cycle = time.monotonic() - cycle_start
                with self._cond:
                    self.counters.cycles += 1
                    self.counters.last_cycle_s = cycle
                    self.counters.max_cycle_s = max(self.counters.max_cycle_s, cycle)
                self._idle_until(cycle_start + self.interval_s)
        except Exception:
            log.exception("Modbus bus %s: poll thread failed; it stops here", self.settings.id)

    def _idle_until(self, when: float) -> None:
        """Wait until `when`, doing coil writes as they come (failing them while the bus is
        down)."""
        while True:
            with self._cond:
                while not self._stopping and not self._writes:
                    left = when - time.monotonic()
                    if left <= 0:
                        return
                    self._cond.wait(left)
                if self._stopping:
                    return
            self._do_writes()

    def _open_link(self) -> bool:
        now = time.monotonic()
        if now < self._next_link_try:
            return False
        try:
            self.link.open()
        except ModbusLinkError as exc:
            self._link_down(exc)
            return False
        first = self.link_state == "closed"
        self.link_state = "up"
        self.link_error = ""
        if self._link_fault_open:
            self._link_fault_open = False
            log.warning("Modbus bus %s (%s) is back", self.settings.id, self.link.where)
            self._door(FaultChange(device_id=self.settings.id, name=self._bus_name(),
                                   source=self.settings.source, active=False, reason="",
                                   mono_ns=mono_ns(), detail={"bus": self.settings.id}))
        elif first:
            log.info("Modbus bus %s open: %s, %d modules, poll every %d ms", self.settings.id,
                     self.link.where, len(self._devices), self.settings.poll_interval_ms)
        return True

    def _link_down(self, exc: ModbusLinkError) -> None:
        self.link.close()
        if self._stopping:
            return  # the read was aborted by stop()
        with self._cond:
            self.counters.link_errors += 1
        self.link_state = "down"
        self.link_error = str(exc)
        self._next_link_try = time.monotonic() + self.probe_interval_s
        if not self._link_fault_open:
            self._link_fault_open = True
            self.first_cycle.set()
            self._door(FaultChange(
                device_id=self.settings.id, name=self._bus_name(), source=self.settings.source,
                active=True, reason=str(exc), mono_ns=mono_ns(),
                detail={"bus": self.settings.id, "where": self.link.where,
                        "devices": [d.settings.id for d in self._devices],
                        "last_frames": self.ring.last(FRAMES_IN_FAULT)}))

    def _bus_name(self) -> str:
        kind = "RS-485 bus" if self.settings.type == "rtu" else "Modbus TCP link"
        return f"Modbus {kind} {self.settings.id} ({self.link.where})"

    def _transact(self, unit: int, pdu: bytes, timeout_s: float | None = None) -> Exchange:
        with self._cond:
            self.counters.requests += 1
        try:
            ex = self.link.transact(unit, pdu, self.timeout_s if timeout_s is None else timeout_s)
        except ModbusError as exc:
            with self._cond:
                self.counters.count_error(exc.kind)
            raise
        with self._cond:
            self.counters.ok += 1
            self.counters.rtt_sum_s += ex.rtt_s
            self.counters.rtt_max_s = max(self.counters.rtt_max_s, ex.rtt_s)
        return ex

    def _probe_timeout_s(self, dev: _Device, block: ReadBlock) -> float:
        """A faulty module's capped timeout: three times the longest round trip it ever had
        (at least the wire time plus a margin), so that probing it does not stretch the
        cycle by a whole timeout; every fourth probe waits the full timeout, in case it came
        back slower than it was."""
        if dev.max_rtt_s is None or dev.probes % 4 == 0:
            return self.timeout_s
        floor = block.wire_s(self.settings) + TIMEOUT_MARGIN_S
        return min(self.timeout_s, max(3 * dev.max_rtt_s, floor))

    def _poll_device(self, dev: _Device) -> None:
        unit = dev.settings.unit
        probing = dev.state == "faulty"
        if probing:
            dev.probes += 1
        for block in dev.blocks:
            if self._stopping:
                return
            dev.requests += 1
            timeout = self._probe_timeout_s(dev, block) if probing else None
            try:
                ex = self._transact(unit, read_pdu(block.function_code, block.start,
                                                   block.count), timeout)
                try:
                    values = decode_read(block.table, block.count, ex.reply)
                except ValueError as exc:
                    with self._cond:
                        self.counters.malformed += 1
                    raise ModbusFrameError(self.settings.id, unit, "malformed",
                                           f"unit {unit} answered {block.label} with a reply"
                                           f" that does not fit: {exc}") from exc
            except ModbusLinkError as exc:
                self._link_down(exc)
                return
            except ModbusError as exc:
                self._device_failed(dev, block, exc)
                return
            self._device_ok(dev)
            dev.max_rtt_s = max(dev.max_rtt_s or 0.0, ex.rtt_s)
            # The module sampled its inputs when the request reached it.
            sample_ns = ex.sent_ns + round(block.request_bytes * self.settings.char_s * 1e9)
            self._update_points(block, values, sample_ns)

    def _device_ok(self, dev: _Device) -> None:
        was = dev.state
        with self._cond:
            dev.consecutive = 0
            dev.last_ok = time.monotonic()
            dev.state = "ok"
            dev.faulty_since = None
            dev.probes = 0
        if was == "faulty":
            log.warning("Modbus unit %d (%s) on bus %s answers again", dev.settings.unit,
                        dev.settings.id, self.settings.id)
            self._door(FaultChange(device_id=dev.settings.id, name=dev.settings.name,
                                   source=dev.settings.source, active=False, reason="",
                                   mono_ns=mono_ns(), location=dev.settings.location,
                                   detail={"bus": self.settings.id, "unit": dev.settings.unit}))

    def _device_failed(self, dev: _Device, block: ReadBlock, exc: ModbusError) -> None:
        if self._stopping:
            return  # the read was aborted by stop()
        now = time.monotonic()
        with self._cond:
            dev.consecutive += 1
            dev.failures += 1
            dev.last_error = str(exc)
            dev.last_error_kind = exc.kind
            if dev.state == "faulty":
                dev.next_probe = now + self.probe_interval_s
                return
            if dev.consecutive < self.fail_after:
                return
            dev.state = "faulty"
            dev.faulty_since = now
            dev.next_probe = now + self.probe_interval_s
            n = dev.consecutive
        reason = self._fault_reason(dev, block, exc, n)
        log.debug("Modbus bus %s: %s", self.settings.id, reason)
        detail: dict[str, Any] = {
            "bus": self.settings.id, "unit": dev.settings.unit, "where": self.link.where,
            "error": exc.kind, "consecutive_failures": n,
            "counters": self.counters_dict(),
            "last_frames": self.ring.last(FRAMES_IN_FAULT, dev.settings.unit),
        }
        if isinstance(exc, ModbusExceptionReplyError):
            detail["exception_code"] = exc.code
        self._door(FaultChange(device_id=dev.settings.id, name=dev.settings.name,
                               source=dev.settings.source, active=True, reason=reason,
                               mono_ns=mono_ns(), location=dev.settings.location,
                               detail=detail))

    def _fault_reason(self, dev: _Device, block: ReadBlock, exc: ModbusError, n: int) -> str:
        unit = dev.settings.unit
        s = self.settings
        who = f"Modbus unit {unit} ({dev.settings.id}) on bus {s.id} ({self.link.where})"
        if exc.kind == "timeout":
            check = (f"check the module's power, the A/B wiring and that its address is {unit}"
                     if s.type == "rtu" else
                     f"check the module's power and that unit id {unit} is right")
            return (f"{who} does not answer: {n} requests in a row got no reply within"
                    f" {s.timeout_ms} ms; {check}")
        if exc.kind == "crc":
            return (f"{who} answers with bad CRCs ({n} in a row): check that the module is set"
                    f" to {s.baud} baud 8{s.parity}{s.stopbits}, the bus termination and the"
                    " cable's shield")
        if exc.kind == "wrong_unit":
            return (f"{who}: {exc}, {n} times in a row: two modules may share an address,"
                    " or a module answers for another; check the address switches")
        if isinstance(exc, ModbusExceptionReplyError):
            return (f"{who} refuses to read {block.label}: exception {exc.code}"
                    f" ({exception_name(exc.code)}), {n} times in a row; check the addresses"
                    " in the config against the module's manual")
        return f"{who} answers with frames that cannot be used ({n} in a row): {exc}"

    def _update_points(self, block: ReadBlock, values: list[bool] | list[int],
                       sample_ns: int) -> None:
        changes: list[InputChange] = []
        with self._cond:
            for pid in block.points:
                pt = self._points[pid]
                s = pt.settings
                raw = values[s.address - block.start]
                bit = bool(raw) if s.bit is None else bool((int(raw) >> s.bit) & 1)
                pt.value = bit
                active = bit == s.active_value
                if pt.reported is None:
                    pt.reported = active
                    pt.candidate = None
                    changes.append(InputChange(s.id, active, sample_ns, initial=True))
                elif active == pt.reported:
                    pt.candidate = None
                else:
                    if pt.candidate != active:
                        pt.candidate = active
                        pt.candidate_ns = sample_ns
                    if sample_ns - pt.candidate_ns >= s.debounce_ms * 1_000_000:
                        pt.reported = active
                        pt.candidate = None
                        pt.changes += 1
                        changes.append(InputChange(s.id, active, pt.candidate_ns))
        for change in changes:
            self._door(change)

    # -- status ------------------------------------------------------------------------

    def counters_dict(self) -> dict[str, Any]:
        with self._cond:
            return self.counters.as_dict()

    def status(self, frames: int = 16) -> dict[str, Any]:
        now = time.monotonic()
        with self._cond:
            devices = [{
                "id": d.settings.id, "unit": d.settings.unit, "name": d.settings.name,
                "state": d.state, "requests": d.requests, "failures": d.failures,
                "consecutive_failures": d.consecutive, "last_error": d.last_error or None,
                "faulty_for_s": None if d.faulty_since is None else round(now - d.faulty_since,
                                                                          1),
                "last_ok_ago_s": None if d.last_ok is None else round(now - d.last_ok, 3),
                "reads": [b.label for b in d.blocks],
            } for d in self._devices]
            counters = self.counters.as_dict()
        return {
            "id": self.settings.id, "type": self.settings.type, "where": self.link.where,
            "link": self.link_state, "link_error": self.link_error or None,
            "poll_interval_ms": self.settings.poll_interval_ms,
            "timeout_ms": self.settings.timeout_ms,
            "counters": counters, "devices": devices, "frames": self.ring.last(frames),
        }

    def point_status(self) -> list[dict[str, Any]]:
        with self._cond:
            return [{
                "id": p.settings.id, "source": p.settings.source, "kind": p.settings.kind,
                "device": p.settings.device,
                "device_state": self._by_id[p.settings.device].state,
                "bit": None if p.value is None else int(p.value),
                "contact": p.settings.contact,
                "active": p.reported, "debounce_ms": p.settings.debounce_ms,
                "changes": p.changes,
            } for p in self._points.values()]

"""One camera of the snapshot lane: its pre-alarm ring, its shots after an alarm, its health.

A `CameraUnit` has two threads of its own: the *sampler* keeps the pre-alarm ring
(memory only) and probes the camera's health; the *shooter* takes the shots after
an alarm, one capture serving every alarm whose shot is due. A camera whose
captures fail `fault_after` times in a row becomes a `fault` event through the
engine's door, and a `fault_cleared` when a capture succeeds again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock, mono_ns, utc_iso
from gateway.config import CameraSettings
from gateway.drivers import FaultChange
from gateway.drivers.cameras import Camera, Picture
from gateway.errors import CameraError, GatewayError
from gateway.store import Outbox
from gateway.uplink.protocol import (
    SnapshotPhase,
    encode,
    json_properties,
    snapshot_failed_document,
    snapshot_failed_topic,
    snapshot_properties,
    snapshot_topic,
)

log = logging.getLogger(__name__)

#: Event types whose point's cameras take pictures (the alarm lane's types).
SNAPSHOT_TYPES = frozenset({"alarm", "tamper", "test", "drill"})
#: After a failed capture, look again this soon (seconds) to confirm or clear it.
CONFIRM_S = 5.0
#: While a camera is faulty, probe it this often (seconds) to notice its recovery.
FAULTY_PROBE_S = 30.0


class CameraHealth:
    """Supervision of one camera: consecutive failures open a fault, one success clears it.

    Every capture counts: the sampler's probes and ring pictures, the alarm
    shots and a technician's `alarmgw snapshot` through the service.
    """

    def __init__(self, settings: CameraSettings, door: Callable[[FaultChange], None],
                 on_change: Callable[[], None] = lambda: None) -> None:
        """`door`: the engine's door, for the fault events; `on_change()`: called after
        every recorded capture (outside the lock)."""
        self.settings = settings
        self._door = door
        self._on_change = on_change
        self._lock = threading.Lock()
        self.failures = 0
        """Consecutive failed captures."""
        self.faulty = False
        self.captures = 0
        self.failed = 0
        self.last_ok_mono: float | None = None
        self.last_ok_at: str | None = None
        self.last_error: str | None = None
        self.last_reason: str | None = None
        self.last_duration_s: float | None = None
        self.changed = threading.Event()
        """Set on every failure, so the sampler re-plans its next probe."""

    def ok(self, picture: Picture) -> None:
        with self._lock:
            self.captures += 1
            self.failures = 0
            self.last_ok_mono = time.monotonic()
            self.last_ok_at = utc_iso(picture.taken_wall_ns)
            self.last_duration_s = picture.duration_s
            clear = self.faulty
            self.faulty = False
        self._on_change()
        if clear:
            s = self.settings
            log.warning("camera %s (%s) gives pictures again", s.id, s.name)
            self._door(FaultChange(s.id, s.name, s.source, False, "", mono_ns(), s.location,
                                   {"fault": "video_loss"}))

    def failure(self, exc: CameraError) -> None:
        s = self.settings
        with self._lock:
            self.captures += 1
            self.failed += 1
            self.failures += 1
            self.last_error = exc.message
            self.last_reason = exc.reason
            open_fault = not self.faulty and self.failures >= s.fault_after
            if open_fault:
                self.faulty = True
            failures = self.failures
        self.changed.set()
        self._on_change()
        if exc.reason == "stopped":
            return
        log.warning("camera %s: %s", s.id, exc.message)
        if open_fault:
            reason = (f"video loss: camera {s.id} ({s.name}) gave no picture {failures} times in"
                      f" a row: {exc.message}")
            self._door(FaultChange(s.id, s.name, s.source, True, reason, mono_ns(), s.location,
                                   {"fault": "video_loss", "error": exc.reason,
                                    "failures": failures}))

    def status(self) -> dict[str, Any]:
        with self._lock:
            state = "faulty" if self.faulty else (
                "ok" if self.last_ok_mono is not None and self.failures == 0 else
                "failing" if self.failures else "unknown")
            return {"state": state, "failures_in_a_row": self.failures,
                    "captures": self.captures, "failed": self.failed,
                    "last_ok_at": self.last_ok_at, "last_error": self.last_error,
                    "last_reason": self.last_reason,
                    "last_duration_ms": None if self.last_duration_s is None
                    else round(self.last_duration_s * 1000, 1)}


@dataclass
class _Burst:
    """The pictures one event wants from one camera."""

    event_id: str
    shots: int
    interval_s: float
    start: float
    """time.monotonic() of the first shot."""
    pre: list[Picture]
    next_shot: int = 1
    pre_stored: bool = False

    @property
    def due(self) -> float:
        return self.start + (self.next_shot - 1) * self.interval_s


@dataclass
class _Counters:
    stored: int = 0
    failed_records: int = 0
    dropped: int = 0
    """Pictures or records the store refused (larger than its whole budget, or a disk error)."""
    bursts: int = 0


class CameraUnit:
    """One camera's driver, ring, supervision and threads."""

    def __init__(self, settings: CameraSettings, camera: Camera, *, outbox: Outbox,
                 clock: Clock, door: Callable[[FaultChange], None],
                 wake: Callable[[], None]) -> None:
        self.settings = settings
        self.id = settings.id
        self.camera = camera
        self._outbox = outbox
        self._clock = clock
        self._wake = wake
        self._cond = threading.Condition()
        self.health = CameraHealth(settings, door, self._notify)
        self._ring: deque[Picture] = deque(maxlen=settings.pre_frames or 1)
        self._bursts: list[_Burst] = []
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.counters = _Counters()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for name, target in (("sampler", self._sample_loop), ("shots", self._shots_loop)):
            t = threading.Thread(target=target, name=f"camera-{self.id}-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop_begin(self) -> None:
        """Ask the threads to end and abort captures in flight (returns at once)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.health.changed.set()
        self.camera.close()

    def stop_join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                log.error("camera %s: thread %s did not stop within %.0f s", self.id, t.name,
                          timeout)
        self._threads.clear()

    # -- the engine's side (never waits on the camera) -------------------------------------

    def ring_frames(self) -> list[Picture]:
        """The pre-alarm pictures young enough to belong to an alarm now, oldest first."""
        s = self.settings
        if s.pre_frames == 0:
            return []
        # A working camera replaces every frame within this; an older one means the
        # sampler has been failing, and the frame no longer shows "just before".
        window_ns = int(((s.pre_frames + 1) * s.pre_interval_s + s.timeout_s) * 1e9)
        oldest = mono_ns() - window_ns
        with self._cond:
            return [p for p in self._ring if p.taken_mono_ns >= oldest]

    def add_burst(self, event_id: str, pre: list[Picture]) -> None:
        s = self.settings
        burst = _Burst(event_id, s.shots, s.interval_s, time.monotonic(), pre)
        with self._cond:
            self._bursts.append(burst)
            self.counters.bursts += 1
            self._cond.notify_all()

    # -- the sampler: pre-alarm ring and health probes ------------------------------------

    def _sample_interval(self) -> float:
        s = self.settings
        interval = s.pre_interval_s if s.pre_frames else s.probe_interval_s
        if self.health.faulty:
            return min(interval, s.probe_interval_s, FAULTY_PROBE_S)
        if self.health.failures:
            return min(interval, s.probe_interval_s, CONFIRM_S)
        return interval

    def _sample_loop(self) -> None:
        next_at = time.monotonic()  # probe at once: know at start whether the camera works
        while True:
            with self._cond:
                if self._stopping:
                    return
            wait = next_at - time.monotonic()
            # Woken early by a failed alarm shot (to confirm it sooner) or by stop.
            if wait > 0 and self.health.changed.wait(wait):
                self.health.changed.clear()
                next_at = min(next_at, time.monotonic() + self._sample_interval())
                continue
            started = time.monotonic()
            try:
                pic = self.camera.capture()
            except CameraError as exc:
                self.health.failure(exc)
                self.health.changed.clear()
            except Exception as exc:  # a driver bug must not end supervision
                log.exception("camera %s: capture failed unexpectedly", self.id)
                self.health.failure(CameraError(self.id, f"driver error: {exc!r}"))
                self.health.changed.clear()
            else:
                self.health.ok(pic)
                if self.settings.pre_frames:
                    with self._cond:
                        self._ring.append(pic)
                        self._cond.notify_all()
            next_at = started + self._sample_interval()

    # -- the shooter: pictures after an alarm ------------------------------------------------

    def _shots_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        break
                    now = time.monotonic()
                    pending_pre = [b for b in self._bursts if not b.pre_stored]
                    due = [b for b in self._bursts if b.next_shot <= b.shots and b.due <= now]
                    if pending_pre or due:
                        break
                    waits = [b.due - now for b in self._bursts if b.next_shot <= b.shots]
                    self._cond.wait(min(waits) if waits else None)
                if self._stopping:
                    break
                for b in pending_pre:
                    b.pre_stored = True
            for b in pending_pre:
                for i, frame in enumerate(b.pre, start=1):
                    self._store_picture(b.event_id, "pre", i, frame)
            self._retire_done()
            if not due:
                continue
            pic: Picture | None = None
            error: CameraError | None = None
            try:
                pic = self.camera.capture()
            except CameraError as exc:
                pic, error = None, exc
            except Exception as exc:
                log.exception("camera %s: capture failed unexpectedly", self.id)
                pic, error = None, CameraError(self.id, f"driver error: {exc!r}")
            if pic is not None:
                self.health.ok(pic)
            else:
                assert error is not None
                self.health.failure(error)
            with self._cond:
                shots = [(b, b.next_shot) for b in due]
                for b in due:
                    b.next_shot += 1
            for b, shot in shots:
                if pic is not None:
                    self._store_picture(b.event_id, "post", shot, pic)
                else:
                    assert error is not None
                    self._store_failure(b.event_id, "post", shot, error)
            self._retire_done()
        self._finish_at_stop()

    def _retire_done(self) -> None:
        with self._cond:
            self._bursts = [b for b in self._bursts
                            if not b.pre_stored or b.next_shot <= b.shots]

    def _finish_at_stop(self) -> None:
        """Keep what is in memory and say which shots will never be taken."""
        with self._cond:
            bursts, self._bursts = self._bursts, []
        stopped = CameraError(self.id, "the gateway stopped before this picture was taken",
                              reason="stopped")
        for b in bursts:
            if not b.pre_stored:
                for i, pic in enumerate(b.pre, start=1):
                    self._store_picture(b.event_id, "pre", i, pic)
            for shot in range(b.next_shot, b.shots + 1):
                self._store_failure(b.event_id, "post", shot, stopped)

    # -- into the outbox ----------------------------------------------------------------

    def _store_picture(self, event_id: str, phase: SnapshotPhase, shot: int, pic: Picture
                       ) -> None:
        props = snapshot_properties(event_id=event_id, camera=self.id, phase=phase, shot=shot,
                                    taken_at=utc_iso(pic.taken_wall_ns),
                                    mono_ns=pic.taken_mono_ns,
                                    time_synced=self._clock.is_synced())
        if self._put(snapshot_topic(event_id, self.id), pic.jpeg, props):
            self._counted("stored")

    def _store_failure(self, event_id: str, phase: SnapshotPhase, shot: int,
                       exc: CameraError) -> None:
        wall, mono = self._clock.now()
        doc = snapshot_failed_document(event_id=event_id, camera=self.id, phase=phase, shot=shot,
                                       reason=exc.reason, error=exc.message, at=utc_iso(wall),
                                       mono_ns=mono, time_synced=self._clock.is_synced())
        props = json_properties(event_id=event_id, camera=self.id, phase=phase,
                                shot=str(shot))
        if self._put(snapshot_failed_topic(event_id, self.id), encode(doc), props):
            self._counted("failed_records")

    def _put(self, topic: str, payload: bytes, props: dict[str, Any]) -> bool:
        try:
            self._outbox.put_bulk(topic, payload, props)
        except GatewayError as exc:
            with self._cond:
                self.counters.dropped += 1
                self._cond.notify_all()
            log.error("camera %s: cannot store %s (%d bytes): %s", self.id, topic, len(payload),
                      exc)
            return False
        self._wake()
        return True

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _counted(self, name: str) -> None:
        with self._cond:
            setattr(self.counters, name, getattr(self.counters, name) + 1)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[CameraUnit], bool], timeout: float) -> bool:
        """Block until `predicate(self)` holds (checked when the ring grows and after each
        store) or timeout; for tests and benchmarks."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def ring_size(self) -> int:
        with self._cond:
            return len(self._ring) if self.settings.pre_frames else 0

    # -- inspection ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        s = self.settings
        with self._cond:
            ring = len(self._ring) if s.pre_frames else 0
            active = len(self._bursts)
        return {
            "id": s.id, "name": s.name, "location": s.location, "driver": s.driver,
            "where": self.camera.where, **self.health.status(),
            "ring": ring, "pre_frames": s.pre_frames, "shots": s.shots,
            "active_bursts": active, "bursts": self.counters.bursts,
            "stored": self.counters.stored, "failed_records": self.counters.failed_records,
            "dropped": self.counters.dropped,
        }



"""The snapshot lane: every camera of the config, linked to the inputs that name them.

`SnapshotLane` opens each camera through the backend registry, and is what the
engine and the service see: `plan()` and `on_committed()` in the engine thread
(never waiting on a camera), the platform's `snapshot` command, and the control
socket's commands. `capture_report` is `alarmgw snapshot`'s one picture.

The frames `plan()` freezes are kept under the event's id, which the engine gives it and
keeps through every retry of a failed commit: `on_committed()` hands each event its own
frames, whatever order the commits succeed in.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.clock import Clock
from gateway.config import CameraSettings, Config
from gateway.drivers import FaultChange, backends
from gateway.drivers.backends import Simulated
from gateway.drivers.cameras import Camera, Picture
from gateway.engine import Committed
from gateway.errors import CameraError
from gateway.snapshots.unit import SNAPSHOT_TYPES, CameraUnit
from gateway.store import Outbox
from gateway.uplink.protocol import (
    snapshot_topic,
)

log = logging.getLogger(__name__)


class _Recorded(Camera):
    """A unit's camera whose captures count for the unit's health."""

    def __init__(self, unit: CameraUnit) -> None:
        super().__init__(unit.settings)
        self._unit = unit

    @property
    def where(self) -> str:
        return self._unit.camera.where

    def capture(self) -> Picture:
        try:
            pic = self._unit.camera.capture()
        except CameraError as exc:
            self._unit.health.failure(exc)
            raise
        self._unit.health.ok(pic)
        return pic


class SnapshotLane:
    """Every camera of the config, linked to the inputs that name them."""

    def __init__(self, config: Config, outbox: Outbox, clock: Clock) -> None:
        self.config = config
        self._outbox = outbox
        self._clock = clock
        self.units: dict[str, CameraUnit] = {}
        self.sims: dict[str, Simulated] = {}
        """The simulators behind simulated cameras (`driver = "sim"`), by camera id."""
        self._links: dict[str, list[str]] = {i.id: list(i.cameras) for i in config.inputs}
        self._links.update({p.id: list(p.cameras) for p in config.modbus.points})
        self._planned: dict[str, dict[str, list[Picture]]] = {}
        """Frames frozen by `plan()` for events not committed yet: event id -> camera id ->
        pre-alarm pictures. Engine thread only."""
        self._started = False

    def start(self, door: Callable[[FaultChange], None], wake: Callable[[], None]) -> None:
        """Open every camera (simulated ones first start their servers) and their threads.

        Nothing here waits on a camera: a camera that does not answer shows up as
        failed probes and then a fault."""
        for s in self.config.cameras:
            camera, sim = backends.camera(s.driver)(s)
            if sim is not None:
                self.sims[s.id] = sim
            unit = CameraUnit(s, camera, outbox=self._outbox, clock=self._clock,
                              door=door, wake=wake)
            self.units[s.id] = unit
        for unit in self.units.values():
            unit.start()
        self._started = True
        if self.units:
            log.info("cameras: %s", ", ".join(
                f"{u.id} ({u.settings.driver}, {u.camera.where})" for u in self.units.values()))

    def stop(self, timeout: float | None = None) -> None:
        units = list(self.units.values())
        for unit in units:
            unit.stop_begin()
        for unit in units:
            unit.stop_join(timeout if timeout is not None else unit.settings.timeout_s + 5.0)
        for sim in self.sims.values():
            sim.stop()
        self.sims.clear()
        self._started = False

    # -- the engine's hooks ------------------------------------------------------------------

    def plan(self, point_id: str, event_type: str, *, event_id: str) -> list[dict[str, Any]]:
        """The event's `snapshots` field. Engine thread: freezes the ring, never waits;
        the frames wait under `event_id` for `on_committed` of that event."""
        if event_type not in SNAPSHOT_TYPES:
            return []
        cams = [self.units[c] for c in self._links.get(point_id, ()) if c in self.units]
        plan: list[dict[str, Any]] = []
        frozen: dict[str, list[Picture]] = {}
        for unit in cams:
            pre = unit.ring_frames()
            if not pre and unit.settings.shots == 0:
                continue
            frozen[unit.id] = pre
            plan.append({"camera": unit.id, "name": unit.settings.name, "pre": len(pre),
                         "post": unit.settings.shots})
        if plan:
            self._planned[event_id] = frozen
        return plan

    def on_committed(self, committed: Committed) -> None:
        """Hand a committed event to its cameras. Engine thread: only enqueues."""
        if committed.type not in SNAPSHOT_TYPES:
            return
        frozen = self._planned.pop(committed.event_id, None)
        if frozen is None:
            return
        for cam_id, pre in frozen.items():
            unit = self.units.get(cam_id)
            if unit is not None:
                unit.add_burst(committed.event_id, pre)

    # -- control and status ----------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        return [u.status() for u in self.units.values()]

    def unit(self, camera_id: str) -> CameraUnit:
        unit = self.units.get(camera_id)
        if unit is None:
            known = ", ".join(self.units) or "none configured"
            raise KeyError(f"no camera {camera_id!r} (cameras: {known})")
        return unit

    def control_commands(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {"snapshot": self._control_snapshot, "sim-camera": self._control_sim_camera,
                "cameras": lambda req: self.status()}

    def _control_snapshot(self, req: dict[str, Any]) -> Any:
        """One picture through the service's own driver (a Pi camera it holds open, or a
        simulated camera that only exists inside it); it counts for the camera's health."""
        unit = self.unit(str(req.get("camera", "")))
        return capture_report(unit.settings, _Recorded(unit))

    def take_on_request(self, camera_id: str, request_id: str) -> dict[str, Any]:
        """The platform's `snapshot` command: one picture now, uplinked on
        `snapshot/{request_id}/{camera}` with phase "request". Blocks up to the camera's
        timeout: call it from the commands thread, never the engine's."""
        unit = self.unit(camera_id)
        pic = _Recorded(unit).capture()
        unit._store_picture(request_id, "request", 1, pic)
        return {"camera": camera_id, "topic_suffix": snapshot_topic(request_id, camera_id),
                "bytes": len(pic.jpeg), "width": pic.width, "height": pic.height,
                "duration_ms": round(pic.duration_s * 1000, 1)}

    def _control_sim_camera(self, req: dict[str, Any]) -> Any:
        cam_id = str(req.get("camera", ""))
        sim = self.sims.get(cam_id)
        if sim is None:
            sims = ", ".join(self.sims) or "none: no camera has driver \"sim\""
            raise ValueError(f"no simulated camera {cam_id!r} (simulated cameras: {sims})")
        return sim.control(req)



def capture_report(settings: CameraSettings, camera: Camera | None = None) -> dict[str, Any]:
    """Take one picture for a technician (`alarmgw snapshot`): what it gave, or exactly why
    not, as a JSON-able dict with the JPEG in base64 under `jpeg_b64`."""
    cam = camera or backends.open_camera(settings)
    t0 = time.monotonic()
    try:
        pic = cam.capture()
    except CameraError as exc:
        return {"ok": False, "camera": settings.id, "where": cam.where, "reason": exc.reason,
                "error": exc.message, "duration_ms": round((time.monotonic() - t0) * 1000, 1)}
    finally:
        if camera is None:
            cam.close()
    return {"ok": True, "camera": settings.id, "where": cam.where, "bytes": len(pic.jpeg),
            "width": pic.width, "height": pic.height,
            "duration_ms": round(pic.duration_s * 1000, 1),
            "jpeg_b64": base64.b64encode(pic.jpeg).decode("ascii")}

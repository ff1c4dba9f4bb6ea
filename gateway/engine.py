"""The engine: turns input changes into committed events. It owns the state.

Drivers hand changes in through one thread-safe door (`Engine.door`), which
only enqueues. The engine thread takes them in order, decides what they
mean (a panic input going active is an alarm, going back is a restore), and
commits the event to the outbox before anything else happens to it; then it
wakes the uplink. The engine knows nothing of wires or of MQTT.

An event whose commit fails (a full disk, an I/O error) is held in memory, whole: its
event id, its snapshot plan and its fault bookkeeping (`Outbox.commit_event`'s
`fault_open`/`fault_closed`) are the ones the retry commits. Held events are retried every
second, after each message, and before any newer event is committed, so that the store's
order stays the order of the occurrences whenever the store can take them.

A panic or tamper input under inspection (`begin_inspection`, from gateway.inspection)
is tested, not live: its activation is a `test` event carrying the inspection's id, and
its return a `restore` (or `tamper_cleared`) carrying it too. Which points are under
inspection is engine state, changed in the engine thread in the same step that commits
the window's `inspection_started` (or `inspection_ended`): every change handled after
that step sees the new state, and every event it commits comes after the window's.

Other threads read the state through `call()` (a consistent view, at the engine's pace)
or `view()`: a copy the engine publishes after each change, for threads that must never
wait for it (the uplink's heartbeat).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from gateway.clock import Clock, mono_ns, utc_iso
from gateway.drivers import FaultChange, InputChange
from gateway.errors import GatewayError, StoreError
from gateway.events import (
    LANE,
    EventType,
    Occurrence,
    Point,
    encode,
    event_document,
    new_event_id,
)
from gateway.store import EventDraft, Outbox, StoreWrite

log = logging.getLogger(__name__)

_RETRY_S = 1.0
RESTORED_FAULT_GRACE_S = 60.0
"""A fault open when the service stopped, not reported again by its driver within this
long after start, is cleared: the device came back while the service was down."""


@dataclass
class PointState:
    """What the engine knows of one configured input."""

    point: Point
    active: bool | None = None
    """None until the driver's initial reading arrives."""
    since: str | None = None
    last_event_type: str | None = None
    last_event_seq: int | None = None
    last_event_id: str | None = None
    alarms: int = 0


class PlanSnapshots(Protocol):
    """`plan(point_id, event_type, event_id=...)`: the event's `snapshots` field. `event_id`
    is the id the committed event will carry, the same through every retry of its commit,
    and the one `on_committed` then sees (the snapshot lane keeps its frozen pre-alarm
    frames under it)."""

    def __call__(self, point_id: str, event_type: str, *, event_id: str
                 ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class EngineView:
    """The engine's state as it stood after one of its changes (read only: shared)."""

    points: tuple[dict[str, Any], ...]
    """As `Engine.points_status`."""
    faults: tuple[dict[str, Any], ...]
    """As `Engine.open_faults`."""


@dataclass
class _Held:
    """An occurrence on its way to the store with everything its commit carries, kept as is
    while a failed commit is retried."""

    occ: Occurrence
    event_id: str
    fault_open: dict[str, Any] | None = None
    fault_closed: str | None = None
    writes: tuple[StoreWrite, ...] = ()


@dataclass(frozen=True)
class Committed:
    """An event the store has fsynced."""

    seq: int
    event_id: str
    type: str
    point_id: str
    occurred_mono_ns: int = 0
    occurred_wall_ns: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


class _Call:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()


class _Stop:
    pass


class Engine:
    """Links inputs to events. One thread; state is touched only from it."""

    def __init__(self, site: str, gateway: str, points: Sequence[Point], *, outbox: Outbox,
                 clock: Clock, on_committed: Callable[[Committed], None],
                 plan_snapshots: PlanSnapshots | None = None
                 ) -> None:
        """`points`: every configured input; `on_committed` runs in the engine thread
        right after each fsync (wake the uplink there; it must not block);
        `plan_snapshots(point_id, event_type, event_id=...)` lists the pictures that will
        follow an event, for its `snapshots` field."""
        self.site = site
        self.gateway = gateway
        self.outbox = outbox
        self.clock = clock
        self._on_committed = on_committed
        self._plan = plan_snapshots
        self._queue: queue.SimpleQueue[InputChange | FaultChange | _Call | _Stop] = (
            queue.SimpleQueue())
        self._points = {p.id: PointState(p) for p in points}
        self._faults: dict[str, dict[str, Any]] = {}
        self._restored: set[str] = set()
        """Faults carried over from before the start, not yet confirmed by their driver."""
        self._restored_deadline: float | None = None
        self._inspecting: dict[str, str] = {}
        """Point id -> the id of the inspection it is under (tested, not live)."""
        self._presses: dict[str, int] = {}
        """Point id -> test presses of it in its current inspection."""
        self._pending: deque[_Held] = deque()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the counters read by stats()
        self.started_mono = time.monotonic()
        self.loops = 0
        """Messages handled; a watchdog sees progress in it."""
        self.committed_total = 0
        self.commit_failures = 0
        self.last_commit_mono: float | None = None
        self.observers: list[Callable[[InputChange | FaultChange], None]] = []
        """Called in the engine thread with each change after it was handled (e.g. the
        live input watch); must not block."""
        self._view = EngineView(tuple(self.points_status()), tuple(self.open_faults()))
        self._view_stale = False

    # -- the door ---------------------------------------------------------

    def door(self, change: InputChange | FaultChange) -> None:
        """Hand in an input change. Thread-safe; never blocks; any driver may call it."""
        self._queue.put(change)

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` in the engine thread (after everything already handed in)."""
        c = _Call(fn)
        self._queue.put(c)
        return c.future

    def view(self) -> EngineView:
        """The inputs and open faults as they stood after the engine's last change. Any
        thread; never waits (the engine replaces the whole view after each change it
        handled, and never changes one it has published). Read only."""
        return self._view

    def _publish_view(self) -> None:
        if self._view_stale:
            self._view_stale = False
            self._view = EngineView(tuple(self.points_status()), tuple(self.open_faults()))

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish what was handed in, then stop."""
        self._queue.put(_Stop())
        if self._thread is not None:
            self._thread.join(10.0)
            if self._thread.is_alive():
                log.error("engine thread did not stop within 10 s")
            self._thread = None

    def _restore_faults(self) -> None:
        try:
            records = self.outbox.open_faults()
        except GatewayError as exc:
            log.error("engine: cannot read the faults open at the last stop: %s", exc)
            return
        for rec in records:
            self._faults[rec["device"]] = rec
            self._restored.add(rec["device"])
            self._view_stale = True
        if records:
            self._restored_deadline = time.monotonic() + RESTORED_FAULT_GRACE_S
            log.warning("%d fault(s) were open when the service stopped (%s); each is cleared"
                        " unless its device is reported faulty again within %.0f s",
                        len(records), ", ".join(r["device"] for r in records),
                        RESTORED_FAULT_GRACE_S)

    def _clear_unconfirmed(self) -> None:
        self._restored_deadline = None
        for device in sorted(self._restored):
            rec = self._faults.get(device)
            if rec is None:
                continue
            self._handle_fault(FaultChange(
                device, rec.get("name", device), rec.get("source", ""), False, "", mono_ns(),
                rec.get("location", ""),
                {"cleared": "not reported faulty again after the service restarted"}))
        self._restored.clear()

    def _timeout(self) -> float | None:
        timeouts = []
        if self._pending:
            timeouts.append(_RETRY_S)
        if self._restored_deadline is not None:
            timeouts.append(max(0.0, self._restored_deadline - time.monotonic()))
        return min(timeouts) if timeouts else None

    def _run(self) -> None:
        self._restore_faults()
        while True:
            self._publish_view()
            try:
                msg = self._queue.get(timeout=self._timeout())
            except queue.Empty:
                self._retry_pending()
                if self._restored_deadline is not None and \
                        time.monotonic() >= self._restored_deadline:
                    self._clear_unconfirmed()
                continue
            self.loops += 1
            if isinstance(msg, _Stop):
                self._retry_pending()
                if self._pending:
                    log.critical("stopping with %d events that could not be committed",
                                 len(self._pending))
                return
            try:
                if isinstance(msg, InputChange):
                    self._handle_change(msg)
                    self._observe(msg)
                elif isinstance(msg, FaultChange):
                    self._handle_fault(msg)
                    self._observe(msg)
                else:
                    try:
                        msg.future.set_result(msg.fn())
                    except BaseException as exc:
                        msg.future.set_exception(exc)
            except Exception:
                log.exception("engine: error handling %r", msg)
            if self._pending:
                self._retry_pending()

    def _observe(self, change: InputChange | FaultChange) -> None:
        for fn in self.observers:
            try:
                fn(change)
            except Exception:
                log.exception("engine: observer %r failed", fn)

    # -- meaning ----------------------------------------------------------

    def _handle_change(self, change: InputChange) -> None:
        state = self._points.get(change.point_id)
        if state is None:
            log.error("engine: change from unknown input %r ignored", change.point_id)
            return
        inp = state.point
        was = state.active
        state.active = change.active
        state.since = utc_iso(self.clock.wall_at(change.mono_ns))
        self._view_stale = True
        etype: EventType | None = None
        if inp.kind not in ("panic", "tamper"):
            return  # a plain input: its state is shown and may drive linkage, no event
        inspection = self._inspecting.get(inp.id)
        if inspection is not None:
            self._handle_test(state, change, was, inspection)
            return
        if change.initial:
            if change.active:
                etype = "alarm" if inp.kind == "panic" else "tamper"
                log.warning("input %s (%s, %s) is already active at start: raising %s",
                            inp.id, inp.name, inp.source, etype)
        elif was is None or change.active != was:
            if inp.kind == "panic":
                etype = "alarm" if change.active else "restore"
            else:
                etype = "tamper" if change.active else "tamper_cleared"
        if etype is None:
            return
        self._commit(Occurrence(
            type=etype,
            point=inp,
            wall_ns=self.clock.wall_at(change.mono_ns),
            mono_ns=change.mono_ns,
            time_synced=self.clock.is_synced(),
            detected_at_startup=change.initial,
        ))

    def _handle_test(self, state: PointState, change: InputChange, was: bool | None,
                     inspection: str) -> None:
        """A change of a point under inspection: its press is a `test`, never an alarm."""
        inp = state.point
        if not change.initial and was is not None and change.active == was:
            return
        if not change.active and (change.initial or was is None):
            return  # normal at start: nothing was pressed
        detail: dict[str, Any] = {"inspection": inspection}
        if change.active:
            etype: EventType = "test"
            presses = self._presses.get(inp.id, 0) + 1
            self._presses[inp.id] = presses
            detail["press"] = presses
            if presses > 1:
                log.warning("input %s pressed again (press %d) in inspection %s", inp.id,
                            presses, inspection)
        else:
            etype = "restore" if inp.kind == "panic" else "tamper_cleared"
        self._commit(Occurrence(
            type=etype, point=inp, wall_ns=self.clock.wall_at(change.mono_ns),
            mono_ns=change.mono_ns, time_synced=self.clock.is_synced(),
            detected_at_startup=change.initial, detail=detail))

    def begin_inspection(self, inspection_id: str, point_ids: Collection[str], point: Point,
                         detail: dict[str, Any], writes: Sequence[StoreWrite] = ()
                         ) -> Committed | None:
        """Commit `inspection_started` (about `point`, with `detail` and `writes`) and put
        `point_ids` under inspection, in one step of the engine thread (call through
        `call()`): no change of theirs is handled between the two. None when the commit
        failed: the event is held and retried before any later one, as every event is."""
        unknown = sorted(set(point_ids) - set(self._points))
        if unknown:
            raise KeyError(f"no input {unknown[0]!r} in the config (inputs:"
                           f" {', '.join(sorted(self._points))})")
        busy = sorted(p for p in point_ids if p in self._inspecting)
        if busy:
            raise ValueError(f"input {busy[0]!r} is already under inspection"
                             f" {self._inspecting[busy[0]]}")
        wall, mono = self.clock.now()
        committed = self._commit(Occurrence(
            type="inspection_started", point=point, wall_ns=wall, mono_ns=mono,
            time_synced=self.clock.is_synced(), detail=detail), writes=writes)
        for pid in point_ids:
            self._inspecting[pid] = inspection_id
            self._presses.pop(pid, None)
        self._view_stale = True
        return committed

    def end_inspection(self, inspection_id: str, point: Point, detail: dict[str, Any],
                       writes: Sequence[StoreWrite] = ()) -> Committed | None:
        """Put the points of `inspection_id` back live and commit `inspection_ended` (call
        through `call()`); None when the commit failed (held and retried)."""
        for pid in [p for p, i in self._inspecting.items() if i == inspection_id]:
            del self._inspecting[pid]
            self._presses.pop(pid, None)
        self._view_stale = True
        wall, mono = self.clock.now()
        return self._commit(Occurrence(
            type="inspection_ended", point=point, wall_ns=wall, mono_ns=mono,
            time_synced=self.clock.is_synced(), detail=detail), writes=writes)

    def record(self, etype: EventType, point: Point, detail: dict[str, Any],
               writes: Sequence[StoreWrite] = ()) -> Committed | None:
        """Commit an event the gateway raises by itself about `point` (an inspection's
        report, a notice), with `writes` in its transaction (call through `call()`)."""
        wall, mono = self.clock.now()
        return self._commit(Occurrence(type=etype, point=point, wall_ns=wall, mono_ns=mono,
                                       time_synced=self.clock.is_synced(), detail=detail),
                            writes=writes)

    def resume_inspection(self, inspection_id: str, presses: dict[str, int]) -> None:
        """Put the points of a window that outlived a restart under inspection again, with
        their presses so far (call through `call()`, before the drivers start); no event:
        the platform has its `inspection_started`."""
        for pid, n in presses.items():
            if pid in self._points:
                self._inspecting[pid] = inspection_id
                self._presses[pid] = n
        self._view_stale = True

    def inspecting(self) -> dict[str, str]:
        """Point id -> the inspection it is under (call through `call()`)."""
        return dict(self._inspecting)

    def _handle_fault(self, fault: FaultChange) -> None:
        if fault.active and fault.device_id in self._restored:
            # Open before the restart and faulty still: the same failure, no new event.
            self._restored.discard(fault.device_id)
            log.info("fault of %s (open before the restart) confirmed by its driver",
                     fault.device_id)
            return
        self._restored.discard(fault.device_id)
        is_open = fault.device_id in self._faults
        if fault.active == is_open:
            return  # already known: one fault event per failure, one clear per recovery
        self._view_stale = True
        since = utc_iso(self.clock.wall_at(fault.mono_ns))
        record: dict[str, Any] | None = None
        if fault.active:
            record = {
                "device": fault.device_id, "name": fault.name, "source": fault.source,
                "location": fault.location, "reason": fault.reason, "since": since,
                **fault.detail}
            self._faults[fault.device_id] = record
            log.error("FAULT: %s (%s): %s", fault.name, fault.source, fault.reason)
        else:
            opened = self._faults.pop(fault.device_id)
            log.warning("FAULT CLEARED: %s (%s), faulty since %s", fault.name, fault.source,
                        opened["since"])
        detail: dict[str, Any] = {"reason": fault.reason} if fault.reason else {}
        detail.update(fault.detail)
        self._commit(Occurrence(
            type="fault" if fault.active else "fault_cleared",
            point=Point(fault.device_id, fault.name, fault.location, "device", fault.source),
            wall_ns=self.clock.wall_at(fault.mono_ns),
            mono_ns=fault.mono_ns,
            time_synced=self.clock.is_synced(),
            detail=detail,
        ), fault_open=record, fault_closed=None if fault.active else fault.device_id)

    def door_escalation(self, point: Point, step: str, detail: dict[str, Any]) -> None:
        """Record an escalation step as an event. Thread-safe; never blocks."""
        wall, mono = self.clock.now()
        occ = Occurrence(type="escalation", point=point, wall_ns=wall, mono_ns=mono,
                         time_synced=self.clock.is_synced(), detail={"step": step, **detail})
        self.call(lambda: self._commit(occ))

    def raise_test(self, point_id: str, drill: bool, requested_by: str) -> Committed:
        """Commit a test or drill event for `point_id` (call through `call()`)."""
        state = self._points.get(point_id)
        if state is None:
            known = ", ".join(sorted(self._points))
            raise KeyError(f"no input {point_id!r} in the config (inputs: {known})")
        wall, mono = self.clock.now()
        occ = Occurrence(
            type="drill" if drill else "test",
            point=state.point,
            wall_ns=wall,
            mono_ns=mono,
            time_synced=self.clock.is_synced(),
            detail={"requested_by": requested_by},
        )
        committed = self._commit(occ)
        if committed is None:
            raise StoreError("the event could not be committed; it is held in memory and"
                             " retried every second (see the service log)")
        return committed

    def _commit(self, occ: Occurrence, *, fault_open: dict[str, Any] | None = None,
                fault_closed: str | None = None, writes: Sequence[StoreWrite] = ()
                ) -> Committed | None:
        """Commit a new occurrence, after the events held in memory (retried first); None
        when it could not be committed, and is held in memory too."""
        t0 = time.monotonic()
        if self._pending:
            self._retry_pending()
        event_id = new_event_id()
        if self._plan is not None and not occ.snapshots:
            try:
                plan = self._plan(occ.point.id, occ.type, event_id=event_id)
            except Exception:
                log.exception("engine: snapshot plan for %s failed; the event goes without",
                              occ.point.id)
                plan = []
            if plan:
                occ = replace(occ, snapshots=tuple(plan))
        return self._try_commit(_Held(occ, event_id, fault_open, fault_closed, tuple(writes)),
                                t0)

    def _try_commit(self, held: _Held, t0: float) -> Committed | None:
        """One attempt at committing `held`; on failure it goes at the end of the events
        held in memory."""
        occ = held.occ

        def make(seq: int) -> EventDraft:
            doc = event_document(occ, event_id=held.event_id, seq=seq, site=self.site,
                                 gateway=self.gateway, boot_id=self.clock.boot_id,
                                 occurred_at=utc_iso(occ.wall_ns))
            return EventDraft(event_id=held.event_id, event_type=occ.type, topic="event",
                              payload=encode(doc))

        try:
            seq, draft = self.outbox.commit_event(LANE[occ.type], make,
                                                  fault_open=held.fault_open,
                                                  fault_closed=held.fault_closed,
                                                  writes=held.writes)
        except GatewayError as exc:
            with self._lock:
                self.commit_failures += 1
            log.critical("could not commit %s of input %s: %s; holding it in memory and"
                         " retrying", occ.type, occ.point.id, exc)
            self._pending.append(held)
            return None
        committed = Committed(seq=seq, event_id=draft.event_id, type=occ.type,
                              point_id=occ.point.id, occurred_mono_ns=occ.mono_ns,
                              occurred_wall_ns=occ.wall_ns, detail=dict(occ.detail))
        with self._lock:
            self.committed_total += 1
            self.last_commit_mono = time.monotonic()
        state = self._points.get(occ.point.id)
        if state is not None:
            state.last_event_type = occ.type
            state.last_event_seq = seq
            state.last_event_id = draft.event_id
            if occ.type == "alarm":
                state.alarms += 1
            self._view_stale = True
        level = logging.WARNING if LANE[occ.type] == 0 else logging.INFO
        log.log(level, "%s: %s (%s) at %s: event seq %d id %s committed in %.1f ms",
                occ.type.upper(), occ.point.id, occ.point.name, occ.point.source, seq,
                draft.event_id,
                (time.monotonic() - t0) * 1000)
        try:
            self._on_committed(committed)
        except Exception:
            log.exception("engine: on_committed hook failed")
        return committed

    def _retry_pending(self) -> None:
        while self._pending:
            held = self._pending.popleft()
            if self._try_commit(held, time.monotonic()) is None:
                # _try_commit put it back at the end; keep the original order instead.
                self._pending.rotate(1)
                return

    # -- inspection (call through call() for a consistent view) ------------

    def points_status(self) -> list[dict[str, Any]]:
        return [{
            "id": s.point.id,
            "name": s.point.name,
            "location": s.point.location,
            "kind": s.point.kind,
            "source": s.point.source,
            "active": s.active,
            "since": s.since,
            "last_event": None if s.last_event_seq is None else {
                "type": s.last_event_type, "seq": s.last_event_seq, "id": s.last_event_id},
            "alarms": s.alarms,
            "inspection": self._inspecting.get(s.point.id),
        } for s in self._points.values()]

    def open_faults(self) -> list[dict[str, Any]]:
        """Faults not yet cleared (call through call() for a consistent view)."""
        return [dict(f) for f in self._faults.values()]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "committed": self.committed_total,
                "commit_failures": self.commit_failures,
                "pending_in_memory": len(self._pending),
                "loops": self.loops,
            }

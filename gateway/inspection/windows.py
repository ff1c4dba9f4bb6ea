"""Inspection windows (巡检): test every button without calling the police, and keep the
record of which ones were last proven working.

`Inspections.open` puts points under inspection for a number of minutes: the engine
commits `inspection_started` and marks the points in one step of its thread, so every
press of theirs after it is a `test` event (gateway.engine), in the alarm lane behind the
window's start. The window ends at its deadline (reason `timeout`), by `close` (`stopped`,
from `alarmgw inspect stop` or the platform's `inspect_stop`), or at a restart that finds
its deadline passed; its end commits `inspection_ended` (the points are live again in the
same step) and then `inspection_report`: passed, failed or not tested, per point.

What a window saw is kept in the store (gateway.store.inspections) as it happens, so that
a window survives a SIGKILL: at the next start it resumes when its deadline has not
passed, judged by CLOCK_BOOTTIME within the boot it began in and, across a reboot, by the
wall clock only when it was synced both when the window began and now (a Pi has no RTC);
otherwise it ends then, and its report says what was not tested.

The per-point record of the last proof is read once at start and kept in memory; its ages
are computed when asked (`status`) and at each tick of this module's thread, which writes
nothing unless a point has just crossed `inspection.max_untested_days`: then one `notice`
event is committed with the notice's record in its transaction, so it is never sent again,
not even after a restart.

Threads: `open`/`close` run on the caller's thread (the control socket's, the commands'
work thread) and wait for the engine; the hooks (`on_committed` in the engine thread,
`on_delivery` in the uplink thread) only update records and queue; the `inspection` thread
keeps the deadline, the ticks and the lamp blinks.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from gateway.clock import Clock, utc_iso
from gateway.config import Config
from gateway.config.inspection import DEFAULT_MINUTES, MAX_MINUTES
from gateway.engine import Committed, Engine
from gateway.errors import GatewayError
from gateway.events import Point
from gateway.inspection import record as rec
from gateway.store import Outbox, Row, StoreWrite
from gateway.uplink.commands import Command, Refusal

log = logging.getLogger(__name__)

#: How long the engine may take to commit a window's event, in seconds.
_ENGINE_WAIT_S = 10.0
#: How long the ack lamp blinks when the platform's broker has a test press, in seconds.
BLINK_S = 1.0


class InspectionRefused(GatewayError, ValueError):
    """A window that cannot be opened or closed as asked; the message says why."""


class Inspections:
    """The inspection windows of one service and the maintenance record of its points."""

    def __init__(self, config: Config, *, engine: Engine, outbox: Outbox,
                 clock: Clock, tick_s: float = 30.0) -> None:
        """`tick_s`: how often the untested ages are looked at, in seconds (the health
        interval); `clock`: wall and boot time (a test gives one that runs fast)."""
        self.settings = config.inspection
        self.engine = engine
        self.outbox = outbox
        self.clock = clock
        self.tick_s = tick_s
        points = ([Point(i.id, i.name, i.location, i.kind, i.source) for i in config.inputs]
                  + [Point(p.id, p.name, p.location, p.kind, p.source)
                     for p in config.modbus.points])
        self.points = [p for p in points if p.kind in ("panic", "tamper")]
        """The points an inspection may test: every panic and tamper input."""
        self._names = {p.id: p.name for p in points}
        self._all_ids = [p.id for p in points]
        # A fault of a Modbus point's module or bus fails the point in a window.
        self._devices: dict[str, set[str]] = {}
        for mp in config.modbus.points:
            for device in (mp.device, mp.bus):
                self._devices.setdefault(device, set()).add(mp.id)
        self.blink: Callable[[str], None] | None = None
        """fn(point_id): blink the point's ack lamp once (the service sets it)."""
        self._lock = threading.Lock()  # guards the records below; never held over a wait
        self._ops = threading.Lock()  # one open or close at a time
        self._window: dict[str, Any] | None = None
        self._deadline_mono: int | None = None
        """CLOCK_BOOTTIME of the running window's deadline, in ns."""
        self._tests: dict[str, str] = {}
        """Test event id -> point, for the running window."""
        self._proven: dict[str, dict[str, Any]] = {}
        self._noticed: dict[str, str] = {}
        self._untested: list[dict[str, Any]] = []
        self._wake = threading.Event()
        self._blinks: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Read the record, resume (or end) a window left open, start the thread. Before the
        drivers start: a latched point of a resumed window is a test, not an alarm."""
        self._proven = self.outbox.proven_records()
        self._noticed = self.outbox.notices_sent()
        wall, mono = self.clock.now()
        synced = self.clock.is_synced()
        new = [StoreWrite("proven", p.id, rec.unproven_since(wall, mono, self.clock.boot_id,
                                                             synced))
               for p in self.points if p.id not in self._proven]
        if new:
            # Once per point ever: its untested age counts from now.
            self.outbox.write(*new)
            self._proven.update({w.key: w.record for w in new})
        for window in self.outbox.inspection_windows(open_only=True):
            self._resume(window)
        self._thread = threading.Thread(target=self._run, name="inspection", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; a running window stays open on disk and resumes at the next
        start (when its deadline has not passed by then)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(_ENGINE_WAIT_S + 5.0)
            self._thread = None

    def _resume(self, window: dict[str, Any]) -> None:
        wall, mono = self.clock.now()
        synced = self.clock.is_synced()
        remaining_ns: int | None = None
        if window.get("boot_id") == self.clock.boot_id:
            remaining_ns = int(window["deadline_mono_ns"]) - mono
        elif synced and window.get("started_synced"):
            remaining_ns = int(window["deadline_wall_ns"]) - wall
        if remaining_ns is None or remaining_ns <= 0:
            reason = "timeout" if remaining_ns is not None else "restart"
            log.warning("inspection %s: %s while the service was down; ending it now",
                        window["id"], "its deadline passed" if reason == "timeout" else
                        "its deadline cannot be judged after a reboot with the clock not"
                        " synced")
            with self._lock:
                self._window = window
                self._tests = {}
            self._end(reason, by=None, while_down=True)
            return
        # In this boot's clock from now on (the record is rewritten once, so a second
        # restart in this boot judges it by CLOCK_BOOTTIME again).
        window = dict(window, boot_id=self.clock.boot_id, deadline_mono_ns=mono + remaining_ns)
        self.outbox.write(StoreWrite("inspections", window["id"], window))
        presses = {pid: int(r.get("presses") or 0)
                   for pid, r in (window.get("results") or {}).items()}
        with self._lock:
            self._window = window
            self._deadline_mono = mono + remaining_ns
            self._tests = {str(r["test_event"]): pid
                           for pid, r in (window.get("results") or {}).items()
                           if r.get("test_event")}
        engine = self.engine
        engine.call(lambda: engine.resume_inspection(window["id"], presses)).result(
            _ENGINE_WAIT_S)
        log.warning("inspection %s resumed after a restart: %s under test for %.0f s more",
                    window["id"], ", ".join(window["points"]), remaining_ns / 1e9)

    # -- opening and closing ---------------------------------------------------------------

    def open(self, points: Iterable[str] | None, *, minutes: float = DEFAULT_MINUTES,
             by: str, origin: str = "cli") -> dict[str, Any]:
        """Put `points` (None: every panic and tamper input) under inspection for `minutes`
        by `by`; the window's summary. Raises KeyError for a point the config does not
        have, InspectionRefused for one that cannot be tested or while a window runs."""
        chosen = list(dict.fromkeys(points)) if points is not None else [
            p.id for p in self.points]
        testable = {p.id for p in self.points}
        for pid in chosen:
            if pid not in self._names:
                raise KeyError(f"no input {pid!r} in the config (inputs:"
                               f" {', '.join(sorted(self._all_ids))})")
            if pid not in testable:
                raise InspectionRefused(f"input {pid!r} is a plain input (kind input): it"
                                        " raises no event to test; inspect panic and tamper"
                                        " inputs")
        if not chosen:
            raise InspectionRefused("no panic or tamper input in the config to inspect")
        if not 0 < minutes <= MAX_MINUTES:
            raise InspectionRefused(f"an inspection lasts more than 0 and at most"
                                    f" {MAX_MINUTES} minutes, not {minutes:g}")
        by = by.strip()
        if not by:
            raise InspectionRefused("say who inspects (--by NAME): the record keeps it")
        with self._ops:
            with self._lock:
                if self._window is not None:
                    w = self._window
                    raise InspectionRefused(f"inspection {w['id']} by {w['by']} is running"
                                            f" until {w['deadline_at']}; stop it first"
                                            " (alarmgw inspect stop)")
            wall, mono = self.clock.now()
            duration_ns = round(minutes * 60 * 1e9)
            iid = time.strftime("i-%Y%m%d-%H%M%S-", time.gmtime(wall / 1e9)) + \
                secrets.token_hex(2)
            window: dict[str, Any] = {
                "id": iid, "open": True, "by": by, "origin": origin, "points": chosen,
                "minutes": minutes, "started_at": utc_iso(wall), "started_wall_ns": wall,
                "started_mono_ns": mono, "boot_id": self.clock.boot_id,
                "started_synced": self.clock.is_synced(),
                "deadline_at": utc_iso(wall + duration_ns), "deadline_wall_ns": wall + duration_ns,
                "deadline_mono_ns": mono + duration_ns,
                "results": {pid: rec.new_result() for pid in chosen},
                "ended_at": None, "end_reason": None, "ended_by": None, "report": None}
            detail = {"inspection": iid, "by": by, "origin": origin, "points": chosen,
                      "minutes": minutes, "deadline_at": window["deadline_at"]}
            engine = self.engine

            def begin() -> Committed | None:
                # In the engine thread: the faults open now are the window's first.
                for fault in engine.open_faults():
                    for pid in self._devices.get(str(fault.get("device")), ()):
                        if pid in window["results"]:
                            window["results"][pid].update(fault=fault, fault_open=True)
                return engine.begin_inspection(
                    iid, chosen, rec.inspection_point(iid), detail,
                    writes=[StoreWrite("inspections", iid, window)])

            with self._lock:
                self._window, self._tests = window, {}
                self._deadline_mono = mono + duration_ns
            try:
                committed = engine.call(begin).result(_ENGINE_WAIT_S)
            except BaseException:
                with self._lock:
                    self._window = self._deadline_mono = None
                raise
        self._wake.set()
        log.warning("INSPECTION %s started by %s (%s): %s under test until %s; presses are"
                    " test events, not alarms", iid, by, origin, ", ".join(chosen),
                    window["deadline_at"])
        summary = self.summary()
        assert summary is not None
        if committed is not None:
            summary["event"] = {"seq": committed.seq, "id": committed.event_id}
        return summary

    def close(self, *, by: str | None, reason: str = "stopped") -> dict[str, Any]:
        """End the running window now; its report. Raises InspectionRefused when none runs."""
        with self._ops:
            with self._lock:
                if self._window is None:
                    raise InspectionRefused("no inspection is running (start one with:"
                                            " alarmgw inspect start --by NAME)")
            return self._end(reason, by=by)

    def _end(self, reason: str, *, by: str | None, while_down: bool = False
             ) -> dict[str, Any]:
        """End the window: `inspection_ended` (its points live again in the same step of
        the engine) with the window's final record, then `inspection_report`."""
        engine = self.engine

        def end() -> dict[str, Any]:
            # In the engine thread: no press of the window's points can come in between.
            with self._lock:
                window = self._window
                assert window is not None
                wall, _ = self.clock.now()
                window.update(open=False, ended_at=utc_iso(wall), end_reason=reason,
                              ended_by=by)
                report = rec.report(window, self._names)
                window["report"] = report
                final = dict(window)
            detail: dict[str, Any] = {"inspection": final["id"], "reason": reason,
                                      "by": final["by"], "points": final["points"],
                                      "started_at": final["started_at"],
                                      "deadline_at": final["deadline_at"]}
            if by is not None:
                detail["ended_by"] = by
            if while_down:
                detail["ended_while_down"] = True
            point = rec.inspection_point(final["id"])
            engine.end_inspection(final["id"], point, detail,
                                  writes=[StoreWrite("inspections", final["id"], final)])
            engine.record("inspection_report", point, report)
            return report

        report: dict[str, Any] = engine.call(end).result(_ENGINE_WAIT_S)
        with self._lock:
            self._window = self._deadline_mono = None
            self._tests = {}
        log.warning("INSPECTION %s ended (%s): %d passed, %d failed, %d not tested",
                    report["inspection"], reason, len(report["passed"]), len(report["failed"]),
                    len(report["not_tested"]))
        return report

    # -- hooks -----------------------------------------------------------------------------

    def on_committed(self, c: Committed) -> None:
        """Service listener, before the uplink is woken (engine thread): a press, a return
        to normal or a device fault of a point under inspection."""
        iid = c.detail.get("inspection")
        if c.type in ("test", "restore", "tamper_cleared") and isinstance(iid, str):
            self._on_press(c, iid)
        elif c.type in ("fault", "fault_cleared") and c.point_id in self._devices:
            self._on_fault(c)

    def _on_press(self, c: Committed, iid: str) -> None:
        at = utc_iso(c.occurred_wall_ns)
        with self._lock:
            window = self._window
            if window is None or window["id"] != iid or c.point_id not in window["results"]:
                return
            res = window["results"][c.point_id]
            if c.type == "test":
                res.update(presses=int(res["presses"]) + 1, pressed_at=at,
                           test_event=c.event_id, active=True, restored_at=None,
                           delivered_at=None)
                self._tests[c.event_id] = c.point_id
            else:
                res.update(active=False, restored_at=at)
            proven = self._check_proof(window, c.point_id)
            self._save(window, proven)

    def _on_fault(self, c: Committed) -> None:
        with self._lock:
            window = self._window
            if window is None:
                return
            hit = [pid for pid in self._devices[c.point_id] if pid in window["results"]]
            for pid in hit:
                res = window["results"][pid]
                if c.type == "fault":
                    res.update(fault={"device": c.point_id, "event_id": c.event_id,
                                      "at": utc_iso(c.occurred_wall_ns), **c.detail},
                               fault_open=True, proven_at=None)
                else:
                    res["fault_open"] = False
            if hit:
                self._save(window, None)

    def on_delivery(self, step: str, rows: list[Row]) -> None:
        """Uplink hook: the broker's PUBACK of a test press proves its delivery, and the
        point's ack lamp blinks once for the technician standing at it."""
        if step != "puback":
            return
        blink: list[str] = []
        with self._lock:
            window = self._window
            if window is None or not self._tests:
                return
            proven: list[StoreWrite] = []
            changed = False
            for row in rows:
                pid = self._tests.get(row.event_id or "")
                if pid is None or row.event_type != "test":
                    continue
                res = window["results"][pid]
                if res.get("test_event") != row.event_id or res.get("delivered_at"):
                    continue
                res["delivered_at"] = utc_iso(self.clock.now()[0])
                changed = True
                blink.append(pid)
                proven += self._check_proof(window, pid) or []
            if changed:
                self._save(window, proven)
        for pid in blink:
            self._blinks.put(pid)
        if blink:
            self._wake.set()

    def _check_proof(self, window: dict[str, Any], pid: str) -> list[StoreWrite] | None:
        """Under the lock: when the point's press has come back and been delivered, it is
        proven now; the record of the proof to write."""
        res = window["results"][pid]
        if res.get("proven_at") and res.get("delivered_at") and not res.get("active"):
            return None
        if not (res.get("restored_at") and res.get("delivered_at")) or res.get("fault_open") \
                or res.get("active"):
            return None
        wall, mono = self.clock.now()
        proof = rec.proof(wall, mono, self.clock.boot_id, self.clock.is_synced(),
                          by=window["by"], inspection=window["id"],
                          event_id=res.get("test_event"))
        res["proven_at"] = proof["proven_at"]
        self._proven[pid] = proof
        self._untested = [u for u in self._untested if u["point"] != pid]
        log.info("inspection %s: %s proven working", window["id"], pid)
        return [StoreWrite("proven", pid, proof)]

    def _save(self, window: dict[str, Any], also: list[StoreWrite] | None) -> None:
        """Under the lock: the window's record (and a proof) to disk, so a restart keeps
        what this window saw."""
        try:
            self.outbox.write(StoreWrite("inspections", window["id"], window), *(also or []))
        except GatewayError as exc:
            log.error("inspection %s: could not record a press: %s (the window goes on; a"
                      " restart would forget it)", window["id"], exc)

    # -- the thread: deadline, ticks, blinks -----------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            while True:
                try:
                    pid = self._blinks.get_nowait()
                except queue.Empty:
                    break
                self._blink(pid)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.tick_s
                try:
                    self.tick()
                except Exception:
                    log.exception("inspection: the untested check failed")
            timeout = next_tick - now
            with self._lock:
                deadline = self._deadline_mono
            if deadline is not None:
                left = (deadline - self.clock.now()[1]) / 1e9
                if left <= 0:
                    self._timeout()
                    continue
                timeout = min(timeout, left)
            self._wake.wait(max(0.0, timeout))
            self._wake.clear()

    def _timeout(self) -> None:
        with self._ops:
            with self._lock:
                window = self._window
                due = self._deadline_mono is not None and \
                    self._deadline_mono <= self.clock.now()[1]
            if window is None or not due:
                return
            try:
                self._end("timeout", by=None)
            except Exception:
                log.exception("inspection %s: could not end it at its deadline; trying again",
                              window["id"])
                self._stop.wait(1.0)

    def _blink(self, pid: str) -> None:
        if self.blink is None:
            return
        try:
            self.blink(pid)
        except Exception:
            log.exception("inspection: could not blink the ack lamp of %s", pid)

    def tick(self) -> list[str]:
        """Look at every point's untested age now (in memory) and send one `notice` for
        each that has just crossed inspection.max_untested_days; the points noticed."""
        wall, mono = self.clock.now()
        with self._lock:
            found = rec.untested(self._proven, self.points, wall_ns=wall, mono_ns=mono,
                                 boot_id=self.clock.boot_id, synced=self.clock.is_synced(),
                                 max_days=self.settings.max_untested_days)
            self._untested = found
            due = [(u, dict(self._proven[u["point"]])) for u in found
                   if self._noticed.get(u["point"]) != rec.about(self._proven[u["point"]])]
            for u, proof in due:
                self._noticed[u["point"]] = rec.about(proof)
        by_id = {p.id: p for p in self.points}
        engine = self.engine
        for u, proof in due:
            point = by_id[u["point"]]
            detail = {"notice": "untested", "days": u["days"],
                      "max_untested_days": self.settings.max_untested_days,
                      "proven_at": u["proven_at"], "unproven_since": u["unproven_since"],
                      "by": u["by"], "inspection": u["inspection"],
                      "text": (f"{point.name} ({point.id}) has not been proven working for"
                               f" {u['days']:.0f} days: inspect it (alarmgw inspect start"
                               f" --points {point.id} --by NAME)")}
            note = {"about": rec.about(proof), "sent_at": utc_iso(wall), "days": u["days"]}
            log.warning("NOTICE: %s", detail["text"])
            engine.call(self._notice(point, detail, note))
        return [u["point"] for u, _ in due]

    def _notice(self, point: Point, detail: dict[str, Any], note: dict[str, Any]
                ) -> Callable[[], Committed | None]:
        """The engine's commit of one notice, with its record in the same transaction."""
        return lambda: self.engine.record("notice", point, detail,
                                          writes=[StoreWrite("notices", point.id, note)])

    # -- what is shown -----------------------------------------------------------------------

    def summary(self) -> dict[str, Any] | None:
        """The running window: who, which points, until when, and what it saw so far."""
        with self._lock:
            window = self._window
            if window is None:
                return None
            left = None
            if self._deadline_mono is not None:
                left = max(0.0, (self._deadline_mono - self.clock.now()[1]) / 1e9)
            provisional = rec.report(window, self._names)
            return {"id": window["id"], "by": window["by"], "origin": window["origin"],
                    "points": list(window["points"]), "started_at": window["started_at"],
                    "deadline_at": window["deadline_at"],
                    "remaining_s": None if left is None else round(left, 1),
                    "sounder": self.settings.sounder,
                    "results": {pid: dict(r) for pid, r in window["results"].items()},
                    "so_far": {k: [e["point"] for e in provisional[k]]
                               for k in ("passed", "failed", "not_tested")}}

    def untested(self, *, now: bool = True) -> list[dict[str, Any]]:
        """The points not proven for more than max_untested_days: computed now, or (with
        `now=False`, for the heartbeat) as the last tick found them."""
        if not now:
            with self._lock:
                return [dict(u) for u in self._untested]
        wall, mono = self.clock.now()
        with self._lock:
            return rec.untested(self._proven, self.points, wall_ns=wall, mono_ns=mono,
                                boot_id=self.clock.boot_id, synced=self.clock.is_synced(),
                                max_days=self.settings.max_untested_days)

    def status(self) -> dict[str, Any]:
        """For `alarmgw status` and `alarmgw inspect status`."""
        return {"window": self.summary(), "untested": self.untested(),
                "max_untested_days": self.settings.max_untested_days,
                "sounder": self.settings.sounder}

    def last_report(self) -> dict[str, Any] | None:
        """The report of the latest window that ended, or None."""
        for window in self.outbox.inspection_windows(limit=20):
            if window.get("report") is not None:
                report: dict[str, Any] = window["report"]
                return report
        return None

    # -- the platform's commands -------------------------------------------------------------

    def command_handlers(self) -> dict[str, Callable[[Command], dict[str, Any]]]:
        """`inspect_start` and `inspect_stop`, for the command dispatcher (signed and
        checked there like every command)."""

        def start(cmd: Command) -> dict[str, Any]:
            points = cmd.args.get("points")
            if points is not None and cmd.args.get("all"):
                raise Refusal("bad_args", "inspect_start: give 'points' or 'all', not both",
                              cmd.id, cmd.op)
            try:
                return self.open([str(p) for p in points] if points is not None else None,
                                 minutes=int(cmd.args.get("minutes", DEFAULT_MINUTES)),
                                 by=f"platform:{cmd.args['operator']}", origin="platform")
            except KeyError as exc:
                raise Refusal("bad_args", str(exc.args[0] if exc.args else exc), cmd.id,
                              cmd.op) from exc
            except InspectionRefused as exc:
                raise Refusal("failed", str(exc), cmd.id, cmd.op) from exc

        def stop(cmd: Command) -> dict[str, Any]:
            try:
                return self.close(by=f"platform:{cmd.args.get('operator', 'platform')}")
            except InspectionRefused as exc:
                raise Refusal("failed", str(exc), cmd.id, cmd.op) from exc

        return {"inspect_start": start, "inspect_stop": stop}

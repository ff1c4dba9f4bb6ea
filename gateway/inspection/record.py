"""What an inspection finds, as plain data: each point's results in a window, the verdict
of the report, and the age of each point's proof.

No threads and no store here: `gateway.inspection.windows` keeps these records, writes
them through the store and turns them into events. Every record is a JSON-able dict,
because it is what the store keeps and what `alarmgw inspect` prints.

A point is proven in a window when its press was seen, its return to normal was seen,
and the broker acknowledged (PUBACK) the press's `test` event: the button, the wiring,
the driver, the engine, the store and the uplink all did their part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.clock import utc_iso
from gateway.events import Point

NS_PER_DAY = 86_400 * 10**9

#: The point that a window's own events (started, ended, report) are about.
INSPECTION_POINT_ID = "inspection"


def inspection_point(inspection_id: str) -> Point:
    """The `point` of an inspection's own events: the window, not a button."""
    return Point(INSPECTION_POINT_ID, "巡检 inspection", "", "device",
                 f"inspection:{inspection_id}")


def new_result() -> dict[str, Any]:
    """A point's results at the start of a window: nothing seen yet."""
    return {"presses": 0, "pressed_at": None, "test_event": None, "restored_at": None,
            "delivered_at": None, "active": False, "fault": None, "fault_open": False,
            "proven_at": None}


def verdict(result: Mapping[str, Any]) -> tuple[str, str | None]:
    """('passed' | 'failed' | 'not_tested', why) of one point at the end of its window."""
    fault = result.get("fault")
    if result.get("fault_open"):
        return "failed", f"its device is in fault: {_fault_text(fault)}"
    if result.get("active"):
        return "failed", ("pressed but never restored: still active when the window ended"
                          " (a latching button must be reset with its key)")
    if result.get("proven_at"):
        presses = int(result.get("presses") or 0)
        return "passed", f"pressed {presses} times" if presses > 1 else None
    if fault:
        return "failed", (f"its device was in fault during the window"
                          f" ({_fault_text(fault)}) and it was not proven after")
    if result.get("presses"):
        if result.get("delivered_at") is None:
            return "failed", ("its test event had not reached the platform (no PUBACK from"
                              " the broker) when the window ended: check the uplink")
        return "failed", "its return to normal was not seen"
    return "not_tested", None


def _fault_text(fault: Any) -> str:
    if not isinstance(fault, Mapping):
        return "unknown fault"
    return f"{fault.get('device', '?')}: {fault.get('reason') or 'fault'}"


def report(window: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The report of a window (ended or, provisionally, still running): each of its points
    passed, failed or not tested."""
    passed: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    untested: list[dict[str, Any]] = []
    results: Mapping[str, Mapping[str, Any]] = window.get("results") or {}
    for pid in window.get("points") or []:
        res = results.get(pid) or new_result()
        outcome, why = verdict(res)
        entry: dict[str, Any] = {"point": pid, "name": names.get(pid, pid),
                                 "presses": int(res.get("presses") or 0)}
        if why is not None:
            entry["note" if outcome == "passed" else "reason"] = why
        if outcome == "passed":
            entry.update(pressed_at=res.get("pressed_at"), restored_at=res.get("restored_at"),
                         delivered_at=res.get("delivered_at"), proven_at=res.get("proven_at"),
                         event_id=res.get("test_event"))
            passed.append(entry)
        elif outcome == "failed":
            if res.get("fault"):
                entry["fault"] = res.get("fault")
            if res.get("test_event"):
                entry["event_id"] = res.get("test_event")
            failed.append(entry)
        else:
            untested.append(entry)
    return {"inspection": window.get("id"), "by": window.get("by"),
            "origin": window.get("origin"), "started_at": window.get("started_at"),
            "deadline_at": window.get("deadline_at"), "ended_at": window.get("ended_at"),
            "reason": window.get("end_reason"), "points": len(window.get("points") or []),
            "passed": passed, "failed": failed, "not_tested": untested}


def proof(wall_ns: int, mono_ns: int, boot_id: str, synced: bool, **about: Any
          ) -> dict[str, Any]:
    """A point's proven record: proven now (`about`: by, inspection, event_id)."""
    return {"proven_at": utc_iso(wall_ns), "wall_ns": wall_ns, "mono_ns": mono_ns,
            "boot_id": boot_id, "synced": synced, **about}


def unproven_since(wall_ns: int, mono_ns: int, boot_id: str, synced: bool) -> dict[str, Any]:
    """The record of a point never proven: its age counts from when alarmgw first knew it."""
    return {"proven_at": None, "since_at": utc_iso(wall_ns), "wall_ns": wall_ns,
            "mono_ns": mono_ns, "boot_id": boot_id, "synced": synced}


def about(record: Mapping[str, Any]) -> str:
    """What a notice about this record is about: one notice per record, so a point proven
    again and then untested again gets a new one."""
    if record.get("proven_at"):
        return f"proven:{record['proven_at']}"
    return f"since:{record.get('since_at')}"


def age_ns(record: Mapping[str, Any], wall_ns: int, mono_ns: int, boot_id: str,
           synced: bool) -> int | None:
    """How long ago the record was made, in ns; None when it cannot be told.

    Within the boot it was made in, by CLOCK_BOOTTIME (which NTP does not step). Across a
    reboot the boot clock says nothing, so only by the wall clock, and only when it was
    synced both then and now: a Pi without RTC after a power cut may be decades off."""
    try:
        if record.get("boot_id") == boot_id:
            return max(0, mono_ns - int(record["mono_ns"]))
        if synced and record.get("synced"):
            return max(0, wall_ns - int(record["wall_ns"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def untested(records: Mapping[str, Mapping[str, Any]], points: Iterable[Point], *,
             wall_ns: int, mono_ns: int, boot_id: str, synced: bool, max_days: float
             ) -> list[dict[str, Any]]:
    """The points not proven for more than `max_days`, oldest proof first."""
    found: list[dict[str, Any]] = []
    for p in points:
        rec = records.get(p.id)
        if rec is None:
            continue
        age = age_ns(rec, wall_ns, mono_ns, boot_id, synced)
        if age is None or age <= max_days * NS_PER_DAY:
            continue
        found.append({"point": p.id, "name": p.name, "kind": p.kind,
                      "proven_at": rec.get("proven_at"),
                      "unproven_since": None if rec.get("proven_at") else rec.get("since_at"),
                      "days": round(age / NS_PER_DAY, 1),
                      "by": rec.get("by"), "inspection": rec.get("inspection")})
    found.sort(key=lambda e: -e["days"])
    return found

"""Inspection (巡检): test every button without calling the police, and the maintenance
record of which ones were last proven working.

- record: plain data: a point's results in a window, the report's verdicts, the age of
  each point's proof;
- windows: `Inspections`, the windows of one service (opening, the deadline, resuming
  after a restart, closing with the report) and the untested notices.

It sits beside the police loop (layer 6 of docs/architecture.md): it asks the engine to
put points under inspection (`Engine.begin_inspection`), and the engine, which owns every
point's state, classifies their presses as tests; nothing below it imports it.
"""

from __future__ import annotations

from gateway.inspection.windows import BLINK_S, InspectionRefused, Inspections

__all__ = ["BLINK_S", "InspectionRefused", "Inspections"]

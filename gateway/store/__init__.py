"""The store: the gateway's durable memory, on one SQLite file in the state directory.

Every event is committed here, fsynced, before anything else happens to it; the uplink
then drains it to the broker by priority lane, and what the service must remember across
a restart (open faults, platform command ids, acknowledgements, drill timelines) is kept
in the same file. The rows' states and the rules on a full disk are told in
gateway.store.outbox.

Import from here; the modules inside are the package's own layout:

- records: the plain data exchanged with the store (lanes, row states, rows, statistics);
- schema: the file format (tables, pragmas, the schema version checked on open);
- outbox: `Outbox`, the one owner of the connection and its lock;
- reports: read-only reports over a connection, for the running and the stopped service;
- offline: reading the store of a service that is not running, without changing it;
- inspections: the inspection tables (windows, the proven record, notices sent).

Within the package, records and schema import nothing of it, reports imports records and
schema, inspections imports records, offline and outbox import those below them, and
nothing imports this file: no circles. The package needs nothing of the project but
gateway.errors and gateway.clock (the boot clock that every row is committed with).
"""

from __future__ import annotations

from gateway.store.offline import (
    read_drills_offline,
    read_inspections_offline,
    read_proven_offline,
    read_queue_offline,
)
from gateway.store.outbox import OVERLAY_WARN, PROTECT_UNANSWERED, PRUNE_BATCH, Outbox
from gateway.store.records import (
    EventDraft,
    Lane,
    LaneStats,
    QueueStats,
    Row,
    State,
    StoreWrite,
)
from gateway.store.reports import DRILL_STEPS
from gateway.store.schema import SCHEMA_VERSION

__all__ = [
    "DRILL_STEPS",
    "OVERLAY_WARN",
    "PROTECT_UNANSWERED",
    "PRUNE_BATCH",
    "SCHEMA_VERSION",
    "EventDraft",
    "Lane",
    "LaneStats",
    "Outbox",
    "QueueStats",
    "Row",
    "State",
    "StoreWrite",
    "read_drills_offline",
    "read_inspections_offline",
    "read_proven_offline",
    "read_queue_offline",
]

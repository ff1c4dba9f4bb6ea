"""The plain data of the store: its lanes and row states, and what it hands out and takes in.

No SQLite here and nothing that does anything: these are the values the engine, the uplink
and the CLI exchange with the store, so they can import them without the connection. The
numbers of `Lane` and `State` are the integers in the `lane` and `state` columns on disk:
changing one changes the file format (gateway.store.schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Lane(IntEnum):
    """Priority lanes of the outbox; lower goes first."""

    ALARM = 0
    """Alarms, tamper, drills and tests: never wait behind anything."""
    EVENT = 1
    """Restores, faults and other events: never evicted."""
    BULK = 2
    """Snapshots and telemetry: give way under the byte budget."""


class State(IntEnum):
    """Where a row is in its delivery (see gateway.store.outbox for the moves between)."""

    READY = 0
    IN_FLIGHT = 1
    ACKED = 2


@dataclass(frozen=True)
class Row:
    """One message waiting in (or recently delivered from) the outbox."""

    rowid: int
    lane: Lane
    topic: str
    payload: bytes
    properties: dict[str, Any] | None
    seq: int | None
    event_id: str | None
    event_type: str | None
    created_at: str
    attempts: int


@dataclass(frozen=True)
class LaneStats:
    """One lane's share of the queue: rows not yet delivered, and the oldest of them.

    The oldest row's age is told by `oldest_mono_ns` (CLOCK_BOOTTIME when it was
    committed) while `oldest_boot_id` is this boot's; its wall time `oldest_created_at`
    is what the clock said then, which NTP may have stepped since.
    """

    ready: int
    in_flight: int
    bytes: int
    oldest_created_at: str | None
    oldest_event_id: str | None
    oldest_row: int | None = None
    oldest_mono_ns: int | None = None
    oldest_boot_id: str | None = None


@dataclass(frozen=True)
class QueueStats:
    """The whole queue at one moment, as `Outbox.stats` and `read_queue_offline` see it."""

    lanes: dict[str, LaneStats]
    acked_kept: int
    bytes_total: int
    budget_bytes: int
    next_seq: int
    evicted_total: int
    refused_total: int

    @property
    def waiting(self) -> int:
        """Rows not yet delivered (ready or in flight), all lanes together."""
        return sum(s.ready + s.in_flight for s in self.lanes.values())


@dataclass(frozen=True)
class EventDraft:
    """What `Outbox.commit_event` needs to build a row once it has a seq."""

    event_id: str
    event_type: str
    topic: str
    payload: bytes


@dataclass(frozen=True)
class StoreWrite:
    """One record of the inspection tables to write (gateway.store.inspections), on its own
    (`Outbox.write`) or in the transaction of an event's commit (`Outbox.commit_event`), so
    that the event and what it records reach the disk together or not at all."""

    table: str
    """'inspections' (a window, by its id), 'proven' (a point's record, by point id) or
    'notices' (the untested notice of a point, by point id)."""
    key: str
    record: dict[str, Any]

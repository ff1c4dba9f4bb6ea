"""A real store that refuses the event commits a test picks, as a full disk would.

The only stand-in is the failure itself: inside the commit's transaction (which rolls
back), with the store's own "database or disk is full" error. Used where a test needs a
commit to fail once and be retried (tests/test_engine_retry.py,
tests/snapshots/test_snapshot_pairing.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.errors import StoreError
from gateway.store import EventDraft, Lane, Outbox, StoreWrite


class RefusingOutbox(Outbox):
    """The real store, refusing the event commits `refuse(document)` picks as a full disk
    would: inside the transaction, which rolls back, with the store's own error."""

    def __init__(self, path: Path, **kw: Any) -> None:
        super().__init__(path, **kw)
        self.refuse: Callable[[dict[str, Any]], bool] = lambda doc: False
        self.refused = threading.Condition()
        self.refusals: list[dict[str, Any]] = []

    def commit_event(self, lane: Lane, make: Callable[[int], EventDraft],
                     properties: dict[str, Any] | None = None, *,
                     fault_open: dict[str, Any] | None = None,
                     fault_closed: str | None = None,
                     writes: Sequence[StoreWrite] = ()) -> tuple[int, EventDraft]:
        def build(seq: int) -> EventDraft:
            draft = make(seq)
            doc = json.loads(draft.payload)
            if self.refuse(doc):
                with self.refused:
                    self.refusals.append(doc)
                    self.refused.notify_all()
                raise StoreError(f"store {self.path}: cannot commit event: database or disk"
                                 " is full")
            return draft

        return super().commit_event(lane, build, properties, fault_open=fault_open,
                                    fault_closed=fault_closed, writes=writes)

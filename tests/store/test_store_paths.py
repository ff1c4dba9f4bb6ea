"""The second paths' queues in the outbox (gateway.store.paths): an event a path carries is
queued for it in the commit's transaction with its own wire number; it leaves the disk only
when MQTT and every path that carries it have it, whatever pruning and the budget do; wire
numbers survive a reopen and wrap after 8999."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store import EventDraft, Lane, Outbox
from gateway.store.paths import MAX_WIRE_SEQ

DC09 = {"dc09": frozenset({"alarm"})}


def commit(box: Outbox, kind: str = "alarm", size: int = 100) -> int:
    lane = Lane.ALARM if kind == "alarm" else Lane.EVENT

    def make(seq: int) -> EventDraft:
        return EventDraft(event_id=f"id-{seq}", event_type=kind, topic="event",
                          payload=kind.encode() + b"x" * size)

    seq, _ = box.commit_event(lane, make)
    return seq


def mqtt_delivers_all(box: Outbox) -> None:
    box.ack([r.rowid for r in box.take(100)])


def test_only_the_types_a_path_carries_are_queued_alarms_first(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", paths={"dc09": frozenset({"alarm", "restore"})}) as box:
        commit(box, "restore")
        commit(box, "fault")
        commit(box, "alarm")
        rows = box.path_take("dc09", 10, set())
        assert [(r.seq, r.payload[:5]) for r in rows] == [(3, b"alarm"), (1, b"resto")]
        assert [r.wire_seq for r in rows] == [2, 1]  # given at commit, to carried rows only
        assert box.path_take("dc09", 10, {rows[0].rowid}) == rows[1:]
        assert box.path_take("dc09", 1, set()) == rows[:1]
        assert box.path_stats("dc09").waiting == 2


def test_an_event_leaves_the_disk_only_when_every_path_has_it(tmp_path: Path) -> None:
    # (Restores: alarms nobody acknowledged are kept from pruning anyway, PROTECT_UNANSWERED.)
    restores = {"dc09": frozenset({"restore"})}
    with Outbox(tmp_path / "o.sqlite3", keep_acked=0, paths=restores) as box:
        commit(box, "restore")
        commit(box, "fault")  # not carried by dc09
        mqtt_delivers_all(box)
        # MQTT has both and keeps none: the fault is pruned, the restore stays for dc09.
        assert box.stats().acked_kept == 1
        (row,) = box.path_take("dc09", 10, set())
        assert row.seq == 1 and row.payload.startswith(b"resto")
        box.path_done("dc09", [row.rowid])
        assert box.path_take("dc09", 10, set()) == []
        commit(box, "fault")
        mqtt_delivers_all(box)  # the next prune takes the restore too
        assert box.stats().acked_kept == 0


def test_the_budget_never_evicts_a_row_a_path_still_owes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_bytes=30_000, keep_acked=100, paths=DC09) as box:
        owed = commit(box, "alarm", 10_000)
        commit(box, "restore", 10_000)
        mqtt_delivers_all(box)
        for _ in range(3):  # over budget: delivered rows are evicted, oldest first
            commit(box, "restore", 10_000)
            mqtt_delivers_all(box)
        # The oldest delivered row is the alarm, but dc09 owes it: the others went instead.
        assert box.stats().bytes_total <= 30_000
        assert [r.seq for r in box.path_take("dc09", 10, set())] == [owed]


def test_wire_numbers_survive_a_reopen_and_wrap_after_8999(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, paths=DC09) as box:
        commit(box)
        commit(box)
    with Outbox(path, paths=DC09) as box:
        commit(box)
        assert [r.wire_seq for r in box.path_take("dc09", 10, set())] == [1, 2, 3]
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE meta SET value=? WHERE key='dc09_last_wire_seq'", (MAX_WIRE_SEQ - 1,))
    db.close()
    with Outbox(path, paths=DC09) as box:
        commit(box)
        commit(box)
        assert [r.wire_seq for r in box.path_take("dc09", 10, set())][3:] == [MAX_WIRE_SEQ, 1]

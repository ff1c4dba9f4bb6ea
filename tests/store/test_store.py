"""The durable outbox: states, lanes, budget, gapless seq, and a real kill -9."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.errors import StoreFullError
from gateway.store import EventDraft, Lane, Outbox, read_queue_offline


def draft(kind: str = "alarm", size: int = 100) -> object:
    def make(seq: int) -> EventDraft:
        return EventDraft(event_id=f"id-{seq}", event_type=kind, topic="event",
                          payload=b"x" * size)
    return make


def commit(box: Outbox, lane: Lane = Lane.ALARM, kind: str = "alarm", size: int = 100) -> int:
    seq, _ = box.commit_event(lane, draft(kind, size))  # type: ignore[arg-type]
    return seq


def test_seq_is_gapless_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        assert [commit(box) for _ in range(3)] == [1, 2, 3]
        # Delivered and pruned rows do not give their seq back.
        rows = box.take(10)
        box.ack([r.rowid for r in rows])
    with Outbox(path, keep_acked=0) as box:
        assert commit(box, Lane.EVENT, "restore") == 4
        box.ack([r.rowid for r in box.take(10)])
        # The three alarms nobody acknowledged are kept (see the pruning test below).
        assert box.stats().acked_kept == 3
        assert commit(box) == 5


def test_store_is_wal_and_commits_are_durable_full(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        commit(box)
        db = box._db
        assert db is not None
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # The connection's setting after an event commit is FULL (fsync per commit).
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_rows_move_ready_in_flight_acked_and_in_flight_returns_to_ready_on_open(
        tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        for _ in range(3):
            commit(box)
        taken = box.take(2)
        assert [r.seq for r in taken] == [1, 2]
        assert all(r.attempts == 1 for r in taken)
        box.ack([taken[0].rowid])
        stats = box.stats().lanes["alarm"]
        assert (stats.ready, stats.in_flight) == (1, 1)
        # A second take does not hand out what is in flight.
        assert [r.seq for r in box.take(10)] == [3]
    with Outbox(path) as box:
        assert box.requeued_at_open == 2
        again = box.take(10)
        assert [r.seq for r in again] == [2, 3]
        assert [r.attempts for r in again] == [2, 2]


def test_release_puts_rows_back_and_ack_of_unknown_row_is_harmless(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as box:
        commit(box)
        rows = box.take(1)
        box.release([rows[0].rowid])
        assert box.stats().lanes["alarm"].ready == 1
        assert box.ack([rows[0].rowid]) == 0  # not in flight any more: nothing to ack
        assert box.ack([9999]) == 0


def test_new_alarm_is_taken_before_any_backlog(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as box:
        for _ in range(50):
            box.put_bulk("snapshot/x/cam", b"j" * 10)
        for _ in range(50):
            commit(box, Lane.EVENT, "restore")
        seq = commit(box, Lane.ALARM, "alarm")
        first = box.take(1)
        assert first[0].seq == seq and first[0].lane == Lane.ALARM
        nxt = box.take(60)
        assert [r.lane for r in nxt[:50]] == [Lane.EVENT] * 50
        assert all(r.lane == Lane.BULK for r in nxt[50:])


def test_take_can_be_limited_to_the_alarm_lane(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as box:
        commit(box, Lane.EVENT, "restore")
        assert box.take(5, max_lane=Lane.ALARM) == []
        commit(box, Lane.ALARM)
        assert [r.lane for r in box.take(5, max_lane=Lane.ALARM)] == [Lane.ALARM]


def test_budget_evicts_acked_then_oldest_bulk_and_never_alarms(tmp_path: Path) -> None:
    budget = 64 * 1024
    with Outbox(tmp_path / "o.sqlite3", max_bytes=budget) as box:
        bulk_ids = [box.put_bulk("snapshot/e/cam", b"j" * 10_000) for _ in range(6)]
        assert box.stats().bytes_total == 60_000
        # An alarm that does not fit evicts the oldest bulk row, not itself.
        commit(box, Lane.ALARM, size=10_000)
        waiting = box.waiting(100)
        assert bulk_ids[0] not in [w["row"] for w in waiting]
        assert bulk_ids[1] in [w["row"] for w in waiting]
        assert box.evicted_total == 1
        # Alarms beyond the whole budget are still committed: they never give way.
        for _ in range(10):
            commit(box, Lane.ALARM, size=10_000)
        stats = box.stats()
        assert stats.lanes["alarm"].ready == 11
        assert stats.lanes["bulk"].ready == 0
        assert stats.bytes_total > budget
        # ...and a bulk row that cannot fit is refused, counted, and stores nothing.
        with pytest.raises(StoreFullError) as exc:
            box.put_bulk("snapshot/e/cam", b"j" * 10_000)
        assert exc.value.budget == budget
        assert box.refused_total == 1
        assert box.stats().lanes["bulk"].ready == 0


def test_acked_rows_are_pruned_beyond_keep_acked(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", keep_acked=5) as box:
        for _ in range(20):
            commit(box, Lane.EVENT, "restore")
        box.ack([r.rowid for r in box.take(20)])
        stats = box.stats()
        assert stats.acked_kept == 5
        assert stats.waiting == 0
        assert stats.bytes_total == 5 * 100


def test_offline_reader_sees_the_queue_without_changing_it(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        commit(box)
        commit(box, Lane.EVENT, "restore")
        box.take(1)
        stats, waiting = read_queue_offline(path)
    assert stats.waiting == 2
    assert [(w["seq"], w["state"]) for w in waiting] == [(1, "in_flight"), (2, "ready")]


_CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from gateway.store import EventDraft, Lane, Outbox
    box = Outbox(__import__("pathlib").Path({path!r}))
    box.open()
    for i in range(20):
        box.commit_event(Lane.ALARM, lambda seq: EventDraft(f"id-{{seq}}", "alarm", "event",
                                                            b"x" * 50))
    rows = box.take(8)
    box.ack([r.rowid for r in rows[:3]])
    print("ready", flush=True)
    sys.stdin.read()  # hold everything open until killed
""")


def test_kill_9_of_a_real_process_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(root=root, path=str(path))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()
    assert proc.returncode == -signal.SIGKILL
    with Outbox(path) as box:
        assert box.requeued_at_open == 5  # taken but not acked when killed
        stats = box.stats()
        assert stats.next_seq == 21
        assert stats.lanes["alarm"].ready == 17
        assert [r.seq for r in box.take(100)] == list(range(4, 21))


def test_unusable_store_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    box = Outbox(path)
    with pytest.raises(OSError, match=str(path)):
        box.open()


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(OSError, match="schema version 99"):
        Outbox(path).open()


def test_a_reserve_for_alarms_is_kept_and_snapshots_wait_while_it_cannot_be(
        tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, reserve_bytes=64 * 1024) as box:
        assert box.reserve_path.stat().st_size == 64 * 1024
        box.put_bulk("snapshot/e/cam", b"j" * 100)
    # The reserve cannot be put back (here: something else sits at its path, as a full
    # disk would refuse it): snapshots are refused, alarms are not.
    box.reserve_path.unlink()
    box.reserve_path.mkdir()
    with Outbox(path, reserve_bytes=64 * 1024) as box:
        with pytest.raises(StoreFullError, match="reserve"):
            box.put_bulk("snapshot/e/cam", b"j" * 100)
        assert commit(box) == 1
        box.reserve_path.rmdir()  # room again: the reserve comes back first
        box.put_bulk("snapshot/e/cam", b"j" * 100)
        assert box.reserve_path.stat().st_size == 64 * 1024


def test_pruning_keeps_the_alarms_nobody_acknowledged(tmp_path: Path) -> None:
    """keep_acked bounds delivered history, but a restarted gateway must find the alarms it
    still has to watch for an acknowledgement: those are not pruned (the newest 256)."""
    with Outbox(tmp_path / "outbox.sqlite3", keep_acked=0) as box:
        def commit(event_id: str, event_type: str) -> None:
            lane = Lane.ALARM if event_type == "alarm" else Lane.EVENT
            box.commit_event(lane, lambda seq: EventDraft(event_id, event_type, "event",
                                                          b"{}"))

        commit("a1", "alarm")
        commit("r1", "restore")
        commit("a2", "alarm")
        box.put_bulk("snapshot/a1/cam", b"\xff\xd8" + b"x" * 100)
        box.ack([r.rowid for r in box.take(10)])
        st = box.stats()
        assert (st.waiting, st.acked_kept) == (0, 2)
        assert box.find_event("a1") is not None and box.find_event("r1") is None
        # Acknowledged: the next prune may take it.
        box.record_ack("a1", "c-1", "张警官", None, "2026-12-01T00:00:00Z")
        commit("r2", "restore")
        box.ack([r.rowid for r in box.take(10)])
        assert box.find_event("a1") is None and box.find_event("a2") is not None
        assert box.stats().acked_kept == 1


def test_alarms_to_watch_again_are_those_not_acknowledged_nor_finished_escalating(
        tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3") as box:
        def commit_doc(event_id: str, event_type: str, **detail: str) -> None:
            doc = json.dumps({"id": event_id, "type": event_type, "detail": detail}).encode()
            lane = Lane.ALARM if event_type == "alarm" else Lane.EVENT
            box.commit_event(lane, lambda seq: EventDraft(event_id, event_type, "event", doc))

        for eid in ("acked", "finished", "cut-short", "waiting", "delivered"):
            commit_doc(eid, "alarm")
        box.record_ack("acked", "c-1", "张警官", None, "2026-12-01T00:00:00Z")
        commit_doc("e1", "escalation", step="sounder_on", for_event="finished")
        commit_doc("e2", "escalation", step="sms_sent", for_event="finished")
        # A SIGKILL between the sounder and the SMS: that escalation is done again.
        commit_doc("e3", "escalation", step="sounder_on", for_event="cut-short")
        rows = box.take(100)
        box.ack([r.rowid for r in rows if r.event_id != "waiting"])
        sms_steps = frozenset({"sms_sent", "sms_failed"})
        got = [(doc["id"], delivered) for doc, delivered
               in box.unanswered_events(frozenset({"alarm"}), sms_steps)]
        assert got == [("cut-short", True), ("waiting", False), ("delivered", True)]
        # Without a modem the sounder is the last step.
        got = [doc["id"] for doc, _ in box.unanswered_events(
            frozenset({"alarm"}), frozenset({"sounder_on", "sounder_failed"}))]
        assert got == ["waiting", "delivered"]
        assert box.delivered(["waiting", "delivered", "gone"]) == {"delivered", "gone"}

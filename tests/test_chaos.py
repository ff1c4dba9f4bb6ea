"""The CI chaos run: a fixed seed, every kind of fault, and not one committed press lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw_sim.chaos import (
    DC09_DEDUP_WINDOW,
    FAULTS,
    UNANSWERED_SHARE,
    ChaosRun,
    operator_answers,
    tally,
    tally_dc09,
    tally_escalations,
    tally_snapshots,
)

#: Seconds of faults in CI (the run deals every kind of fault at least once regardless).
CI_DURATION_S = 100.0
CI_SEED = 7
S = 1_000_000_000


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_chaos_run_loses_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = ChaosRun(tmp_path, CI_DURATION_S, CI_SEED).run()
    with capsys.disabled():
        print("\n" + result.summary())
    # Every kind of fault was injected, and the buttons were busy throughout.
    assert all(result.faults[f] >= 1 for f in FAULTS), result.faults
    assert result.committed >= 100
    assert result.device_faults >= 1
    # The promises: zero lost, no id twice, seq gapless, the queue drained.
    assert result.drained
    assert result.lost == []
    assert result.seq_twice == []
    assert result.gaps == []
    assert result.delivered == result.committed
    assert result.unpaired_faults == {}
    # Alarms brought pictures through the whole pipeline; outages filled the store's budget
    # and the oldest pictures gave way; every missing one is accounted for.
    sn = result.snapshots
    assert sn.delivered >= 50 and sn.evicted >= 1
    assert sn.unexplained == 0 and sn.extra == 0
    assert sn.delivered + sn.failed + sn.missing == sn.expected
    # Alarms kept from both paths escalated (sounder and SMS); none that had to was missed.
    # An alarm the receiving centre ACKed is delivered: only `both_down` makes `uplink_down`.
    es = result.escalation
    assert es.reasons.get("uplink_down", 0) >= 1
    assert es.steps.get("sounder_on", 0) == es.alarms
    assert es.sms_at_modem >= 1
    assert es.unescalated == [] and es.sms_unconfirmed == []
    # Alarms the operator left unanswered escalated for want of an acknowledgement, one of
    # them while the modem was broken: its SMS failed, and the modem became a fault.
    assert es.unanswered >= 1 and es.reasons.get("no_ack", 0) >= 1
    assert es.steps.get("sms_failed", 0) >= 1 and es.modem_faults >= 1
    assert es.no_ack_missed == [] and es.no_ack_after_ack == [] and es.incomplete == []
    assert es.sms_failed_modem_ok == [] and es.failures == 0
    # The second path: every alarm reached the receiving centre and was ACKed, once after
    # de-duplication by sequence number, through a centre gone, black-holed, refusing and
    # spoiling its answers; the spoilt answers were counted and the alarms sent again.
    dc = result.dc09
    assert dc.drained and dc.alarms >= 50
    assert dc.lost == [] and dc.extra == 0 and dc.seq_conflicts == 0
    assert dc.arrived == dc.both == dc.alarms and dc.mqtt_only == dc.dc09_only == 0
    assert dc.answers.get("NAK", 0) >= 1 and dc.answers.get("none", 0) >= 1
    assert sum(dc.answers.get(k, 0) for k in ("garbage", "bad_crc", "truncated")) >= 1
    assert dc.bad_replies >= 1 and dc.spoilt_unnoticed == 0 and dc.answers.get("DUH", 0) == 0
    assert dc.resent >= 1
    # Latency of the DC-09 path, with the centre up and for all alarms: reported, not judged.
    assert len(dc.latency_up_ms) >= 20  # figures, not limits: the summary line has them
    assert len(dc.latency_all_ms) == dc.alarms
    assert result.ok


def _event(seq: int, eid: str, etype: str = "alarm", mono_ns: int = 0) -> dict[str, object]:
    return {"seq": seq, "id": eid, "type": etype, "mono_ns": mono_ns}


def test_the_tally_catches_a_lost_press_a_seq_twice_and_a_gap() -> None:
    events = [_event(1, "a", mono_ns=1_000_000_000), _event(2, "b", "restore"),
              _event(4, "d", mono_ns=5_000_000_000), _event(4, "d2")]
    first = {"a": 1_005_000_000.0, "d": 5_500_000_000.0}
    result = tally(5, events, first, windows=[(4_000_000_000, 6_000_000_000)])
    assert result.lost == [3, 5]
    assert result.seq_twice == [4]
    assert result.gaps == [3]
    assert not result.ok
    assert "FAIL" in result.summary() and "lost=2" in result.summary()
    # Alarm latency: both alarms in "all", only the one outside the fault window in "up".
    assert result.alarm_latency_all_ms == [5.0, 500.0]
    assert result.alarm_latency_up_ms == [5.0]


def test_an_alarm_during_a_device_fault_counts_as_link_up() -> None:
    events = [_event(1, "a", mono_ns=1 * S), _event(2, "b", mono_ns=5 * S)]
    first = {"a": 1 * S + 4e6, "b": 5 * S + 900e6}
    result = tally(2, events, first, windows=[(0, 2 * S, "camera_fail"),
                                              (4 * S, 6 * S, "throttle")])
    assert result.alarm_latency_up_ms == [4.0]
    assert result.alarm_latency_fault_ms == {"camera_fail": [4.0], "throttle": [900.0]}
    assert "camera_fail(n=1) max=4 ms" in result.summary()


def _alarm(seq: int, eid: str, mono_ns: int, cams: dict[str, tuple[int, int]] | None = None
           ) -> dict[str, object]:
    snaps = [{"camera": c, "pre": pre, "post": post} for c, (pre, post) in (cams or {}).items()]
    return {**_event(seq, eid, mono_ns=mono_ns), "snapshots": snaps}


def test_the_snapshot_tally_accounts_for_every_listed_picture() -> None:
    events = [_alarm(1, "a", 10 * S, {"cam": (1, 2)}), _alarm(2, "b", 20 * S, {"cam": (0, 2)}),
              _event(3, "c", "restore")]
    got = [("a", "cam", "pre", 1), ("a", "cam", "post", 1), ("b", "cam", "post", 1)]
    failed = [("a", "cam", "post", 2)]
    # One of b's pictures is missing: lost, unless the store evicted one or a kill cut it.
    lost = tally_snapshots(events, got, failed, evicted=0, refused=0, kills=[],
                           cut_window_ns=2 * S)
    assert (lost.expected, lost.delivered, lost.failed, lost.missing) == (5, 3, 1, 1)
    assert lost.unexplained == 1
    assert tally_snapshots(events, got, failed, evicted=1, refused=0, kills=[],
                           cut_window_ns=2 * S).unexplained == 0
    cut = tally_snapshots(events, got, failed, evicted=0, refused=0, kills=[21 * S],
                          cut_window_ns=2 * S)
    assert cut.cut_by_kill == 1 and cut.unexplained == 0
    # A kill long after the event's shots excuses nothing; a picture nobody listed is extra.
    late = tally_snapshots(events, [*got, ("b", "cam", "post", 3)], failed, evicted=0,
                           refused=0, kills=[30 * S], cut_window_ns=2 * S)
    assert late.unexplained == 1 and late.extra == 1


def _escalation(seq: int, alarm: dict[str, object], step: str, reason: str = "no_ack",
                mono_ns: int = 0) -> dict[str, object]:
    return {**_event(seq, f"e{seq}", "escalation", mono_ns=mono_ns),
            "detail": {"step": step, "reason": reason, "for_event": alarm["id"],
                       "for_seq": alarm["seq"]}}


def test_the_escalation_tally_finds_an_alarm_that_had_to_escalate_and_did_not() -> None:
    on_time = _event(1, "a", mono_ns=10 * S)     # arrived in 5 ms and acknowledged
    late = _event(2, "b", mono_ns=20 * S)        # arrived 9 s late: no ack could be in time
    unacked = _event(3, "c", mono_ns=40 * S)     # arrived at once, its ack never succeeded
    events = [on_time, late, unacked]
    first = {"a": 10 * S + 5e6, "b": 29 * S, "c": 40 * S + 5e6}
    acked = {"a": 10 * S + 10e6, "b": 29 * S + 10e6}
    missed = tally_escalations(events, first, acked, kills=[], sms_texts=[], ack_timeout_s=8.0)
    assert missed.unescalated == [2, 3] and missed.alarms == 0
    # A SIGKILL within ack_timeout_s + 30 s of c's commit excuses c (its timer was in memory).
    excused = tally_escalations(events, first, acked, kills=[60 * S], sms_texts=[],
                                ack_timeout_s=8.0)
    assert excused.unescalated == [2] and excused.excused_by_kill == 1
    escalated = [*events, _escalation(4, late, "sounder_on", "uplink_down"),
                 _escalation(5, late, "sms_sent", "uplink_down"),
                 _escalation(6, unacked, "sounder_on", mono_ns=48 * S),
                 _escalation(7, unacked, "sms_failed", mono_ns=48 * S)]
    done = tally_escalations(escalated, first, acked, kills=[],
                             sms_texts=["ALARM b at s/g 12:00:00, seq 2: uplink down."],
                             ack_timeout_s=8.0, modem_faults=[(45 * S, 55 * S)])
    assert done.unescalated == [] and done.sms_unconfirmed == []
    assert done.alarms == 2 and done.reasons == {"uplink_down": 1, "no_ack": 1}
    assert done.steps == {"sounder_on": 2, "sms_sent": 1, "sms_failed": 1}
    assert done.failures == 0
    # An sms_sent the modem never saw is a false record.
    assert tally_escalations(escalated, first, acked, kills=[], sms_texts=[],
                             ack_timeout_s=8.0).sms_unconfirmed == [2]


def test_an_unanswered_alarm_with_the_link_up_must_escalate_for_want_of_an_ack() -> None:
    quiet = _event(1, "a", mono_ns=10 * S)       # unanswered, the link up throughout
    in_cut = _event(2, "b", mono_ns=30 * S)      # unanswered, committed during a cut
    events = [quiet, in_cut]
    first = {"a": 10 * S + 5e6, "b": 34 * S}
    path = [(29 * S, 36 * S)]
    # Neither escalated: both had to (no acknowledgement ever came).
    none = tally_escalations(events, first, {}, kills=[], sms_texts=[], ack_timeout_s=8.0,
                             unanswered={"a", "b"}, path_faults=path)
    assert none.unescalated == [1, 2] and none.unanswered == 2
    # Both escalated with uplink_down: right for b (its PUBACK waited on the cut), wrong
    # for a (delivered at once, so only the missing acknowledgement could have escalated it).
    texts = ["ALARM a at s/g 12:00:00, seq 1: uplink down.",
             "ALARM b at s/g 12:00:20, seq 2: uplink down."]
    down = [*events, _escalation(3, quiet, "sounder_on", "uplink_down"),
            _escalation(4, quiet, "sms_sent", "uplink_down"),
            _escalation(5, in_cut, "sounder_on", "uplink_down"),
            _escalation(6, in_cut, "sms_sent", "uplink_down")]
    wrong = tally_escalations(down, first, {}, kills=[], sms_texts=texts, ack_timeout_s=8.0,
                              unanswered={"a", "b"}, path_faults=path)
    assert wrong.no_ack_missed == [1] and wrong.unescalated == []
    assert wrong.failures == 1
    # A SIGKILL soon after a's commit excuses it (the restarted gateway's view differs).
    assert tally_escalations(down, first, {}, kills=[12 * S], sms_texts=texts,
                             ack_timeout_s=8.0, unanswered={"a", "b"},
                             path_faults=path).no_ack_missed == []
    right = [*events, _escalation(3, quiet, "sounder_on"), _escalation(4, quiet, "sms_sent"),
             _escalation(5, in_cut, "sounder_on", "uplink_down"),
             _escalation(6, in_cut, "sms_sent", "uplink_down")]
    ok = tally_escalations(right, first, {}, kills=[], sms_texts=texts, ack_timeout_s=8.0,
                           unanswered={"a", "b"}, path_faults=path)
    assert ok.failures == 0 and ok.reasons == {"no_ack": 1, "uplink_down": 1}


def test_an_alarm_acknowledged_in_time_must_not_escalate_for_want_of_an_ack() -> None:
    prompt = _event(1, "a", mono_ns=10 * S)     # its ack result was back after 50 ms
    slow = _event(2, "b", mono_ns=20 * S)       # its ack result came back 9 s after commit
    events = [prompt, slow, _escalation(3, prompt, "sounder_on"),
              _escalation(4, prompt, "sms_sent"), _escalation(5, slow, "sounder_on"),
              _escalation(6, slow, "sms_sent")]
    first = {"a": 10 * S + 5e6, "b": 27 * S}
    acked = {"a": 10 * S + 50e6, "b": 29 * S}
    texts = ["ALARM a at s/g 12:00:00, seq 1: no police ack.",
             "ALARM b at s/g 12:00:10, seq 2: no police ack."]
    t = tally_escalations(events, first, acked, kills=[], sms_texts=texts, ack_timeout_s=8.0)
    assert t.no_ack_after_ack == [1]
    assert t.unescalated == [] and t.failures == 1


def test_every_escalation_records_its_sounder_and_its_sms() -> None:
    a, b = _event(1, "a", mono_ns=10 * S), _event(2, "b", mono_ns=20 * S)
    events = [a, b, _escalation(3, a, "sounder_on"), _escalation(4, b, "sounder_failed"),
              _escalation(5, b, "sms_sent")]
    texts = ["ALARM b at s/g 12:00:10, seq 2: no police ack."]
    t = tally_escalations(events, {}, {}, kills=[], sms_texts=texts, ack_timeout_s=8.0)
    assert t.incomplete == [1] and t.failures == 1
    # A SIGKILL between the sounder and the SMS excuses it.
    killed = tally_escalations(events, {}, {}, kills=[18 * S], sms_texts=texts,
                               ack_timeout_s=8.0)
    assert killed.incomplete == [] and killed.excused_by_kill == 1


def test_a_failed_sms_needs_a_broken_modem_and_is_no_missing_text() -> None:
    a = _event(1, "a", mono_ns=10 * S)
    modem_fault = {**_event(2, "f2", "fault"), "point": {"id": "modem"}}
    events = [a, modem_fault, _escalation(3, a, "sounder_on", mono_ns=18 * S),
              _escalation(4, a, "sms_failed", mono_ns=23 * S)]
    # The modem failed from 12 s to 30 s: the SMS could not go, and no text is owed.
    broken = tally_escalations(events, {}, {}, kills=[], sms_texts=[], ack_timeout_s=8.0,
                               unanswered={"a"}, modem_faults=[(12 * S, 30 * S)])
    assert broken.failures == 0 and broken.sms_unconfirmed == []
    assert broken.steps["sms_failed"] == 1 and broken.modem_faults == 1
    # A modem fault that began while the SMS was already on its way explains it too.
    under_way = tally_escalations(events, {}, {}, kills=[], sms_texts=[], ack_timeout_s=8.0,
                                  unanswered={"a"}, modem_faults=[(20 * S, 30 * S)])
    assert under_way.failures == 0
    # With the modem well (its only fault long over), a failed SMS is the gateway's fault.
    well = tally_escalations(events, {}, {}, kills=[], sms_texts=[], ack_timeout_s=8.0,
                             unanswered={"a"}, modem_faults=[(0, 5 * S)])
    assert well.sms_failed_modem_ok == [1] and well.failures == 1


def test_the_operator_leaves_the_same_few_alarms_unanswered_in_every_run() -> None:
    first = [seq for seq in range(1, 2001) if not operator_answers(7, seq)]
    assert first == [seq for seq in range(1, 2001) if not operator_answers(7, seq)]
    assert first != [seq for seq in range(1, 2001) if not operator_answers(42, seq)]
    assert abs(len(first) / 2000 - UNANSWERED_SHARE) < 0.02


def test_a_complete_record_passes() -> None:
    result = tally(2, [_event(2, "b"), _event(1, "a")], {}, windows=[])
    assert (result.lost, result.seq_twice, result.gaps) == ([], [], [])
    assert result.ok


def test_a_fault_never_cleared_fails_the_run() -> None:
    def fault(seq: int, etype: str) -> dict[str, object]:
        return {**_event(seq, f"f{seq}", etype), "point": {"id": "io4"}}
    paired = tally(2, [fault(1, "fault"), fault(2, "fault_cleared")], {}, windows=[])
    assert paired.ok and paired.device_faults == 1
    open_one = tally(3, [fault(1, "fault"), fault(2, "fault_cleared"), fault(3, "fault")], {},
                     windows=[])
    assert open_one.unpaired_faults == {"io4": 1}
    assert not open_one.ok


def test_main_refuses_a_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    from hw_sim.chaos import main
    with pytest.raises(SystemExit) as exc:
        main(["--duration", "0"])
    assert exc.value.code == 2
    assert "--duration" in capsys.readouterr().err


def _arc(seq: int, cid: str, zone: int, at_ns: int, answer: str = "normal", *,
         message_type: str = "ADM-CID") -> dict[str, object]:
    """What the receiving centre recorded of one message: `cid` is qualifier and code."""
    return {"account": "1234", "sequence": f"{seq:04d}", "event_qualifier": cid[0],
            "event_type": cid[1:], "ri": f"{zone:03d}", "message_type": message_type,
            "answer": answer, "arrived_ns": at_ns}


def _pressed(seq: int, eid: str, point: str, mono_ns: int, etype: str = "alarm"
             ) -> dict[str, object]:
    return {**_event(seq, eid, etype, mono_ns=mono_ns), "point": {"id": point}}


def test_the_dc09_tally_finds_every_alarm_at_the_centre_once() -> None:
    events = [_pressed(1, "a", "gate-panic", 10 * S), _pressed(2, "b", "gate-panic", 11 * S,
                                                               "restore"),
              _pressed(3, "c", "box-tamper", 20 * S, "tamper"),
              _pressed(4, "d", "office-panic", 30 * S), _pressed(5, "e", "gate-panic", 40 * S)]
    arc = [_arc(1, "1120", 1, 10 * S + 20_000_000),
           _arc(2, "3120", 1, 11 * S + 9_000_000),            # a restore: not an alarm
           _arc(3, "1144", 3, 20 * S + 5_000_000, "silent"),  # taken, never answered...
           _arc(3, "1144", 3, 22 * S),                        # ...and resent: ACKed
           _arc(9001, "1602", 0, 25 * S, message_type="NULL"),
           _arc(4, "1122", 2, 30 * S + 8_000_000),
           _arc(5, "1120", 1, 40 * S + 7_000_000),
           _arc(5, "1120", 1, 40 * S + 9_000_000)]            # its ACK lost at a kill
    t = tally_dc09(events, arc, [(19 * S, 23 * S, "arc_blackhole"),
                                 (29 * S, 31 * S, "cut")], answers={"ACK": 6, "none": 1})
    assert (t.alarms, t.arrived, t.both, t.copies, t.resent) == (4, 4, 4, 6, 2)
    assert t.lost == [] and t.extra == 0 and t.seq_conflicts == 0 and t.failures == 0
    # Latency to the first ACKed copy; the alarm held by the black hole is not "centre up",
    # the one during an MQTT cut is (the DC-09 path does not wait for MQTT).
    assert sorted(t.latency_all_ms) == [7.0, 8.0, 20.0, 2000.0]
    assert sorted(t.latency_up_ms) == [7.0, 8.0, 20.0]
    result = tally(5, events, {}, windows=[])
    result.dc09 = t
    assert result.ok and "dc09[alarms=4 arrived=4 lost=0 extra=0" in result.summary()


def test_the_dc09_tally_catches_a_lost_alarm_a_new_sequence_and_a_reused_one() -> None:
    events = [_pressed(1, "a", "hall-panic", 10 * S), _pressed(2, "b", "hall-panic", 20 * S),
              _pressed(3, "c", "gym-panic", 30 * S)]
    # b only ever met a black hole (never ACKed); c went out twice under two numbers.
    arc = [_arc(1, "1121", 4, 10 * S + S // 100), _arc(2, "1121", 4, 20 * S, "silent"),
           _arc(3, "1120", 5, 30 * S), _arc(4, "1120", 5, 31 * S)]
    t = tally_dc09(events, arc, [])
    assert t.lost == [2] and t.mqtt_only == 1
    assert t.extra == 1 and t.dc09_only == 1 and t.failures == 2
    # A sequence number back with another content is one a receiver would drop.
    reused = tally_dc09(events[:1], [_arc(1, "1121", 4, 10 * S), _arc(1, "3121", 4, 11 * S)],
                        [])
    assert reused.seq_conflicts == 1 and reused.failures == 1
    # ...unless the numbers have gone round since (a receiver's window is that long).
    far = [_arc(1, "1121", 4, 10 * S)] + [_arc(n, "1602", 0, 10 * S)
                                          for n in range(2, DC09_DEDUP_WINDOW + 3)]
    assert tally_dc09(events[:1], [*far, _arc(1, "3121", 4, 12 * S)], []).seq_conflicts == 0


def test_a_duh_a_spoilt_answer_unnoticed_or_a_queue_left_fail_the_dc09_path() -> None:
    events = [_pressed(1, "a", "gate-panic", 10 * S)]
    arc = [_arc(1, "1120", 1, 10 * S)]
    assert tally_dc09(events, arc, [], answers={"ACK": 1, "DUH": 1}).failures == 1
    spoilt = tally_dc09(events, arc, [], spoilt_faults=[(3, 3), (2, 0), (0, 0)])
    assert spoilt.spoilt_unnoticed == 1 and spoilt.bad_replies == 3 and spoilt.failures == 1
    left = tally_dc09(events, arc, [])
    left.drained = False
    assert left.failures == 1

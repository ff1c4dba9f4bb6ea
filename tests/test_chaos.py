"""The CI chaos run: a fixed seed, every kind of fault, and not one committed press lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw_sim.chaos import (
    FAULTS,
    UNANSWERED_SHARE,
    ChaosRun,
    operator_answers,
    tally,
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
    # Alarms kept from the platform escalated (sounder and SMS); none that had to was missed.
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

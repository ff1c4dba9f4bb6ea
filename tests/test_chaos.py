"""The CI chaos run: a fixed seed, every kind of fault, and not one committed press lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw_sim.chaos import FAULTS, ChaosRun, tally

#: Seconds of faults in CI: long enough for every kind of fault at least once.
CI_DURATION_S = 90.0
CI_SEED = 7


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

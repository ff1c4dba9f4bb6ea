"""The CI chaos run: a fixed seed, every kind of fault, and not one committed press lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw_sim.chaos import FAULTS, ChaosRun

#: Seconds of faults in CI: long enough for every kind of fault at least once.
CI_DURATION_S = 75.0
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
    # The promises: zero lost, no id twice, seq gapless, the queue drained.
    assert result.drained
    assert result.lost == []
    assert result.seq_twice == []
    assert result.gaps == []
    assert result.delivered == result.committed
    assert result.ok


def test_a_loss_fails_the_run() -> None:
    from hw_sim.chaos import ChaosResult
    base = dict(seed=1, duration_s=1.0, faults={}, presses=3, refused=0, committed=3,
                delivered=3, lost=[], seq_twice=[], gaps=[], redelivered=0)
    assert ChaosResult(**base).ok  # type: ignore[arg-type]
    lost = ChaosResult(**{**base, "delivered": 2, "lost": [2], "gaps": [2]})  # type: ignore[arg-type]
    assert not lost.ok
    assert "FAIL" in lost.summary() and "lost=1" in lost.summary()


def test_main_refuses_a_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    from hw_sim.chaos import main
    with pytest.raises(SystemExit) as exc:
        main(["--duration", "0"])
    assert exc.value.code == 2
    assert "--duration" in capsys.readouterr().err

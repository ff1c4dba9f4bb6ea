"""The optional atheris harnesses (tests/fuzz/) still run: a short smoke run of each.

atheris ships wheels for x86_64 Linux only (none for the Pi's aarch64), so it is not in the
dev extras and CI skips this file. Where it is installed (`.venv/bin/pip install atheris`),
this checks that each harness starts, fuzzes a few thousand inputs and finds nothing; the
real runs are longer (docs/reliability.md, "Fuzzing").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is optional (x86_64 wheels only)")

FUZZ_DIR = Path(__file__).parent / "fuzz"
RUNS = 2000


@pytest.mark.parametrize(("harness", "extra"), [
    ("atheris_commands.py", []),
    ("atheris_camera.py", [f"-dict={FUZZ_DIR / 'http.dict'}"]),
], ids=["commands", "camera"])
def test_each_harness_fuzzes_without_a_finding(harness: str, extra: list[str],
                                               tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(FUZZ_DIR / harness), f"-runs={RUNS}", "-seed=1",
         f"-artifact_prefix={tmp_path}/", *extra],
        capture_output=True, text=True, timeout=110, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Done {RUNS} runs" in proc.stderr
    assert not list(tmp_path.iterdir())  # no crash-* or timeout-* artifact

"""The README's first command: `alarmgw demo` shows an alarm reach the platform and its ack."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from gw import REPO


def test_demo_runs_the_whole_system_and_cleans_up() -> None:
    res = subprocess.run([sys.executable, "-m", "gateway", "demo", "--duration", "0.5"],
                         cwd=REPO, capture_output=True, text=True, timeout=90, check=False)
    out = res.stdout
    assert res.returncode == 0, res.stdout + res.stderr
    # (A fault for this machine's unsynced clock may come first: it is real.)
    alarm = re.search(r"ALARM +demo-school/gw-sim seq (\d+)  gate-panic", out)
    assert alarm is not None, out
    assert f"ACKNOWLEDGED   demo-school/gw-sim seq {alarm.group(1)} by" in out
    assert "RESTORE" in out
    # The short inspection: two test presses, then a report in which both passed.
    assert re.search(r"TEST +demo-school/gw-sim seq \d+  gate-panic", out), out
    assert re.search(r"TEST +demo-school/gw-sim seq \d+  office-panic", out), out
    assert ("inspection report: passed ['gate-panic', 'office-panic'], failed [],"
            " not tested []") in out
    assert "open seq gaps: none" in out
    # Its temporary directory, broker and gateway are gone.
    tmp = next(line.split("(log ")[1].rstrip(")") for line in out.splitlines()
               if "private Mosquitto" in line)
    assert not Path(tmp).exists()

"""The README's first command: `alarmgw demo` shows an alarm reach the platform and its ack,
and the alarm-receiving centre (ARC) on the second path, SIA DC-09."""

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
    # The same press at the simulated ARC, over DC-09 with the run's key: a panic (1120) in
    # gate-panic's zone, its restore, the Modbus button's zone and the inspection's tests.
    arc = re.search(r"simulated alarm-receiving centre \(ARC\) on 127\.0\.0\.1:(\d+), account"
                    r" 1234, AES-128 key in (\S+)/dc09\.key", out)
    assert arc is not None, out
    press = out.index("demo: pressing gate-panic")
    assert out.index("ARC 1234: 1120 zone 001 (panic, new)\n") > press, out
    for line in ("ARC 1234: 3120 zone 001 (panic, restore)",
                 "ARC 1234: 1120 zone 004 (panic, new)",
                 "ARC 1234: 1601 zone 001 (manual test, new)",
                 "ARC 1234: 1601 zone 002 (manual test, new)"):
        assert line + "\n" in out, (line, out)
    # Printed once the receiver has stopped.
    received = re.search(r"demo: ARC received (\d+) Contact ID events", out)
    assert received is not None and int(received.group(1)) >= 6, out
    # Its temporary directory, broker and gateway are gone.
    tmp = next(line.split("(log ")[1].rstrip(")") for line in out.splitlines()
               if "private Mosquitto" in line)
    assert not Path(tmp).exists()
    assert arc.group(2) == str(Path(tmp).parent)  # the ARC's key file was in it, and
    assert not Path(arc.group(2)).exists()          # it is gone too

"""`alarmgw inspect` against a running service: start, a second start refused, status,
stop with its report, `report` (exit 1 when a point was not tested) and `report` from the
disk once the service is down (exit 3); usage errors are 2, every --json one document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gw import InProcessGateway, write_config

from gateway.cli.program import main
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

WAIT = 15.0


def run(capsys: pytest.CaptureFixture[str], cfg: Path, *args: str) -> tuple[int, Any, str]:
    """`alarmgw -c CFG ARGS... --json` in this process: exit code, its document, stderr."""
    code = main(["-c", str(cfg), *args, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def test_inspect_start_status_stop_and_report(tmp_path: Path, broker: Mosquitto,
                                              console: PlatformConsole,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None
        code, doc, _ = run(capsys, cfg, "inspect", "start", "--points",
                           "gate-panic,box-tamper", "--minutes", "10", "--by", "张工")
        assert code == 0 and doc["ok"] is True, doc
        assert doc["points"] == ["gate-panic", "box-tamper"] and doc["by"] == "张工"
        code, again, err = run(capsys, cfg, "inspect", "start", "--by", "李工")
        assert code == 1 and again["ok"] is False
        assert doc["id"] in again["error"] and "stop it first" in again["error"]
        code, bad, _ = run(capsys, cfg, "inspect", "start", "--by", "x", "--points",
                           "gate-panic,nope")
        assert code == 2 and "no input 'nope'" in bad["error"]
        code, usage, _ = run(capsys, cfg, "inspect", "start")
        assert code == 2 and "--by" in usage["error"]
        gw.panel.press("gate-panic")
        assert console.wait_for(lambda c: len(c.events_of("test", "gate-panic")) == 1, WAIT)
        gw.panel.release("gate-panic")
        assert console.wait_for(lambda c: len(c.events_of("restore", "gate-panic")) == 1,
                                WAIT)
        code, st, _ = run(capsys, cfg, "inspect", "status")
        assert code == 0 and st["window"]["id"] == doc["id"]
        assert st["window"]["results"]["gate-panic"]["presses"] == 1
        code, none_yet, _ = run(capsys, cfg, "inspect", "report")
        assert code == 1 and "no inspection has ended yet" in none_yet["error"]
        code, stopped, _ = run(capsys, cfg, "inspect", "stop", "--by", "张工")
        assert code == 0 and stopped["report"]["reason"] == "stopped"
        code, report, _ = run(capsys, cfg, "inspect", "report")
        assert code == 1  # box-tamper was not tested: it needs attention
        assert [e["point"] for e in report["report"]["not_tested"]] == ["box-tamper"]
        code, none, _ = run(capsys, cfg, "inspect", "stop")
        assert code == 1 and "no inspection is running" in none["error"]
        # The status screen shows the inspection lines too.
        assert main(["-c", str(cfg), "status"]) in (0, 1)
        assert "inspection: none running" in capsys.readouterr().out
    code, offline, err = run(capsys, cfg, "inspect", "report")
    assert code == 3 and offline["running"] is False
    assert offline["report"]["inspection"] == doc["id"] and "not running" in err
    assert main(["-c", str(cfg), "inspect", "report"]) == 3
    text = capsys.readouterr().out
    assert "NOT TESTED  1" in text and "box-tamper" in text

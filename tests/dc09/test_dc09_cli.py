"""The technician's view of the DC-09 path: `alarmgw status` shows each path (last ACK,
round trip, queue, next supervision message) and `alarmgw test-alarm --path dc09` sends a
601 over that path alone, exit 0 on ACK and 1 when the receiver does not answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gw import InProcessGateway
from test_dc09_path import dc09_config

from gateway.cli.program import main
from hw_sim.arc import ArcReceiver
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

WAIT = 15.0



def test_status_shows_both_paths_and_test_alarm_proves_the_dc09_one(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, arc: ArcReceiver,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = dc09_config(tmp_path, broker.port, arc.port, key=True)
    with InProcessGateway(cfg):
        assert main(["-c", str(cfg), "test-alarm", "gate-panic", "--path", "dc09"]) == 0
        out = capsys.readouterr().out
        assert "Contact ID 601, zone 007" in out and "ACKed by tcp://127.0.0.1:" in out
        arc.wait_for(lambda e: e.get("event_type") == "601" and e["ri"] == "007", WAIT)

        assert main(["-c", str(cfg), "status"]) in (0, 1)
        text = capsys.readouterr().out
        paths = [line for line in text.splitlines() if "paths:" in line or "dc09 " in line]
        assert any("MQTT primary" in line and "DC-09 secondary" in line for line in paths), text
        dc09 = next(line for line in paths if line.strip().startswith("dc09"))
        assert " AES: works; last ACK 20" in dc09 and "round trip" in dc09
        assert "0 waiting" in dc09 and "supervision every 60 min, next in" in dc09, dc09

        assert main(["-c", str(cfg), "status", "--json"]) in (0, 1)
        doc = json.loads(capsys.readouterr().out)["paths"]
        assert doc["dc09"]["acked"] >= 1 and doc["dc09"]["endpoint"].startswith("tcp://")
        assert doc["faults"] == {"mqtt": False, "dc09": False}

        arc.mode = "silent"
        code = main(["-c", str(cfg), "test-alarm", "gate-panic", "--path", "dc09", "--json"])
        res = json.loads(capsys.readouterr().out)
        assert code == 1 and res["ok"] is False and res["outcome"] == "timeout", res
        # A drill is the platform's: it cannot go over the DC-09 path alone.
        assert main(["-c", str(cfg), "test-alarm", "gate-panic", "--drill", "--path",
                     "dc09"]) == 1
        assert "--path dc09 sends a test only" in capsys.readouterr().err
    assert console.events_of("test") == []  # path tests are not events

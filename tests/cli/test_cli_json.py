"""`--json` everywhere, and one exit-code rule for every command (gateway/cli/common.py).

Every command that takes --json prints exactly one JSON document on stdout, whatever
happens (errors are `{"ok": false, "error": ...}`), and exits with the code it has without
--json: 0 fine, 1 failed or needs attention, 2 bad usage or config (also an input,
module, bus, output or camera the config does not have), 3 the service is not running.
Each command runs as a real `alarmgw` process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gw import REPO, write_config
from modbus_cfg import device, modbus_input, tcp_bus, write_modbus_config

from hw_sim.modbus import SimTcpBus

CLI_TIMEOUT = 30.0


def alarmgw(config: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=CLI_TIMEOUT,
                          check=False, env=env)


def one_document(res: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a --json command printed (fails on anything else)."""
    assert "Traceback" not in res.stderr, res.stderr
    return json.loads(res.stdout)


@pytest.fixture
def stopped(tmp_path: Path) -> Path:
    """A config whose service is not running; one simulated camera, one output."""
    config = write_config(tmp_path / "gw", broker_port=1,
                          cameras=[{"id": "sim-cam", "driver": "sim"}])
    with config.open("a", encoding="utf-8") as f:
        f.write('\n[[outputs]]\nid = "sounder"\nname = "警号"\ngpio = 23\n')
    return config


# -- the service stopped: every command, with and without --json ------------------------------

@pytest.mark.parametrize(("args", "code"), [
    (("status",), 3),
    (("inputs",), 3),
    (("queue",), 3),
    (("drills",), 3),
    (("outputs",), 3),
    (("selftest",), 3),
    (("test-alarm", "gate-panic"), 3),
    (("test-alarm", "no-such-point"), 2),
    (("sim", "press", "gate-panic"), 3),
    (("sim", "press", "no-such-point"), 2),
    (("output", "sounder", "on"), 3),
    (("output", "siren", "on"), 2),
    (("snapshot", "sim-cam"), 3),
    (("snapshot", "yard-cam"), 2),
    (("inspect", "status"), 3),
    (("inspect", "start", "--by", "张工"), 3),
    (("inspect", "start", "--by", "张工", "--points", "no-such-point"), 2),
    (("inspect", "start", "--by", "张工", "--minutes", "241"), 2),
    (("inspect", "stop"), 3),
    (("inspect", "report"), 3),
    (("check-config",), 0),
])
def test_one_rule_and_one_document_with_the_service_stopped(stopped: Path,
                                                           args: tuple[str, ...],
                                                           code: int) -> None:
    text = alarmgw(stopped, *args)
    assert text.returncode == code, text
    assert "Traceback" not in text.stderr, text.stderr
    res = alarmgw(stopped, *args, "--json")
    assert res.returncode == code, res
    doc = one_document(res)
    if code == 3 and isinstance(doc, dict) and "error" in doc:
        assert "not running" in doc["error"]
    if code == 2:
        assert doc["ok"] is False
        assert args[-1] in doc["error"] or args[1] in doc["error"], doc


def test_queue_and_drills_without_the_service_print_what_the_disk_says_and_exit_3(
        stopped: Path) -> None:
    """`queue` used to exit 0 when the service was down (while `status` exited 3)."""
    res = alarmgw(stopped, "queue")
    assert res.returncode == 3
    assert "not running" in res.stderr and "no store at" in res.stderr
    res = alarmgw(stopped, "drills", "--json")
    assert res.returncode == 3
    doc = one_document(res)
    assert doc["running"] is False and "no store at" in doc["store_error"]


def test_an_unknown_point_is_known_from_the_config_before_the_socket(stopped: Path) -> None:
    """test-alarm no-such-point: 2 (bad usage), not 3, with the service stopped."""
    res = alarmgw(stopped, "test-alarm", "no-such-point")
    assert res.returncode == 2, res
    assert "no input 'no-such-point'" in res.stderr and "gate-panic" in res.stderr
    assert "not running" not in res.stderr


def test_test_alarm_accepts_json(stopped: Path) -> None:
    """`test-alarm --json` used to print the top-level usage (exit 2)."""
    res = alarmgw(stopped, "test-alarm", "gate-panic", "--json")
    assert "usage:" not in res.stderr, res.stderr
    assert res.returncode == 3
    doc = one_document(res)
    assert (doc["ok"], doc["running"]) == (False, False) and "not running" in doc["error"]


def test_a_usage_error_with_json_is_a_json_document(stopped: Path) -> None:
    res = alarmgw(stopped, "queue", "--limit", "many", "--json")
    assert res.returncode == 2
    doc = one_document(res)
    assert doc["ok"] is False
    assert "--limit" in doc["error"] and "invalid int value" in doc["error"]
    assert doc["usage"].startswith("usage: alarmgw queue")
    text = alarmgw(stopped, "queue", "--limit", "many")
    assert (text.returncode, text.stdout) == (2, "")
    assert "alarmgw queue: error: argument --limit" in text.stderr


def test_a_config_error_with_json_is_a_json_document(tmp_path: Path) -> None:
    res = alarmgw(tmp_path / "nope.toml", "queue", "--json")
    assert res.returncode == 2
    doc = one_document(res)
    assert doc["ok"] is False and "file not found" in doc["error"]
    assert doc["path"] == str(tmp_path / "nope.toml")


def test_the_help_says_the_exit_codes() -> None:
    res = subprocess.run([sys.executable, "-m", "gateway", "--help"], capture_output=True,
                         text=True, cwd=REPO, timeout=CLI_TIMEOUT, check=False)
    assert "3 the service is not running" in " ".join(res.stdout.split())
    res = subprocess.run([sys.executable, "-m", "gateway", "queue", "--help"],
                         capture_output=True, text=True, cwd=REPO, timeout=CLI_TIMEOUT,
                         check=False)
    assert "exit codes: 0 fine" in " ".join(res.stdout.split())


def test_the_readme_states_the_rule() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    line = " ".join(readme.split("Exit codes:", 1)[1].split("\n\n", 1)[0].split())
    for words in ("0 fine", "1 failed or needs attention", "2 bad usage or config",
                  "3 the service is not running", "status", "queue"):
        assert words in line, line


# -- logs --json ---------------------------------------------------------------------------------

def test_logs_json_prints_a_document_when_there_is_no_journal(stopped: Path,
                                                              tmp_path: Path) -> None:
    """No journalctl at all: `logs --json` used to print nothing on stdout."""
    (tmp_path / "empty").mkdir()
    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    res = alarmgw(stopped, "logs", "--json", env=env)
    assert res.returncode == 1
    doc = one_document(res)
    assert doc["ok"] is False and doc["journal"] is False
    assert "journalctl not found" in doc["error"]
    assert doc["service"] is None  # nothing runs for this config
    assert res.returncode == alarmgw(stopped, "logs", env=env).returncode


# -- modbus-scan --json --------------------------------------------------------------------------

def test_modbus_scan_json_errors_are_json(tmp_path: Path) -> None:
    res = alarmgw(tmp_path / "none.toml", "modbus-scan", "--port", str(tmp_path / "ttyUSB9"),
                  "--json")
    assert res.returncode == 1
    doc = one_document(res)
    assert doc["ok"] is False
    assert "cannot open serial port" in doc["error"] and doc["kind"] == "link"
    assert doc["where"].startswith(str(tmp_path / "ttyUSB9"))

    res = alarmgw(tmp_path / "none.toml", "modbus-scan", "--host", "127.0.0.1", "--units",
                  "x", "--json")
    assert res.returncode == 2
    assert "--units" in one_document(res)["error"]

    module = SimTcpBus([1])
    module.start()
    try:
        config = write_modbus_config(
            tmp_path / "gw", broker_port=1, modbus={"simulator": False},
            buses=[tcp_bus(port=module.port)], devices=[device("gym", 1, bus="lan")],
            inputs=[modbus_input("gym-panic", "gym", 1)])
        res = alarmgw(config, "modbus-scan", "--bus", "rs232", "--json")
        assert res.returncode == 2
        assert "no bus 'rs232'" in one_document(res)["error"]
        res = alarmgw(config, "modbus-scan", "--bus", "lan", "--json")
        assert res.returncode == 0, res.stderr
        doc = one_document(res)
        assert (doc["ok"], doc["found"], doc["where"]) == (True, [1],
                                                           f"127.0.0.1:{module.port}")
    finally:
        module.stop()


# -- snapshot --json -----------------------------------------------------------------------------

def test_snapshot_json_errors_are_json(stopped: Path, tmp_path: Path) -> None:
    res = alarmgw(stopped, "snapshot", "yard-cam", "--json")
    assert res.returncode == 2
    doc = one_document(res)
    assert doc["ok"] is False
    assert "no camera 'yard-cam'" in doc["error"] and "sim-cam" in doc["error"]

    res = alarmgw(stopped, "snapshot", "sim-cam", "--json")
    assert res.returncode == 3
    doc = one_document(res)
    assert doc["ok"] is False and doc["camera"] == "sim-cam"
    assert re.search(r"simulated .* not running", doc["error"]), doc

"""The technician's commands against a running gateway: status, inputs, queue, test-alarm, sim.

Each command runs as a real `alarmgw` process (`python -m gateway -c CONFIG ...`) that talks
to an in-process gateway over its control socket; events are checked where the police
platform sees them, at a PlatformConsole on a real Mosquitto. Without a running service,
`status`, `inputs` and `queue` exit 3 (`queue` after reading the store on disk).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gw import REPO, InProcessGateway, write_config

from gateway.config import load_config
from gateway.service import socket_path
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

#: Upper bound for anything that takes milliseconds on loopback, in seconds.
WAIT = 10.0
#: Upper bound for one `alarmgw` command, in seconds (they take well under one).
CLI_TIMEOUT = 30.0

GATEWAY = "test-school/gw-test"
INPUT_IDS = ["gate-panic", "office-panic", "box-tamper"]
LANES = {"alarm", "event", "bulk"}


def alarmgw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `alarmgw -c CONFIG ARGS...` as a real process and capture its output."""
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=CLI_TIMEOUT,
                          check=False)


def ok(config: Path, *args: str) -> str:
    """Run a command that must succeed; return its stdout."""
    res = alarmgw(config, *args)
    assert res.returncode == 0, f"alarmgw {' '.join(args)}: exit {res.returncode}\n{res.stderr}"
    return res.stdout


def ok_json(config: Path, *args: str) -> Any:
    return json.loads(ok(config, *args, "--json"))


def socket_path_of(config: Path) -> Path:
    return socket_path(load_config(config))


@dataclass
class Running:
    config: Path
    gw: InProcessGateway
    console: PlatformConsole
    broker: Mosquitto


@pytest.fixture
def running(tmp_path: Path, broker: Mosquitto) -> Iterator[Running]:
    """A gateway on the simulator, online at a platform console on a real broker."""
    config = write_config(tmp_path / "gw", broker_port=broker.port)
    with PlatformConsole(broker.host, broker.port, persistent=False) as console:
        gw = InProcessGateway(config)
        try:
            gw.start()
            assert console.wait_for(
                lambda c: c.status.get(GATEWAY, {}).get("state") == "online", WAIT), \
                "the gateway never came online"
            yield Running(config, gw, console, broker)
        finally:
            gw.stop()


# -- status ------------------------------------------------------------------------------

def test_status(running: Running) -> None:
    out = ok(running.config, "status")
    lines = out.splitlines()
    assert lines[0].startswith("alarmgw ")
    assert f"{GATEWAY}: running (pid {os.getpid()}" in lines[0]
    assert "[SIMULATOR]" in lines[0]
    assert re.search(rf"^uplink:\s+CONNECTED to 127\.0\.0\.1:{running.broker.port} PLAINTEXT",
                     out, re.M), out
    queue_line = next(ln for ln in lines if ln.startswith("queue:"))
    for lane in LANES:
        assert f"{lane} 0 ready / 0 in flight" in queue_line
    assert re.search(r"^clock:\s+synced", out, re.M), out
    assert re.search(r"^disk:\s+\d+ MB free on ", out, re.M), out
    for inp in INPUT_IDS:
        assert re.search(rf"^\s+{inp}\s+\w+\s+gpio:\d+\s+normal", out, re.M), out


def test_status_json(running: Running) -> None:
    st = ok_json(running.config, "status")
    assert st["running"] is True
    assert st["pid"] == os.getpid()
    assert (st["site"], st["gateway"]) == ("test-school", "gw-test")
    assert st["config"] == str(running.config)
    assert st["simulator"] is True
    up = st["uplink"]
    assert up["connected"] is True
    assert up["broker"] == f"127.0.0.1:{running.broker.port}"
    assert up["tls"] is False
    assert up["last_error"] is None
    assert set(st["queue"]["lanes"]) == LANES
    assert st["queue"]["waiting"] == 0
    assert [p["id"] for p in st["inputs"]] == INPUT_IDS
    gate = st["inputs"][0]
    assert (gate["kind"], gate["source"], gate["active"]) == ("panic", "gpio:17", False)
    assert gate["wire"]["debounce_ms"] == 30
    assert st["clock"]["synced"] is True


# -- inputs ------------------------------------------------------------------------------

def test_inputs(running: Running) -> None:
    out = ok(running.config, "inputs")
    for inp, kind, source in (("gate-panic", "panic", "gpio:17"),
                              ("office-panic", "panic", "gpio:27"),
                              ("box-tamper", "tamper", "gpio:22")):
        assert re.search(rf"^\s+{inp}\s+{kind}\s+{source}\s+normal\b", out, re.M), out


def test_inputs_json_follows_a_press(running: Running) -> None:
    points = ok_json(running.config, "inputs")
    assert [p["id"] for p in points] == INPUT_IDS
    assert all(p["active"] is False for p in points)
    assert running.gw.panel is not None
    running.gw.panel.press("gate-panic")
    assert running.console.wait_for(lambda c: bool(c.events_of("alarm", "gate-panic")), WAIT)
    by_id = {p["id"]: p for p in ok_json(running.config, "inputs")}
    assert by_id["gate-panic"]["active"] is True
    assert by_id["gate-panic"]["alarms"] == 1
    assert by_id["gate-panic"]["last_event"]["type"] == "alarm"
    assert by_id["office-panic"]["active"] is False
    out = ok(running.config, "inputs")
    assert re.search(r"^\s+gate-panic\s+panic\s+gpio:17\s+ACTIVE\b", out, re.M), out


# -- queue -------------------------------------------------------------------------------

def test_queue_while_running(running: Running) -> None:
    res = ok_json(running.config, "queue")
    assert res["running"] is True
    assert set(res["stats"]["lanes"]) == LANES
    assert res["stats"]["waiting"] == 0
    assert res["waiting"] == []
    out = ok(running.config, "queue")
    assert out.startswith("0 waiting: ")
    for lane in LANES:
        assert f"{lane} 0 ready" in out


# -- test-alarm and sim ----------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "etype"), [((), "test"), (("--drill",), "drill")])
def test_test_alarm_reaches_the_platform(running: Running, flags: tuple[str, ...],
                                         etype: str) -> None:
    out = ok(running.config, "test-alarm", "gate-panic", *flags)
    m = re.match(rf"{etype} event for gate-panic committed: seq (\d+) id (\S+);", out)
    assert m, out
    seq, event_id = int(m.group(1)), m.group(2)
    assert running.console.wait_for(lambda c: event_id in c.ids, WAIT), \
        f"{etype} event {event_id} never reached the platform"
    (event,) = running.console.events_of(etype, "gate-panic")
    assert event["id"] == event_id
    assert event["seq"] == seq
    assert event["source"] == "gpio:17"
    # A test is not an alarm: the input did not change.
    assert running.console.events_of("alarm") == []


def test_test_alarm_json(running: Running) -> None:
    """`test-alarm --json` used to be refused with the top-level usage."""
    doc = ok_json(running.config, "test-alarm", "gate-panic", "--drill")
    assert (doc["ok"], doc["type"], doc["point"]) == (True, "drill", "gate-panic")
    assert running.console.wait_for(lambda c: doc["id"] in c.ids, WAIT)


def test_sim_press_and_release(running: Running) -> None:
    out = ok(running.config, "sim", "press", "gate-panic")
    assert out.strip() == "gate-panic: ACTIVE"
    assert running.console.wait_for(lambda c: bool(c.events_of("alarm", "gate-panic")), WAIT)
    out = ok(running.config, "sim", "release", "gate-panic")
    assert out.strip() == "gate-panic: normal"
    assert running.console.wait_for(lambda c: bool(c.events_of("restore", "gate-panic")), WAIT)
    (alarm,) = running.console.events_of("alarm", "gate-panic")
    (restore,) = running.console.events_of("restore", "gate-panic")
    assert restore["seq"] > alarm["seq"]


def test_sim_on_a_tamper_contact(running: Running) -> None:
    ok(running.config, "sim", "press", "box-tamper")
    assert running.console.wait_for(lambda c: bool(c.events_of("tamper", "box-tamper")), WAIT)


@pytest.mark.parametrize("args", [("test-alarm", "no-such-point"),
                                  ("test-alarm", "no-such-point", "--drill"),
                                  ("sim", "press", "no-such-point"),
                                  ("sim", "release", "no-such-point")])
def test_unknown_point_is_a_clear_error(running: Running, args: tuple[str, ...]) -> None:
    """An input the config does not have is bad usage (2), known before the service is
    asked."""
    before = running.gw.service.outbox.stats().next_seq
    res = alarmgw(running.config, *args)
    assert res.returncode == 2, res
    assert res.stdout == ""
    assert "'no-such-point'" in res.stderr
    assert "gate-panic" in res.stderr  # the message lists the inputs that do exist
    assert "Traceback" not in res.stderr
    assert running.gw.service.outbox.stats().next_seq == before, "an event was committed"


def test_unknown_sim_action_is_a_usage_error(running: Running) -> None:
    res = alarmgw(running.config, "sim", "smash", "gate-panic")
    assert res.returncode == 2
    assert "invalid choice: 'smash'" in res.stderr


# -- without a running service ----------------------------------------------------------

@pytest.fixture
def stopped_config(tmp_path: Path) -> Path:
    """A config whose service is not running (and never ran)."""
    return write_config(tmp_path / "gw", broker_port=1)


@pytest.mark.parametrize("command", ["inputs"])  # status: see test_diagnostics.py
def test_not_running(stopped_config: Path, command: str) -> None:
    res = alarmgw(stopped_config, command)
    assert res.returncode == 3
    assert "not running" in res.stderr
    assert str(socket_path_of(stopped_config)) in res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize("command", ["status", "inputs"])
def test_not_running_json(stopped_config: Path, command: str) -> None:
    res = alarmgw(stopped_config, command, "--json")
    assert res.returncode == 3
    doc = json.loads(res.stdout)
    assert doc["running"] is False
    assert "not running" in doc["error"]


@pytest.mark.parametrize("args", [("test-alarm", "gate-panic"), ("sim", "press", "gate-panic")])
def test_commands_that_need_the_service_exit_3(stopped_config: Path,
                                               args: tuple[str, ...]) -> None:
    res = alarmgw(stopped_config, *args)
    assert res.returncode == 3
    assert "not running" in res.stderr


def test_queue_without_a_store_says_so(stopped_config: Path) -> None:
    res = alarmgw(stopped_config, "queue")
    assert res.returncode == 3
    assert "no store at" in res.stderr
    assert "Traceback" not in res.stderr


def test_queue_reads_the_store_when_the_service_is_stopped(tmp_path: Path,
                                                           broker: Mosquitto) -> None:
    """Events that the broker never acknowledged are listed from disk after the service stops."""
    # debounce 0: a simulated press reaches the engine before press() returns, so stopping
    # the service (which drains the engine) commits it.
    config = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
    with PlatformConsole(broker.host, broker.port, persistent=False) as console:
        gw = InProcessGateway(config)
        try:
            gw.start()
            assert console.wait_for(
                lambda c: c.status.get(GATEWAY, {}).get("state") == "online", WAIT)
            broker.kill()  # an outage: nothing can be delivered from here on
            assert gw.panel is not None
            gw.panel.press("gate-panic")
            gw.panel.release("gate-panic")
        finally:
            gw.stop()
    assert not socket_path_of(config).exists()

    proc = alarmgw(config, "queue", "--json")
    assert proc.returncode == 3, proc.stderr  # what the store says, and: not running
    res = json.loads(proc.stdout)
    assert res["running"] is False
    lanes = res["stats"]["lanes"]
    assert set(lanes) == LANES
    assert lanes["alarm"]["ready"] == 1
    assert lanes["event"]["ready"] == 1
    assert lanes["alarm"]["in_flight"] == lanes["event"]["in_flight"] == 0
    assert res["stats"]["waiting"] == 2
    waiting = [(w["lane"], w["type"], w["state"]) for w in res["waiting"]]
    assert waiting == [("alarm", "alarm", "ready"), ("event", "restore", "ready")]
    alarm, restore = res["waiting"]
    assert alarm["seq"] < restore["seq"]
    assert alarm["topic"] == "event"

    human = alarmgw(config, "queue")
    assert human.returncode == 3, human.stderr
    assert "not running" in human.stderr
    assert "reading the store directly" in human.stderr
    assert human.stdout.startswith("2 waiting: ")
    assert re.search(rf"^\s+alarm\s+ready\s+seq {alarm['seq']}\s+alarm\b", human.stdout, re.M), \
        human.stdout
    assert re.search(rf"^\s+event\s+ready\s+seq {restore['seq']}\s+restore\b", human.stdout,
                     re.M), human.stdout

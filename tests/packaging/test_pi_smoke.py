"""scripts/pi-smoke on the simulator: the parts that are not Pi-only, for real.

The smoke test opens the hardware through the same backends as the service: here the
simulator's GPIO pins, a simulated camera (an HTTP camera with digest auth on loopback)
and a simulated RS-485 bus (a socat pty pair); on a Pi, lgpio, picamera2 and the USB
adapter. The broker is a real Mosquitto, the test event goes end to end to the reference
platform console, once with the service stopped (pi-smoke runs it in its own process for
that event) and once through a running service.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw import REPO, GatewayProcess, write_config
from modbus_cfg import device, modbus_input, rtu_bus, write_modbus_config

from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

SMOKE = REPO / "scripts" / "pi-smoke"
CAMERA = {"id": "gate-cam", "name": "Gate camera", "driver": "sim", "width": 320,
          "height": 240, "shots": 1, "timeout_s": 2.0}


def smoke(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SMOKE), "-c", str(config), "--timeout", "20",
                           *args], capture_output=True, text=True, timeout=120, check=False,
                          cwd=REPO)


def verdicts(out: str) -> dict[str, str]:
    """Check name -> PASS/FAIL/SKIP, from the lines the smoke test printed."""
    found = {}
    for line in out.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("PASS", "FAIL", "SKIP"):
            found[rest.strip().split(":")[0]] = verdict
    return found


@pytest.fixture
def platform(broker: Mosquitto) -> Iterator[PlatformConsole]:
    with PlatformConsole(broker.host, broker.port, persistent=False) as console:
        yield console


def test_every_part_passes_and_the_test_event_arrives(tmp_path: Path, broker: Mosquitto,
                                                      platform: PlatformConsole) -> None:
    config = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus(baud=19200, timeout_ms=60)],
        devices=[device("io1", 1)], inputs=[modbus_input("hall-panic", "io1", 0)],
        gpio_inputs=[{"id": "gate-panic", "name": "Gate", "location": "gate",
                      "kind": "panic", "gpio": 17, "contact": "NO", "pull": "up"},
                     {"id": "box-tamper", "name": "Lid", "location": "guard room",
                      "kind": "tamper", "gpio": 22, "contact": "NC", "pull": "up"}],
        cameras=[CAMERA])
    res = smoke(config)
    assert res.returncode == 0, res.stdout + res.stderr
    got = verdicts(res.stdout)
    pty = tmp_path / "gw/run/ttyRS485"
    assert got == {"config": "PASS", "gpio gate-panic (GPIO17)": "PASS",
                   "gpio box-tamper (GPIO22)": "PASS", "camera gate-cam (sim)": "PASS",
                   f"rs485 rs485 ({pty})": "PASS", "broker": "PASS",
                   "test event gate-panic": "PASS"}, res.stdout
    assert "level high (idle)" in res.stdout  # an NO button with a pull-up, not pressed
    assert "opened at 19200 baud" in res.stdout
    assert "one frame, 320x240" in res.stdout
    assert res.stdout.rstrip().endswith("7 of 7 checks passed")
    # The event it reported delivered is at the platform.
    assert platform.wait_for(lambda c: len(c.events_of("test", "gate-panic")) == 1, 10)


def test_an_unreachable_broker_fails_its_lines_and_the_exit_code(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker_port=1, broker={"connect_timeout_s": 1})
    res = smoke(config, "--timeout", "2")
    assert res.returncode == 1, res.stdout + res.stderr
    got = verdicts(res.stdout)
    assert got["broker"] == "FAIL" and got["test event gate-panic"] == "FAIL", res.stdout
    assert got["gpio gate-panic (GPIO17)"] == "PASS"
    assert got["camera"] == "SKIP" and got["rs485"] == "SKIP"
    assert "FAIL: broker, test event gate-panic" in res.stdout


def test_with_the_service_running_the_event_goes_through_it(
        tmp_path: Path, broker: Mosquitto, platform: PlatformConsole) -> None:
    config = write_config(tmp_path / "gw", broker_port=broker.port)
    gw = GatewayProcess(config).start()
    try:
        res = smoke(config, "--point", "office-panic")
    finally:
        gw.stop()
    assert res.returncode == 0, res.stdout + res.stderr
    got = verdicts(res.stdout)
    assert got["gpio"] == got["camera"] == got["rs485"] == "SKIP", res.stdout
    assert "the running service holds it" in res.stdout
    assert got["test event office-panic"] == "PASS"
    assert "through the running service" in res.stdout
    assert platform.wait_for(lambda c: len(c.events_of("test", "office-panic")) == 1, 10)


def test_a_bad_config_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[gateway]\nsite = 1\n")
    res = smoke(bad)
    assert res.returncode == 2
    assert res.stdout.startswith("FAIL config:"), res.stdout

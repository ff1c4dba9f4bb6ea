"""`alarmgw snapshot CAMERA`, `alarmgw sim camera` and the cameras in `alarmgw status`.

`snapshot` runs as a real `alarmgw` process. For an IP camera it takes the picture itself,
from the config, with no service running; for a simulated camera (which exists only inside the
service) it asks the running service.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gw import DEFAULT_INPUTS, REPO, InProcessGateway, write_config
from PIL import Image

from hw_sim.broker import Mosquitto
from hw_sim.camera import SimCamera
from hw_sim.platform import PlatformConsole

SECRET = "cam-Pa55-d41d"
CLI_TIMEOUT = 30.0
WAIT = 10.0


def alarmgw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=CLI_TIMEOUT,
                          check=False)


@pytest.fixture
def ipcam() -> Iterator[SimCamera]:
    with SimCamera("gate-cam", username="admin", password=SECRET) as cam:
        yield cam


def http_config(tmp_path: Path, url: str, **camera: Any) -> Path:
    (tmp_path / "cam.password").write_text(SECRET + "\n")
    cam = {"id": "gate-cam", "name": "南门摄像机", "driver": "http", "url": url,
           "username": "admin", "password_file": str(tmp_path / "cam.password"),
           "timeout_s": 1.0, **camera}
    return write_config(tmp_path / "gw", broker_port=1, cameras=[cam])


def test_snapshot_prints_size_resolution_and_time_and_saves_the_jpeg(
        tmp_path: Path, ipcam: SimCamera) -> None:
    config = http_config(tmp_path, ipcam.url)
    out = tmp_path / "gate.jpg"
    res = alarmgw(config, "snapshot", "gate-cam", "-o", str(out))
    assert res.returncode == 0, res.stderr
    m = re.fullmatch(rf"gate-cam \(南门摄像机\) {re.escape(ipcam.url)}: OK, (\d+) bytes,"
                     rf" 640x360 JPEG, in (\d+) ms; saved to {re.escape(str(out))}\n", res.stdout)
    assert m, res.stdout
    assert int(m.group(1)) == out.stat().st_size
    with Image.open(out) as img:
        img.load()
        assert img.size == (640, 360)
    assert SECRET not in res.stdout + res.stderr
    assert ipcam.pictures == 1


def test_snapshot_json(tmp_path: Path, ipcam: SimCamera) -> None:
    res = alarmgw(http_config(tmp_path, ipcam.url), "snapshot", "gate-cam", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] is True
    assert (doc["camera"], doc["width"], doc["height"]) == ("gate-cam", 640, 360)
    assert doc["bytes"] > 1000 and doc["duration_ms"] >= 0
    assert "jpeg_b64" not in doc


FAILURES = [
    # (camera mode, config changes, reason, words), as one tuple per case
    ("down", {}, "refused", "refused the connection"),
    ("401", {}, "unauthorized", "refused user 'admin' (HTTP 401)"),
    ("timeout", {}, "timeout", "did not answer within 1 s"),
    ("html", {}, "not_jpeg", "not a JPEG"),
    ("truncated", {}, "truncated", "truncated JPEG"),
    ("ok", {"max_bytes": 2048}, "too_large", "more than max_bytes (2048)"),
    ("endless", {"max_bytes": 65536}, "too_large", "sent more than max_bytes (65536)"),
]


@pytest.mark.parametrize("case", FAILURES, ids=[f[2] + "-" + f[0] for f in FAILURES])
def test_snapshot_says_exactly_why_it_failed(tmp_path: Path, ipcam: SimCamera,
                                             case: tuple[str, dict[str, Any], str, str]) -> None:
    mode, change, reason, words = case
    ipcam.set_mode(mode)
    config = http_config(tmp_path, ipcam.url, **change)
    res = alarmgw(config, "snapshot", "gate-cam", "-o", str(tmp_path / "x.jpg"))
    assert res.returncode == 1
    assert res.stdout == ""
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("gate-cam (南门摄像机) ")
    assert ": FAILED after " in line and f" ms: {reason}: " in line, line
    assert words in line
    assert "Traceback" not in res.stderr
    assert SECRET not in res.stderr
    assert not (tmp_path / "x.jpg").exists()
    res = alarmgw(config, "snapshot", "gate-cam", "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert (doc["ok"], doc["reason"]) == (False, reason)


def test_snapshot_of_an_unknown_camera_lists_the_cameras(tmp_path: Path,
                                                          ipcam: SimCamera) -> None:
    res = alarmgw(http_config(tmp_path, ipcam.url), "snapshot", "yard-cam")
    assert res.returncode == 2
    assert "no camera 'yard-cam'" in res.stderr and "cameras: gate-cam" in res.stderr


# -- simulated cameras live inside the service -------------------------------------------------

@pytest.fixture
def simulated(tmp_path: Path, broker: Mosquitto) -> Iterator[tuple[Path, InProcessGateway,
                                                                    PlatformConsole]]:
    inputs = [dict(i, cameras=["sim-cam"]) if i["id"] == "gate-panic" else i
              for i in DEFAULT_INPUTS]
    config = write_config(tmp_path / "gw", broker_port=broker.port, inputs=inputs,
                          cameras=[{"id": "sim-cam", "name": "Sim camera", "driver": "sim",
                                    "username": "admin", "password": SECRET, "width": 320,
                                    "height": 240, "shots": 1, "timeout_s": 1.0}])
    with PlatformConsole(broker.host, broker.port, persistent=False) as console, \
            InProcessGateway(config) as gw:
        yield config, gw, console


def test_snapshot_of_a_simulated_camera_goes_through_the_service(
        simulated: tuple[Path, InProcessGateway, PlatformConsole], tmp_path: Path) -> None:
    config, _, _ = simulated
    res = alarmgw(config, "snapshot", "sim-cam", "-o", str(tmp_path / "sim.jpg"))
    assert res.returncode == 0, res.stderr
    assert ": OK, " in res.stdout and " 320x240 JPEG" in res.stdout
    with Image.open(tmp_path / "sim.jpg") as img:
        assert img.size == (320, 240)


def camera_line(status: str, cam_id: str) -> str:
    """The camera's line in the `cameras:` section of `alarmgw status`."""
    lines = status.splitlines()
    start = lines.index("cameras:")
    return next(ln for ln in lines[start + 1:] if ln.strip().startswith(cam_id))


def test_sim_camera_breaks_a_camera_and_status_shows_it(
        simulated: tuple[Path, InProcessGateway, PlatformConsole]) -> None:
    config, _, console = simulated
    res = alarmgw(config, "sim", "camera", "sim-cam", "500")
    assert res.returncode == 0, res.stderr
    assert re.match(r"sim-cam: mode 500, latency 0 s \(http://127\.0\.0\.1:\d+/", res.stdout)
    res = alarmgw(config, "snapshot", "sim-cam")
    assert res.returncode == 1
    assert "http_error: " in res.stderr and "HTTP 500" in res.stderr
    # A picture that fails in the service counts for the camera's health.
    res = alarmgw(config, "snapshot", "sim-cam")
    assert res.returncode == 1
    assert console.wait_for(lambda c: bool(c.events_of("fault", "sim-cam")), WAIT)
    out = alarmgw(config, "status").stdout
    line = camera_line(out, "sim-cam")
    assert "FAULTY" in line and "HTTP 500" in line
    st = json.loads(alarmgw(config, "status", "--json").stdout)
    assert st["cameras"][0]["state"] == "faulty"
    assert [f["device"] for f in st["faults"]] == ["sim-cam"]
    res = alarmgw(config, "sim", "camera", "sim-cam", "ok", "--latency", "0.05")
    assert "mode ok, latency 0.05 s" in res.stdout
    assert alarmgw(config, "snapshot", "sim-cam").returncode == 0
    assert console.wait_for(lambda c: bool(c.events_of("fault_cleared", "sim-cam")), WAIT)
    out = alarmgw(config, "status").stdout
    line = camera_line(out, "sim-cam")
    assert re.search(r"sim-cam\s+ok\s+http://127\.0\.0\.1:\d+/\S+  last picture ", line), line


def test_sim_camera_refuses_an_unknown_mode_and_camera(
        simulated: tuple[Path, InProcessGateway, PlatformConsole]) -> None:
    config, _, _ = simulated
    res = alarmgw(config, "sim", "camera", "sim-cam", "melt")
    assert res.returncode == 2
    assert "unknown camera mode 'melt'" in res.stderr and "endless" in res.stderr
    res = alarmgw(config, "sim", "camera", "yard-cam", "500")
    assert res.returncode == 2
    assert "no simulated camera 'yard-cam'" in res.stderr and "sim-cam" in res.stderr
    res = alarmgw(config, "sim", "press", "gate-panic", "500")
    assert res.returncode == 2
    assert "only go with `sim camera" in res.stderr


def test_snapshot_of_a_simulated_camera_without_the_service_exits_3(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker_port=1,
                          cameras=[{"id": "sim-cam", "driver": "sim"}])
    res = alarmgw(config, "snapshot", "sim-cam")
    assert res.returncode == 3
    assert "simulated" in res.stderr and "not running" in res.stderr


def test_the_snapshot_jpeg_is_the_cameras_picture(tmp_path: Path, ipcam: SimCamera) -> None:
    """-o writes exactly the bytes the camera sent (not a re-encoding)."""
    res = alarmgw(http_config(tmp_path, ipcam.url), "snapshot", "gate-cam", "--json",
                  "-o", str(tmp_path / "a.jpg"))
    doc = json.loads(res.stdout)
    data = (tmp_path / "a.jpg").read_bytes()
    assert doc["bytes"] == len(data) and doc["file"] == str(tmp_path / "a.jpg")
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_the_cli_knows_the_simulators_modes() -> None:
    """`sim camera` and `sim modbus-fault` check the mode from the config side (exit 2): the
    CLI may not import the simulator, so it keeps its own lists; they must be the same."""
    from gateway.cli.hardware_commands import SIM_CAMERA_MODES, SIM_FAULT_MODES
    from hw_sim.camera import MODES
    from hw_sim.modbus import FAULT_MODES

    assert SIM_CAMERA_MODES == MODES
    assert SIM_FAULT_MODES == FAULT_MODES

"""`[[cameras]]` and the inputs that name them: what loads, what is refused, and why.

Like the rest of the config, a refusal names the file and the dotted key; a camera's password
never shows in a repr, a URL never carries credentials.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gw import REPO

from gateway.config import Config, load_config, parse_config
from gateway.errors import ConfigError

SECRET = "cam-s3cr3t-77f1"

BASE: dict[str, Any] = {
    "gateway": {"site": "test-school", "id": "gw-1", "state_dir": "state", "runtime_dir": "run"},
    "broker": {"host": "127.0.0.1", "port": 1883, "plaintext": True},
    "gpio": {"backend": "mock"},
    "inputs": [
        {"id": "gate-panic", "name": "南门", "kind": "panic", "gpio": 17, "cameras": ["gate-cam"]},
        {"id": "box-tamper", "name": "报警箱防拆", "kind": "tamper", "gpio": 22, "contact": "NC"},
    ],
    "cameras": [
        {"id": "gate-cam", "name": "南门摄像机", "driver": "http",
         "url": "http://192.168.1.64/ISAPI/Streaming/channels/101/picture"},
    ],
}


def parse(tmp_path: Path, doc: dict[str, Any]) -> Config:
    return parse_config(tmp_path / "config.toml", doc)


def doc_with(**camera: Any) -> dict[str, Any]:
    """BASE whose camera gets these keys (None removes a key)."""
    doc = copy.deepcopy(BASE)
    cam = doc["cameras"][0]
    for k, v in camera.items():
        if v is None:
            cam.pop(k, None)
        else:
            cam[k] = v
    return doc


def refused(tmp_path: Path, doc: dict[str, Any], key: str, *words: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, doc)
    err = info.value
    assert err.key == key, str(err)
    assert str(err).startswith(f"{tmp_path / 'config.toml'}: {key}: ")
    for w in words:
        assert w in str(err), f"{w!r} not in {err}"
    return err


def test_defaults(tmp_path: Path) -> None:
    cfg = parse(tmp_path, copy.deepcopy(BASE))
    cam = cfg.camera("gate-cam")
    assert (cam.driver, cam.shots, cam.interval_s) == ("http", 3, 1.0)
    assert (cam.pre_frames, cam.pre_interval_s) == (0, 2.0)
    assert (cam.timeout_s, cam.max_bytes, cam.probe_interval_s, cam.fault_after) == (
        3.0, 2 * 1024 * 1024, 300.0, 2)
    assert cam.username is None and cam.password is None
    assert cam.source == cam.url == "http://192.168.1.64/ISAPI/Streaming/channels/101/picture"
    assert cfg.input("gate-panic").cameras == ("gate-cam",)
    assert cfg.input("box-tamper").cameras == ()


def test_no_cameras_is_fine(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE)
    del doc["cameras"]
    del doc["inputs"][0]["cameras"]
    assert parse(tmp_path, doc).cameras == ()


@pytest.mark.parametrize(("preset", "extra", "url"), [
    ("hikvision", {}, "http://10.0.0.5/ISAPI/Streaming/channels/101/picture"),
    ("hikvision", {"channel": 2, "port": 8080},
     "http://10.0.0.5:8080/ISAPI/Streaming/channels/201/picture"),
    ("dahua", {}, "http://10.0.0.5/cgi-bin/snapshot.cgi?channel=1"),
    ("onvif", {"path": "/onvif-http/snapshot?Profile_1"},
     "http://10.0.0.5/onvif-http/snapshot?Profile_1"),
])
def test_presets_build_the_snapshot_url(tmp_path: Path, preset: str, extra: dict[str, Any],
                                        url: str) -> None:
    cfg = parse(tmp_path, doc_with(url=None, preset=preset, host="10.0.0.5", **extra))
    assert cfg.camera("gate-cam").url == url


def test_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "cam.password").write_text(SECRET + "\n")
    cfg = parse(tmp_path, doc_with(username="alarmgw", password_file="cam.password"))
    cam = cfg.camera("gate-cam")
    assert (cam.username, cam.password) == ("alarmgw", SECRET)
    assert SECRET not in repr(cfg)


def test_every_driver_loads_with_its_own_keys(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE)
    doc["cameras"] += [
        {"id": "pi-cam", "driver": "picamera", "width": 1280, "height": 720},
        {"id": "rtsp-cam", "driver": "rtsp", "url": "rtsp://10.0.0.6:554/Streaming/101"},
        {"id": "sim-cam", "driver": "sim", "username": "admin", "password": "x",
         "pre_frames": 5, "pre_interval_s": 0.5},
    ]
    cfg = parse(tmp_path, doc)
    pi = cfg.camera("pi-cam")
    assert (pi.width, pi.height, pi.camera_num, pi.source) == (1280, 720, 0, "picamera:0")
    assert cfg.camera("rtsp-cam").source == "rtsp://10.0.0.6:554/Streaming/101"
    sim = cfg.camera("sim-cam")
    assert (sim.width, sim.height, sim.pre_frames, sim.source) == (640, 360, 5, "sim:sim-cam")


def test_unknown_camera_lookup_lists_the_cameras(tmp_path: Path) -> None:
    cfg = parse(tmp_path, copy.deepcopy(BASE))
    with pytest.raises(KeyError) as info:
        cfg.camera("nope")
    assert "cameras: gate-cam" in info.value.args[0]


def _input_cameras(value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["inputs"][0]["cameras"] = value
    return doc


def _second_camera(**camera: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["cameras"].append({"driver": "http", "url": "http://10.0.0.9/snap.jpg", **camera})
    return doc


REFUSALS = [
    (_input_cameras(["yard-cam"]), "inputs[0].cameras", ["'yard-cam' is not a configured camera",
                                                         "cameras: gate-cam"]),
    (_input_cameras("gate-cam"), "inputs[0].cameras", ["must be an array of camera ids"]),
    (_input_cameras(["gate-cam", "gate-cam"]), "inputs[0].cameras", ["listed twice"]),
    (_second_camera(id="gate-cam"), "cameras[1].id", ["already used by cameras[0]"]),
    (_second_camera(id="gate-panic"), "cameras[1].id", ["already used by inputs[0]"]),
    (_second_camera(id="Gate Cam"), "cameras[1].id", ["is not allowed"]),
    (doc_with(url=None), "cameras[0].url", ["give either url", "preset"]),
    (doc_with(preset="hikvision", host="10.0.0.5"), "cameras[0].url", ["not both"]),
    (doc_with(url="ftp://10.0.0.5/x.jpg"), "cameras[0].url", ["must start with http://"]),
    (doc_with(url="http://admin:pw@10.0.0.5/x.jpg"), "cameras[0].url",
     ["holds credentials", "password_file"]),
    (doc_with(url="http://10.0.0.5:99999/x.jpg"), "cameras[0].url", ["is not a URL"]),
    (doc_with(url=None, preset="axis", host="10.0.0.5"), "cameras[0].preset",
     ["'axis' is not one of"]),
    (doc_with(url=None, preset="hikvision"), "cameras[0].host", ["missing"]),
    (doc_with(url=None, preset="hikvision", host="http://10.0.0.5/"), "cameras[0].host",
     ["not a host name"]),
    (doc_with(url=None, preset="onvif", host="10.0.0.5"), "cameras[0].path", ["missing"]),
    (doc_with(url=None, preset="onvif", host="10.0.0.5", path="snap"), "cameras[0].path",
     ["must start with '/'"]),
    (doc_with(url=None, preset="dahua", host="10.0.0.5", path="/x"), "cameras[0].path",
     ["only goes with preset \"onvif\""]),
    (doc_with(host="10.0.0.5"), "cameras[0].host", ["only goes with preset"]),
    (doc_with(password="x"), "cameras[0].username", ["a password needs a username"]),
    (doc_with(username="admin"), "cameras[0].password_file", ["needs a password"]),
    (doc_with(username="管理员", password="x"), "cameras[0].username",
     ["cannot be sent to a camera", "Latin-1", "plain ASCII"]),
    (doc_with(username="ad:min", password="x"), "cameras[0].username", ["without ':'"]),
    (doc_with(username="admin", password="x", password_file="p"), "cameras[0].password_file",
     ["not both"]),
    (doc_with(username="admin", password_file="missing.password"), "cameras[0].password_file",
     ["cannot read"]),
    (doc_with(driver="webcam"), "cameras[0].driver", ["'webcam' is not one of"]),
    (doc_with(driver="picamera"), "cameras[0].url", ["not used by driver 'picamera'"]),
    (doc_with(width=640), "cameras[0].width", ["not used by driver 'http'",
                                              "'picamera' / 'sim'"]),
    (doc_with(colour="red"), "cameras[0].colour", ["unknown key"]),
    (doc_with(shots=21), "cameras[0].shots", ["out of range"]),
    (doc_with(timeout_s=0), "cameras[0].timeout_s", ["out of range"]),
    (doc_with(max_bytes=100), "cameras[0].max_bytes", ["out of range"]),
    (doc_with(pre_frames=-1), "cameras[0].pre_frames", ["out of range"]),
    (doc_with(interval_s="1s"), "cameras[0].interval_s", ["must be a number"]),
    (doc_with(driver="rtsp", url="http://10.0.0.5/x"), "cameras[0].url",
     ["must start with rtsp:// or rtsps://"]),
]


@pytest.mark.parametrize(("doc", "key", "words"), REFUSALS,
                         ids=[f"{r[1]}-{i}" for i, r in enumerate(REFUSALS)])
def test_bad_camera_config_is_refused_naming_the_key(tmp_path: Path, doc: dict[str, Any],
                                                     key: str, words: list[str]) -> None:
    refused(tmp_path, doc, key, *words)


def test_the_shipped_simulator_config_links_cameras_to_buttons() -> None:
    cfg = load_config(REPO / "examples" / "sim.toml")
    assert [c.id for c in cfg.cameras] == ["gate-cam", "yard-cam"]
    assert all(c.driver == "sim" for c in cfg.cameras)
    assert cfg.input("gate-panic").cameras == ("gate-cam", "yard-cam")
    assert cfg.camera("gate-cam").pre_frames > 0


def test_check_config_shows_cameras_and_their_links(tmp_path: Path) -> None:
    (tmp_path / "cam.password").write_text(SECRET)
    text = (REPO / "examples" / "sim.toml").read_text(encoding="utf-8")
    text = text.replace('password = "sim-password"   #', 'password_file = "cam.password"   #', 1)
    path = tmp_path / "sim.toml"
    path.write_text(text, encoding="utf-8")
    shutil.copy(REPO / "examples" / "sim-command.key", tmp_path)
    res = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(path)],
                         capture_output=True, text=True, cwd=REPO, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    gate = next(ln for ln in res.stdout.splitlines() if "input     gate-panic" in ln)
    assert gate.endswith("-> cameras gate-cam, yard-cam")
    cam = next(ln for ln in res.stdout.splitlines() if "camera    gate-cam" in ln)
    assert "3 after an alarm 1 s apart, 5 before it, 2 s apart" in cam
    assert "user admin" in cam
    res = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--json", str(path)],
                         capture_output=True, text=True, cwd=REPO, timeout=30, check=False)
    doc = json.loads(res.stdout)
    assert [c["id"] for c in doc["cameras"]] == ["gate-cam", "yard-cam"]
    assert doc["inputs"][0]["cameras"] == ["gate-cam", "yard-cam"]
    assert SECRET not in res.stdout

"""The Pi camera needs AF_NETLINK, which the unit does not allow: a documented drop-in.

libcamera finds the Pi camera through a udev monitor, a netlink socket. The unit's
RestrictAddressFamilies= leaves AF_NETLINK out, as most gateways have IP cameras or none,
and a unit file cannot look into the config. So docs/operations.md gives the drop-in
(`systemctl edit alarmgw`), and `alarmgw check-config` prints it when a camera has
`driver = "picamera"`. The drop-in is checked here with systemd's own tools: it lets
netlink through and the unit's exposure stays within bounds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gw import REPO, write_config

from gateway.cli.config_commands import NETLINK_DROP_IN

UNIT = REPO / "systemd" / "alarmgw.service"
DOC = REPO / "docs" / "operations.md"
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")


def check_config(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", *args, str(config)],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)


def pi_camera_config(tmp_path: Path, driver: str = "picamera") -> Path:
    cam = ({"id": "gate-cam", "name": "门口", "driver": "picamera"} if driver == "picamera"
           else {"id": "gate-cam", "name": "门口", "driver": "http",
                 "url": "http://10.0.0.5/snapshot.jpg"})
    return write_config(tmp_path / "gw", broker_port=1883, cameras=[cam])


def documented_drop_in() -> list[str]:
    """The [Service] lines of the drop-in docs/operations.md gives for the Pi camera."""
    blocks = re.findall(r"```ini\n(.*?)```", DOC.read_text(), re.S)
    found = [b for b in blocks if "AF_NETLINK" in b]
    assert len(found) == 1, f"docs/operations.md has {len(found)} netlink drop-ins"
    lines = [ln.strip() for ln in found[0].splitlines() if ln.strip()]
    assert lines[0] == "[Service]", lines
    return lines[1:]


def test_check_config_prints_the_drop_in_for_a_pi_camera(tmp_path: Path) -> None:
    res = check_config(pi_camera_config(tmp_path))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "systemctl edit alarmgw" in out, out
    assert NETLINK_DROP_IN in out
    assert "AF_NETLINK" in out and "gate-cam" in out
    doc = json.loads(check_config(pi_camera_config(tmp_path), "--json").stdout)
    [hint] = [h for h in doc["hints"] if "AF_NETLINK" in h]
    assert NETLINK_DROP_IN in hint


def test_check_config_says_nothing_of_netlink_without_a_pi_camera(tmp_path: Path) -> None:
    res = check_config(pi_camera_config(tmp_path, driver="http"))
    assert res.returncode == 0, res.stderr
    assert "AF_NETLINK" not in res.stdout
    assert json.loads(check_config(pi_camera_config(tmp_path, driver="http"),
                                   "--json").stdout)["hints"] == []


def test_the_unit_itself_still_leaves_netlink_out() -> None:
    text = UNIT.read_text()
    assert re.search(r"^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$", text, re.M)
    assert "AF_NETLINK" not in "".join(ln for ln in text.splitlines()
                                       if ln.startswith("RestrictAddressFamilies="))


def test_the_documented_drop_in_is_the_one_check_config_prints() -> None:
    assert documented_drop_in() == [NETLINK_DROP_IN]
    assert "systemctl edit alarmgw" in DOC.read_text()


def _security(unit_dir: Path) -> tuple[float, dict[str, dict[str, object]]]:
    assert ANALYZE is not None
    unit = unit_dir / "alarmgw.service"
    res = subprocess.run([ANALYZE, "security", "--offline=true", "--json=short", str(unit)],
                         capture_output=True, text=True, timeout=60, check=False)
    items = {i["name"]: i for i in json.loads(res.stdout)}
    human = subprocess.run([ANALYZE, "security", "--offline=true", str(unit)],
                           capture_output=True, text=True, timeout=60, check=False)
    m = re.search(r"Overall exposure level for alarmgw\.service: (\d+\.\d)", human.stdout)
    assert m, human.stdout + human.stderr
    return float(m.group(1)), items


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (Debian package"
                    " systemd)")
def test_the_drop_in_lets_netlink_through_and_keeps_the_exposure(tmp_path: Path) -> None:
    text = re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", UNIT.read_text(), flags=re.M)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "alarmgw.service").write_text(text)
    exposure, items = _security(plain)
    assert items["RestrictAddressFamilies=~AF_NETLINK"]["set"] is True
    assert exposure <= MAX_EXPOSURE

    with_camera = tmp_path / "picamera"
    (with_camera / "alarmgw.service.d").mkdir(parents=True)
    (with_camera / "alarmgw.service").write_text(text)
    (with_camera / "alarmgw.service.d" / "override.conf").write_text(
        "\n".join(["[Service]", *documented_drop_in()]) + "\n")
    exposure, items = _security(with_camera)
    assert items["RestrictAddressFamilies=~AF_NETLINK"]["set"] is False  # libcamera may
    for name in ("RestrictAddressFamilies=~AF_PACKET", "RestrictAddressFamilies=~…"):
        assert items[name]["set"] is True, name  # and nothing else came with it
    assert exposure <= MAX_EXPOSURE
    res = subprocess.run([ANALYZE, "verify", "--man=no", str(with_camera / "alarmgw.service")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "alarmgw.service" not in res.stderr, res.stderr

"""`alarmgw check-config` and the alarm transmission paths: the summary shows the DC-09 path
to the receiving centre (endpoint, account, prefixes, encryption, what it carries, its
intervals) and the EN 50136-1 category those intervals meet, never the key; a bad [paths]
key exits 2 naming it. Each command runs as a real `alarmgw` process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from gw import REPO, write_config

CLI_TIMEOUT = 30.0
KEY = "0123456789ABCDEF"


def alarmgw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=CLI_TIMEOUT,
                          check=False)


def config_with_dc09(tmp_path: Path, *lines: str, paths: tuple[str, ...] = ()) -> Path:
    """A simulator config (heartbeat every 30 s) with a DC-09 path: `lines` added to
    [paths.dc09], `paths` to [paths]; the key in a 0600 file."""
    config = write_config(tmp_path / "gw", broker_port=1)
    key = tmp_path / "dc09.key"
    key.write_text(KEY + "\n", encoding="ascii")
    key.chmod(0o600)
    text = "\n".join(["", "[paths]", *paths, "", "[paths.dc09]", 'host = "127.0.0.1"',
                      "port = 12128", 'account = "1234"', 'receiver = "1"', 'line = "2"',
                      f'key_file = "{key}"', *lines])
    with config.open("a", encoding="utf-8") as f:
        f.write(text + "\n")
    return config


def check(config: Path) -> str:
    res = alarmgw(config, "check-config")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{config}: OK" in res.stdout
    assert KEY not in res.stdout + res.stderr
    return res.stdout


def check_json(config: Path) -> Any:
    res = alarmgw(config, "check-config", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert KEY not in res.stdout + res.stderr
    return json.loads(res.stdout)


def test_check_config_shows_the_dc09_path_and_the_category_it_meets(tmp_path: Path) -> None:
    config = config_with_dc09(tmp_path, 'silent = ["office-panic"]',
                              paths=('ats = "DP3"', "path_fail_s = 60"))
    out = check(config)
    assert ("  paths     MQTT primary (heartbeat every 30 s); DC-09 secondary"
            " tcp://127.0.0.1:12128 account 1234 R1 L2 AES-128, carries alarms, faults,"
            " restores, tests\n") in out, out
    # DP3 sets the secondary's interval (25 h / 2) and, while MQTT is in fault, the
    # primary's (180 s / 2).
    assert ("            supervision (null) every 45000 s, 90 s while MQTT is in fault; ACK"
            " within 5 s; a path is a fault after 60 s\n") in out, out
    assert "            EN 50136-1 category these intervals meet: DP3 (asked for: DP3)\n" in out
    doc = check_json(config)
    assert doc["ok"] is True
    p = doc["paths"]
    assert (p["ats"], p["category_met"], p["path_fail_s"]) == ("DP3", "DP3", 60)
    assert p["mqtt"] == {"role": "primary", "supervision_s": 30}
    d = p["dc09"]
    assert (d["role"], d["endpoint"], d["account"], d["receiver"], d["line"]) == (
        "secondary", "tcp://127.0.0.1:12128", "1234", "1", "2")
    assert (d["encryption"], d["supervision_s"], d["supervision_failover_s"]) == (
        "AES-128", 45000, 90)
    assert d["zones"] == {"gate-panic": 1, "office-panic": 2, "box-tamper": 3}
    assert (d["silent"], d["duress"]) == (["office-panic"], [])


def test_the_category_met_counts_the_secondary_left_alone(tmp_path: Path) -> None:
    # Heartbeat 30 s and DC-09 every 45 s: DP4 (primary 90 s, secondary 180 s, and the
    # secondary alone within the primary's 90 s).
    out = check(config_with_dc09(tmp_path / "a", "supervision_s = 45"))
    assert "            EN 50136-1 category these intervals meet: DP4\n" in out, out
    # Every 90 s meets DP4's secondary time, but alone it is too slow for DP4's primary.
    out = check(config_with_dc09(tmp_path / "b", "supervision_s = 90"))
    assert "supervision (null) every 90 s, 90 s while MQTT is in fault" in out, out
    assert "            EN 50136-1 category these intervals meet: DP3\n" in out, out
    slow = config_with_dc09(tmp_path / "c", "supervision_s = 50000")
    assert check_json(slow)["paths"]["category_met"] is None
    out = check(slow)
    assert "category these intervals meet: none of SP1-SP6/DP1-DP4\n" in out, out


def test_check_config_without_dc09_says_mqtt_is_the_only_path(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker_port=1)
    res = alarmgw(config, "check-config")
    assert res.returncode == 0, res.stderr
    assert "  paths     MQTT only (no [paths.dc09]" in res.stdout
    assert "category these intervals meet" not in res.stdout
    assert check_json(config)["paths"] is None


def test_a_bad_paths_key_exits_2_naming_it_and_never_the_key(tmp_path: Path) -> None:
    config = config_with_dc09(tmp_path, f'key = "{KEY}"')
    res = alarmgw(config, "check-config")
    assert (res.returncode, res.stdout) == (2, "")
    assert f"config error: {config}: paths.dc09.key: " in res.stderr
    assert "key_file" in res.stderr and KEY not in res.stderr
    res = alarmgw(config, "check-config", "--json")
    assert res.returncode == 2
    doc = json.loads(res.stdout)
    assert (doc["ok"], doc["key"]) == (False, "paths.dc09.key")
    assert KEY not in res.stdout

    # A heartbeat too slow for the category asked for is a config error too.
    res = alarmgw(config_with_dc09(tmp_path / "b", paths=('ats = "SP6"',)), "check-config")
    assert res.returncode == 2, res.stdout
    assert "paths.ats: SP6 asks the MQTT path (primary) to be reported within 20 s" in res.stderr
    assert "set health.interval_s to at most 10" in res.stderr


def test_check_config_warns_of_a_dc09_path_without_encryption(tmp_path: Path) -> None:
    assert "unencrypted" not in check(config_with_dc09(tmp_path / "aes"))
    config = config_with_dc09(tmp_path / "plain")
    text = config.read_text(encoding="utf-8")
    config.write_text("\n".join(line for line in text.splitlines()
                                if not line.startswith("key_file")) + "\n", encoding="utf-8")
    out = check(config)  # still valid: some centres take plain messages on a private line
    assert "hint      paths.dc09 has no key_file" in out and "unencrypted" in out
    assert "account 1234's AES key" in out
    assert any("no key_file" in h for h in check_json(config)["hints"])

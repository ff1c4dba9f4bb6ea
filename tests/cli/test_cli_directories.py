"""A state or runtime directory the service cannot use is a config error: exit 2, caught first.

systemd restarts `alarmgw run` after every exit but 2 (RestartPreventExitStatus=2 in
systemd/alarmgw.service): a directory that cannot be created or written must exit 2
instead of failing again every 5 s forever, and `alarmgw check-config` must find it
before. Nobody, root included, may create a directory under /sys: that is the directory
no user can use, wherever the tests run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from gw import REPO, write_config

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.service import Service

CLI_TIMEOUT = 30.0
UNUSABLE = "/sys/alarmgw-test/state"
"""A directory nobody may create (sysfs refuses mkdir, even to root)."""


def alarmgw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=CLI_TIMEOUT,
                          check=False)


def config_with(tmp_path: Path, key: str, value: str) -> Path:
    config = write_config(tmp_path / "gw", broker_port=1)
    default = {"state_dir": 'state_dir = "state"', "runtime_dir": 'runtime_dir = "run"'}[key]
    config.write_text(config.read_text().replace(default, f'{key} = "{value}"'))
    return config


def test_the_unit_does_not_restart_on_exit_2() -> None:
    unit = (REPO / "systemd" / "alarmgw.service").read_text(encoding="utf-8")
    assert "RestartPreventExitStatus=2" in unit.split()


@pytest.mark.parametrize("key", ["state_dir", "runtime_dir"])
def test_run_with_an_unusable_directory_exits_2(tmp_path: Path, key: str) -> None:
    """It used to exit 1 (state_dir) or crash with a traceback (runtime_dir): restarted
    every 5 s, forever."""
    config = config_with(tmp_path, key, UNUSABLE)
    res = alarmgw(config, "run")
    assert res.returncode == 2, res
    assert "Traceback" not in res.stderr, res.stderr
    assert f"config error: {config}: gateway.{key}: {UNUSABLE} cannot be used by" \
        in res.stderr, res.stderr
    assert "Operation not permitted" in res.stderr or "Permission denied" in res.stderr


@pytest.mark.parametrize("key", ["state_dir", "runtime_dir"])
def test_check_config_finds_an_unusable_directory_first(tmp_path: Path, key: str) -> None:
    """check-config used to pass a config whose `run` then failed."""
    config = config_with(tmp_path, key, UNUSABLE)
    res = alarmgw(config, "check-config")
    assert res.returncode == 2, res
    assert f"gateway.{key}: {UNUSABLE} cannot be used by" in res.stderr, res.stderr
    res = alarmgw(config, "check-config", "--json")
    assert res.returncode == 2
    doc = json.loads(res.stdout)
    assert (doc["ok"], doc["key"]) == (False, f"gateway.{key}")


def test_check_config_tries_the_directories_and_leaves_nothing_behind(tmp_path: Path) -> None:
    config = config_with(tmp_path, "state_dir", "not/yet/there")
    res = alarmgw(config, "check-config", "--json")
    assert res.returncode == 0, res.stderr
    dirs = {d["key"]: d for d in json.loads(res.stdout)["directories"]}
    assert dirs["gateway.state_dir"]["verdict"] == "ok"
    assert dirs["gateway.state_dir"]["path"] == str(tmp_path / "gw" / "not" / "yet" / "there")
    assert dirs["gateway.runtime_dir"]["verdict"] == "ok"
    assert not (tmp_path / "gw" / "not").exists()
    assert not (tmp_path / "gw" / "run").exists()
    out = alarmgw(config, "check-config").stdout
    assert "  directory gateway.state_dir   can be created and written by " in out


def test_check_config_says_it_cannot_tell_for_another_user(tmp_path: Path) -> None:
    """Run as someone else than the service's user (the unit's User=), a write test says
    nothing about the service: it says so, and how to check as that user."""
    from gateway.cli.directories import check

    cfg = load_config(config_with(tmp_path, "state_dir", UNUSABLE))
    found = {r.key: r for r in check(cfg, "alarmgw-elsewhere")}
    assert {r.verdict for r in found.values()} == {"cannot_tell"}
    assert "sudo -u alarmgw-elsewhere alarmgw check-config" in found["gateway.state_dir"].detail
    assert "does not exist yet" in found["gateway.state_dir"].detail
    assert not (tmp_path / "gw" / "run").exists()
    same = {r.key: r.verdict for r in check(cfg, None)}
    assert same == {"gateway.state_dir": "problem", "gateway.runtime_dir": "ok"}


def test_the_service_names_gateway_state_dir_when_it_cannot_use_it(tmp_path: Path) -> None:
    """Service._take_lock: a ConfigError (exit 2 from `run`), no longer a StoreError."""
    cfg = load_config(config_with(tmp_path, "state_dir", UNUSABLE))
    service = Service(cfg)
    with pytest.raises(ConfigError) as err:
        service.start()
    assert err.value.key == "gateway.state_dir"
    assert UNUSABLE in err.value.problem

"""A downgrade past a store schema change: the program refuses the newer file clearly.

The package's preinst refuses such a downgrade before anything is replaced
(test_deb_package.py, in a Debian 12 root); when the file comes back anyway (restored by
hand, copied from another gateway), `alarmgw run` and `check-config` name it and exit 2,
which the unit does not restart on, and the offline readers say the same instead of
misreading it.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from gw import REPO, write_config

MESSAGE = "has schema version 7, written by a newer alarmgw"


def alarmgw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO)


def newer_store(tmp_path: Path) -> Path:
    config = write_config(tmp_path / "gw", broker_port=1)
    state = tmp_path / "gw" / "state"
    state.mkdir()
    db = sqlite3.connect(state / "outbox.sqlite3")
    db.execute("PRAGMA user_version=7")
    db.commit()
    db.close()
    return config


def test_run_and_check_config_refuse_a_newer_store_with_exit_2(tmp_path: Path) -> None:
    config = newer_store(tmp_path)
    for args in (("run",), ("check-config",)):
        res = alarmgw(config, *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert MESSAGE in res.stderr, res.stderr
        assert "gateway.state_dir" in res.stderr  # the key whose directory holds it
        assert "install the newer alarmgw again" in res.stderr


def test_offline_readers_refuse_it_too(tmp_path: Path) -> None:
    config = newer_store(tmp_path)
    res = alarmgw(config, "queue")
    assert res.returncode == 3, res.stdout + res.stderr  # the service is not running
    assert MESSAGE in res.stderr, res.stderr
    assert "no such table" not in res.stderr


def test_an_older_or_equal_schema_still_opens(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker_port=1)
    res = alarmgw(config, "check-config")
    assert res.returncode == 0, res.stderr

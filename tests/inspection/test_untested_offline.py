"""`alarmgw status` with the service down still names the buttons nobody has proven for
more than inspection.max_untested_days, from the store's maintenance record and the clocks,
as the running service would (exit 3: not running)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from gw import InProcessGateway, write_config

from gateway.cli.program import main
from gateway.clock import mono_ns, read_boot_id
from gateway.config import load_config
from gateway.service import store_path
from hw_sim.broker import Mosquitto

DAY_NS = 86400 * 10**9


def test_offline_status_lists_the_points_unproven_too_long(
        tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
    with InProcessGateway(cfg):
        pass  # the first start writes each point's "unproven since now" record
    db = sqlite3.connect(store_path(load_config(cfg)))
    try:
        record = json.loads(db.execute("SELECT record FROM proven WHERE point='gate-panic'"
                                       ).fetchone()[0])
        # Made 40 days ago in this boot, by the boot clock (which a test cannot wind back:
        # the record's stamp goes back instead).
        record.update(boot_id=read_boot_id(), mono_ns=mono_ns() - 40 * DAY_NS)
        with db:
            db.execute("UPDATE proven SET record=? WHERE point='gate-panic'",
                       (json.dumps(record),))
    finally:
        db.close()

    assert main(["-c", str(cfg), "status", "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    untested = doc["inspection"]["untested"]
    assert [u["point"] for u in untested] == ["gate-panic"]
    assert untested[0]["days"] >= 40 and untested[0]["proven_at"] is None
    assert doc["inspection"]["max_untested_days"] == 30

    assert main(["-c", str(cfg), "status"]) == 3
    text = capsys.readouterr().out
    assert "NOT RUNNING" in text
    assert "untested: 1 input(s) not proven for more than 30 days" in text
    assert "gate-panic" in text.split("untested:", 1)[1]

"""The [inspection] table: optional, with defaults; a bad value or key is named."""

from __future__ import annotations

from pathlib import Path

from test_config import base, refused, write

from gateway.config import load_config


def test_defaults_without_the_table(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, base()))
    assert cfg.inspection.sounder is False
    assert cfg.inspection.max_untested_days == 30.0


def test_the_table_is_read(tmp_path: Path) -> None:
    doc = base()
    doc["inspection"] = {"sounder": True, "max_untested_days": 7}
    cfg = load_config(write(tmp_path, doc))
    assert (cfg.inspection.sounder, cfg.inspection.max_untested_days) == (True, 7.0)


def test_bad_values_and_keys_are_named(tmp_path: Path) -> None:
    doc = base()
    doc["inspection"] = {"max_untested_days": 0}
    refused(write(tmp_path / "a", doc), "inspection.max_untested_days", "1")
    doc["inspection"] = {"sounder": "yes"}
    refused(write(tmp_path / "b", doc), "inspection.sounder")
    doc["inspection"] = {"max_untested_day": 30}
    refused(write(tmp_path / "c", doc), "inspection.max_untested_day",
            "did you mean max_untested_days")

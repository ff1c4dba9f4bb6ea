"""Config mistakes that used to load, or were reported as something else, and now are refused.

- a misspelt key is reported as itself with the key it was probably meant to be, in every
  table, before any key that is then missing ("broker.hots: unknown key; did you mean host?",
  not "broker.host: missing");
- a state or runtime directory that is a file, or lies under one;
- a name or location too long for an SMS or an officer's screen;
- a private key (broker TLS key, platform command key) that group or others may read, which
  is refused the way ssh refuses one ("UNPROTECTED PRIVATE KEY FILE", chmod 600).

As in tests/config/test_config.py, every refusal names the file and the dotted key.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from pki import Pki, write_key_file
from test_config import alarmgw, base, refused, tls_doc, write
from test_config_modbus import doc as modbus_doc
from test_config_modbus import write as write_modbus

from gateway.config import load_config

KEY_HEX = "ab" * 32


# -- a. a misspelt key is reported as itself, with the key it was meant to be ---------------

def _misspell(doc: dict[str, Any], table: str, right: str, wrong: str) -> None:
    """Rename key `right` of the (dotted, list-indexed) table to `wrong`, keeping its value."""
    node: Any = doc
    for part in table.split(".") if table else []:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[wrong] = node.pop(right)


@pytest.mark.parametrize(("table", "right", "wrong", "key"), [
    ("broker", "host", "hots", "broker.hots"),
    ("broker", "port", "prot", "broker.prot"),
    ("gateway", "site", "stie", "gateway.stie"),
    ("gateway", "id", "ids", "gateway.ids"),
    ("", "broker", "brokr", "brokr"),
    ("inputs.0", "gpio", "gpoi", "inputs[0].gpoi"),
    ("inputs.1", "kind", "knd", "inputs[1].knd"),
    ("gpio", "debounce_ms", "debounce", "gpio.debounce"),
    ("clock", "sync_source", "sync_sources", "clock.sync_sources"),
])
def test_a_misspelt_key_is_named_with_the_key_it_was_meant_to_be(
        tmp_path: Path, table: str, right: str, wrong: str, key: str) -> None:
    doc = base()
    _misspell(doc, table, right, wrong)
    refused(write(tmp_path, doc), key, "unknown key", f"did you mean {right}?")


def test_a_misspelt_broker_host_is_not_reported_as_a_missing_host(tmp_path: Path) -> None:
    doc = base()
    doc["broker"]["hots"] = doc["broker"].pop("host")
    err = refused(write(tmp_path, doc), "broker.hots")
    assert err.problem == "unknown key; did you mean host?"


def test_a_misspelt_tls_key_is_not_reported_as_a_missing_key(tmp_path: Path, pki: Pki) -> None:
    doc = tls_doc(pki)
    doc["broker"]["tls"]["kye"] = doc["broker"]["tls"].pop("key")
    refused(write(tmp_path, doc), "broker.tls.kye", "unknown key", "did you mean key?")


@pytest.mark.parametrize(("mutate", "key", "meant"), [
    (lambda d: d["modbus"]["buses"][0].update(baud_rate=d["modbus"]["buses"][0].pop("baud")),
     "modbus.buses[0].baud_rate", "baud"),
    (lambda d: d["modbus"]["devices"][0].update(units=d["modbus"]["devices"][0].pop("unit")),
     "modbus.devices[0].units", "unit"),
    (lambda d: d["inputs"][2].update(modbsu=d["inputs"][2].pop("modbus")),
     "inputs[2].modbsu", "modbus"),
    (lambda d: d["inputs"][2]["modbus"].update(adress=d["inputs"][2]["modbus"].pop("address")),
     "inputs[2].modbus.adress", "address"),
    (lambda d: d["outputs"][1].update(gpoi=d["outputs"][1].pop("gpio")),
     "outputs[1].gpoi", "gpio"),
    (lambda d: d["links"][0].update(output=d["links"][0].pop("outputs")),
     "links[0].output", "outputs"),
    (lambda d: d.update(cameras=[{"id": "cam", "driver": "sim", "widht": 320}]),
     "cameras[0].widht", "width"),
    (lambda d: d.update(commands={"key_fle": "x"}), "commands.key_fle", "key_file"),
    (lambda d: d.update(escalation={"modem": {"prot": "/dev/ttyUSB2"}}),
     "escalation.modem.prot", "port"),
    (lambda d: d.update(store={"max_byte": 1 << 20}), "store.max_byte", "max_bytes"),
    (lambda d: d.update(health={"interval": 5}), "health.interval", "interval_s"),
])
def test_every_table_suggests_the_key_a_typo_was_meant_to_be(
        tmp_path: Path, mutate: Any, key: str, meant: str) -> None:
    doc = modbus_doc()
    mutate(doc)
    refused(write_modbus(tmp_path, doc), key, "unknown key", f"did you mean {meant}?")


def test_an_unknown_key_like_no_known_one_keeps_the_spelling_hint(tmp_path: Path) -> None:
    doc = base()
    doc["broker"]["colour"] = "red"
    err = refused(write(tmp_path, doc), "broker.colour", "unknown key")
    assert "did you mean" not in err.problem
    assert "examples/config.toml" in err.problem


def test_an_ack_lamp_of_a_misspelt_input_suggests_the_input(tmp_path: Path) -> None:
    doc = modbus_doc()
    doc["commands"] = {"require_signature": False, "ack_lamps": {"hall-panik": "strobe"}}
    refused(write_modbus(tmp_path, doc), "commands.ack_lamps.hall-panik", "not an input id",
            "did you mean hall-panic?")


# -- b. state and runtime directories that can never be directories ------------------------

@pytest.mark.parametrize("name", ["state_dir", "runtime_dir"])
def test_a_directory_key_naming_a_file_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "oops").write_text("not a directory\n")
    doc = base()
    doc["gateway"][name] = "oops"
    refused(write(tmp_path, doc), f"gateway.{name}", str(tmp_path / "oops"),
            "is a file, not a directory")


@pytest.mark.parametrize("name", ["state_dir", "runtime_dir"])
def test_a_directory_key_under_a_file_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "oops").write_text("not a directory\n")
    doc = base()
    doc["gateway"][name] = "oops/alarmgw/state"
    refused(write(tmp_path, doc), f"gateway.{name}", str(tmp_path / "oops" / "alarmgw" / "state"),
            f"{tmp_path / 'oops'} is a file, not a directory")


def test_a_directory_key_naming_a_device_is_refused(tmp_path: Path) -> None:
    doc = base()
    doc["gateway"]["runtime_dir"] = os.devnull
    refused(write(tmp_path, doc), "gateway.runtime_dir", os.devnull, "not a directory")


def test_directories_that_exist_or_can_be_created_load(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    doc = base()
    doc["gateway"].update(state_dir="link", runtime_dir="real/not/yet/there")
    cfg = load_config(write(tmp_path, doc))
    assert cfg.gateway.state_dir == tmp_path / "link"
    assert not (tmp_path / "real" / "not").exists()  # loading creates nothing


# -- c. names and locations people read have a length limit --------------------------------

LONG = "报" * 10_000


@pytest.mark.parametrize(("where", "key"), [
    (lambda d: d["inputs"][0].update(name=LONG), "inputs[0].name"),
    (lambda d: d["inputs"][1].update(location=LONG), "inputs[1].location"),
    (lambda d: d["inputs"][2].update(name=LONG), "inputs[2].name"),  # a Modbus input
    (lambda d: d["inputs"][3].update(location=LONG), "inputs[3].location"),
    (lambda d: d["modbus"]["devices"][0].update(name=LONG), "modbus.devices[0].name"),
    (lambda d: d["modbus"]["devices"][1].update(location=LONG), "modbus.devices[1].location"),
    (lambda d: d["outputs"][0].update(name=LONG), "outputs[0].name"),
    (lambda d: d["outputs"][1].update(location=LONG), "outputs[1].location"),
    (lambda d: d.update(cameras=[{"id": "cam", "driver": "sim", "name": LONG}]),
     "cameras[0].name"),
    (lambda d: d.update(cameras=[{"id": "cam", "driver": "sim", "location": LONG}]),
     "cameras[0].location"),
])
def test_a_name_or_location_of_ten_thousand_characters_is_refused(
        tmp_path: Path, where: Any, key: str) -> None:
    doc = modbus_doc()
    where(doc)
    refused(write_modbus(tmp_path, doc), key, "10000 characters", "at most 100", "SMS")


def test_a_name_of_exactly_the_limit_loads(tmp_path: Path) -> None:
    doc = modbus_doc()
    doc["inputs"][0].update(name="南" * 100, location="x" * 100)
    doc["outputs"][0]["name"] = "s" * 100
    cfg = load_config(write_modbus(tmp_path, doc))
    assert len(cfg.inputs[0].name) == 100
    doc["inputs"][0]["name"] = "南" * 101
    refused(write_modbus(tmp_path, doc), "inputs[0].name", "101 characters")


# -- d. key files that others may read ------------------------------------------------------
# The session's PKI is shared by every test: these tests chmod copies of its files.

def _copy(src: Path, dst: Path, mode: int) -> Path:
    dst.write_bytes(src.read_bytes())
    os.chmod(dst, mode)
    return dst


def _tls_doc_with_key(tmp_path: Path, pki: Pki, mode: int) -> tuple[dict[str, Any], Path]:
    key = _copy(pki.client_key, tmp_path / "gw-01.key", mode)
    doc = tls_doc(pki)
    doc["broker"]["tls"]["key"] = str(key)
    return doc, key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660], ids=oct)
def test_a_tls_private_key_that_others_may_read_is_refused(tmp_path: Path, pki: Pki,
                                                           mode: int) -> None:
    doc, key = _tls_doc_with_key(tmp_path, pki, mode)
    refused(write(tmp_path, doc), "broker.tls.key", "UNPROTECTED PRIVATE KEY FILE", str(key),
            f"mode {mode:04o}", f"chmod 600 {key}", "owned by the service user")


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=oct)
def test_a_tls_private_key_for_its_owner_only_loads(tmp_path: Path, pki: Pki, mode: int) -> None:
    doc, key = _tls_doc_with_key(tmp_path, pki, mode)
    tls = load_config(write(tmp_path, doc)).broker.tls
    assert tls is not None and tls.key == key


def test_certificates_may_be_readable_by_all(tmp_path: Path, pki: Pki) -> None:
    doc = tls_doc(pki)
    doc["broker"]["tls"].update(
        ca=str(_copy(pki.ca_cert, tmp_path / "ca.pem", 0o644)),
        cert=str(_copy(pki.client_cert, tmp_path / "gw-01.crt", 0o644)))
    assert load_config(write(tmp_path, doc)).broker.tls is not None


def _commands_doc(pki: Pki, key_file: Path) -> dict[str, Any]:
    doc = tls_doc(pki)
    doc["commands"] = {"key_file": str(key_file)}
    return doc


@pytest.mark.parametrize("mode", [0o644, 0o640], ids=oct)
def test_a_command_key_file_that_others_may_read_is_refused(tmp_path: Path, pki: Pki,
                                                            mode: int) -> None:
    key = write_key_file(tmp_path / "command.key", KEY_HEX)
    os.chmod(key, mode)
    err = refused(write(tmp_path, _commands_doc(pki, key)), "commands.key_file",
                  "UNPROTECTED PRIVATE KEY FILE", str(key), f"{mode:04o}", f"chmod 600 {key}")
    assert KEY_HEX not in str(err)


def test_a_command_key_file_for_its_owner_only_loads(tmp_path: Path, pki: Pki) -> None:
    key = write_key_file(tmp_path / "command.key", KEY_HEX)
    cfg = load_config(write(tmp_path, _commands_doc(pki, key)))
    assert cfg.commands is not None and cfg.commands.key == bytes.fromhex(KEY_HEX)


def test_a_readable_command_key_with_a_loopback_test_broker_is_only_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The simulator config's key is public in the repository and checked out 0644; its
    broker is plaintext on loopback, which no production config can have."""
    key = tmp_path / "command.key"
    key.write_text(KEY_HEX)
    os.chmod(key, 0o644)
    doc = base()
    doc["commands"] = {"key_file": str(key)}
    with caplog.at_level(logging.WARNING, logger="gateway.config.police"):
        cfg = load_config(write(tmp_path, doc))
    assert cfg.commands is not None and cfg.commands.key == bytes.fromhex(KEY_HEX)
    assert "UNPROTECTED PRIVATE KEY FILE" in caplog.text
    assert "commands.key_file" in caplog.text


def test_check_config_refuses_a_readable_tls_key_with_exit_2(tmp_path: Path, pki: Pki) -> None:
    doc, key = _tls_doc_with_key(tmp_path, pki, 0o644)
    path = write(tmp_path, doc)
    res = alarmgw("check-config", str(path))
    assert res.returncode == 2, res.stdout
    assert f"{path}: broker.tls.key: UNPROTECTED PRIVATE KEY FILE" in res.stderr
    assert f"chmod 600 {key}" in res.stderr

"""The [paths] table (gateway/config/paths.py): the second alarm path, SIA DC-09 to an
alarm-receiving centre, and the EN 50136-1 category its intervals meet.

Each check refuses a bad value with a message that starts "{file}: paths.KEY: " and says
what to check, and lets the good value next to it through: an account or prefix that is
not hex or has the wrong length, a key file of the wrong length, not hex, readable by
others or missing, an inline key, two primary (or two secondary) paths, a dual-path
category without a second path, zones used twice, out of range or for no input, silent
and duress naming inputs that are no panic buttons, carries without the alarms, a port,
transport or category that does not exist, and intervals slower than the category asks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gw import REPO
from pki import Pki, write_key_file
from test_config import base, refused, to_toml

from gateway.config import load_config
from gateway.config.paths import DP_REPORTING_S, SP_REPORTING_S, category_met

KEY = "0123456789ABCDEF"

#: A DC-09 path that loads; each case below breaks one of its keys.
DC09: dict[str, Any] = {"host": "127.0.0.1", "port": 12128, "account": "1234",
                        "receiver": "1", "line": "2"}

#: The inputs of every config here, in config order: two panic buttons and a tamper.
INPUT_IDS = ["gate-panic", "office-panic", "box-tamper"]


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(v, ensure_ascii=False)


def _table(name: str, keys: dict[str, Any]) -> str:
    return f"\n[{name}]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in keys.items())


def write(tmp_path: Path, *, dc09: dict[str, Any] | None = None, paths: dict[str, Any] | None
          = None, mqtt: dict[str, Any] | None = None, health_s: float = 30.0,
          **dc09_keys: Any) -> Path:
    """A config with a [paths] table: `dc09` in place of DC09 (with `dc09_keys` over it;
    an empty dict: no [paths.dc09]), `paths` and `mqtt` as [paths] and [paths.mqtt]."""
    doc = base()
    doc["inputs"].insert(1, {"id": "office-panic", "name": "行政楼值班室", "kind": "panic",
                             "gpio": 27, "contact": "NC", "pull": "up"})
    doc["health"] = {"interval_s": health_s}
    text = to_toml(doc) + _table("paths", paths or {})
    if mqtt is not None:
        text += _table("paths.mqtt", mqtt)
    d = {**(DC09 if dc09 is None else dc09), **dc09_keys}
    if d:
        text += _table("paths.dc09", d)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def key_file(tmp_path: Path, text: str = KEY, mode: int = 0o600, name: str = "dc09.key") -> Path:
    path = tmp_path / name
    path.write_text(text + "\n", encoding="ascii")
    path.chmod(mode)
    return path


# -- the good config -------------------------------------------------------------------------

def test_a_good_dc09_path_loads_with_its_defaults(tmp_path: Path) -> None:
    d = load_config(write(tmp_path, account="12ab")).paths.dc09
    assert d is not None
    assert (d.account, d.receiver, d.line, d.endpoint) == ("12AB", "1", "2",
                                                           "tcp://127.0.0.1:12128")
    assert (d.role, d.key, d.supervision, d.partition) == ("secondary", None, "null", 1)
    assert d.carries == {"alarms", "faults", "restores", "tests"}
    # Zones default to each input's place in the config, 1, 2, 3.
    assert d.zones == {pid: n for n, pid in enumerate(INPUT_IDS, start=1)}


def test_without_paths_mqtt_is_the_only_path(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, dc09={}))
    assert (cfg.paths.dual, cfg.paths.dc09, cfg.paths.ats) == (False, None, None)


# -- account, receiver and line --------------------------------------------------------------

@pytest.mark.parametrize("account", ["12", "1" * 17, "12G4", "12-4", " 1234", ""])
def test_an_account_that_is_not_3_to_16_hex_digits_is_refused(tmp_path: Path,
                                                               account: str) -> None:
    refused(write(tmp_path, account=account), "paths.dc09.account", repr(account),
            "3-16 hex digits", "account number the receiving centre gave")


@pytest.mark.parametrize(("account", "stored"), [
    ("123", "123"), ("0123456789abcdef", "0123456789ABCDEF"), (1234, "1234")])
def test_an_account_of_3_to_16_hex_digits_is_accepted_in_upper_case(
        tmp_path: Path, account: str | int, stored: str) -> None:
    d = load_config(write(tmp_path, account=account)).paths.dc09
    assert d is not None and d.account == stored


def test_an_account_is_required_and_a_string(tmp_path: Path) -> None:
    refused(write(tmp_path, dc09={k: v for k, v in DC09.items() if k != "account"}),
            "paths.dc09.account", "missing")
    refused(write(tmp_path, account=["1234"]), "paths.dc09.account", "string of hex digits",
            "not an array")


@pytest.mark.parametrize(("key", "value", "what"), [
    ("receiver", "G", "receiver number, R"), ("receiver", "1234567", "receiver number, R"),
    ("receiver", "", "receiver number, R"), ("line", "L2", "line number, L"),
    ("line", "1234567", "line number, L"), ("line", "", "line number, L")])
def test_a_receiver_or_line_that_is_not_1_to_6_hex_digits_is_refused(
        tmp_path: Path, key: str, value: str, what: str) -> None:
    refused(write(tmp_path, **{key: value}), f"paths.dc09.{key}", repr(value), "1-6 hex digits",
            what)


def test_receiver_and_line_of_1_to_6_hex_digits_pass_and_have_defaults(tmp_path: Path) -> None:
    d = load_config(write(tmp_path, receiver="abcdef", line="F")).paths.dc09
    assert d is not None and (d.receiver, d.line) == ("ABCDEF", "F")
    d = load_config(write(tmp_path, dc09={k: v for k, v in DC09.items()
                                    if k not in ("receiver", "line")})).paths.dc09
    assert d is not None and (d.receiver, d.line) == (None, "0")


# -- the key ---------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [15, 17, 31, 33, 0])
def test_a_key_file_of_the_wrong_length_is_refused_without_showing_the_key(
        tmp_path: Path, length: int) -> None:
    text = ("0123456789ABCDEF" * 3)[:length]
    path = key_file(tmp_path, text)
    err = refused(write(tmp_path, key_file=str(path)), "paths.dc09.key_file", str(path),
                  "16, 24 or 32 hex characters", f"found {length} characters")
    assert "not all hex" not in str(err)
    if text:
        assert text not in str(err)


def test_a_key_file_that_is_not_hex_is_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path, "0123456789ABCDEG")
    err = refused(write(tmp_path, key_file=str(path)), "paths.dc09.key_file",
                  "16, 24 or 32 hex characters", "not all hex digits")
    assert "0123456789ABCDEG" not in str(err)


@pytest.mark.parametrize(("text", "bits"), [(KEY, 128), ("ab" * 12, 192), ("AB" * 16, 256)])
def test_a_key_file_of_16_24_or_32_hex_characters_is_the_key(tmp_path: Path, text: str,
                                                              bits: int) -> None:
    d = load_config(write(tmp_path, key_file=str(key_file(tmp_path, text)))).paths.dc09
    assert d is not None and d.key == text.encode("ascii") and len(d.key) * 8 == bits
    assert text not in repr(d)


def test_a_relative_key_file_is_found_beside_the_config(tmp_path: Path) -> None:
    key_file(tmp_path)
    d = load_config(write(tmp_path, key_file="dc09.key")).paths.dc09
    assert d is not None and d.key_file == tmp_path / "dc09.key" and d.key == KEY.encode()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, mode=mode)
    refused(write(tmp_path, key_file=str(path)), "paths.dc09.key_file",
            "UNPROTECTED PRIVATE KEY FILE", f"mode {mode:04o}", f"chmod 600 {path}")


def test_a_key_file_only_its_owner_may_read_passes(tmp_path: Path) -> None:
    d = load_config(write(tmp_path, key_file=str(key_file(tmp_path, mode=0o400)))).paths.dc09
    assert d is not None and d.key == KEY.encode()


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no.key"
    refused(write(tmp_path, key_file=str(path)), "paths.dc09.key_file", f"{path} does not exist",
            "16, 24 or 32 hex characters")


def test_an_inline_key_is_refused_with_where_keys_go(tmp_path: Path) -> None:
    err = refused(write(tmp_path, key=KEY), "paths.dc09.key", "key_file",
                  "readable by the service only")
    assert KEY not in str(err)
    # Also beside a key_file, and before any other key is looked at.
    refused(write(tmp_path, key=KEY, key_file=str(key_file(tmp_path)), port=0),
            "paths.dc09.key", "key_file")


def test_a_misspelt_dc09_key_is_named_with_the_key_it_was_meant_to_be(tmp_path: Path) -> None:
    refused(write(tmp_path, acount="1234"), "paths.dc09.acount", "unknown key",
            "did you mean account?")


# -- roles and categories --------------------------------------------------------------------

@pytest.mark.parametrize("role", ["primary", "secondary"])
def test_two_paths_of_the_same_role_are_refused(tmp_path: Path, role: str) -> None:
    refused(write(tmp_path, mqtt={"role": role}, role=role), "paths.dc09.role", repr(role),
            "as is paths.mqtt.role", "one path is the primary, the other the secondary")


def test_mqtt_as_the_secondary_of_no_primary_is_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, dc09={}, mqtt={"role": "secondary"}), "paths.mqtt",
            "MQTT is the only path", "configure [paths.dc09] or leave the role out")


@pytest.mark.parametrize(("given", "meant"), [('"602"', "602"), ("602", "602"),
                                              ('"null"', "null")])
def test_supervision_602_may_be_written_with_or_without_quotes(
        tmp_path: Path, given: str, meant: str) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + f"supervision = {given}\n",
                    encoding="utf-8")
    d = load_config(path).paths.dc09
    assert d is not None and d.supervision == meant


def test_supervision_other_than_null_or_602_is_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, supervision="601"), "paths.dc09.supervision", "'601'")


def test_dc09_takes_the_role_mqtt_leaves(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, mqtt={"role": "secondary"}))
    assert cfg.paths.mqtt_role == "secondary"
    assert cfg.paths.dc09 is not None and cfg.paths.dc09.role == "primary"
    refused(write(tmp_path, mqtt={"role": "backup"}), "paths.mqtt.role", "'backup'",
            "'primary', 'secondary'")


@pytest.mark.parametrize("ats", ["DP1", "DP2", "DP3", "DP4"])
def test_a_dual_path_category_without_dc09_is_refused(tmp_path: Path, ats: str) -> None:
    refused(write(tmp_path, dc09={}, paths={"ats": ats}, health_s=10), "paths.ats",
            f"{ats} is a dual-path category", "[paths.dc09]", "SP1-SP6")


def test_a_single_path_category_without_dc09_passes(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, dc09={}, paths={"ats": "SP4"}))
    assert (cfg.paths.ats, cfg.paths.dc09) == ("SP4", None)


@pytest.mark.parametrize(("ats", "words"), [
    ("DP5", ["'DP5' is not one of", "'DP4'"]),
    ("dp3", ["'dp3' is not one of", "did you mean DP3?"]),
    ("EN50136", ["is not one of", "'SP1'"]),
])
def test_an_unknown_category_is_refused(tmp_path: Path, ats: str, words: list[str]) -> None:
    refused(write(tmp_path, paths={"ats": ats}), "paths.ats", *words)


def test_an_unknown_category_is_not_a_guess_at_another(tmp_path: Path) -> None:
    # DP5 is no typo of DP4 or DP1: guessing a weaker or stronger category would mislead.
    err = refused(write(tmp_path, paths={"ats": "DP5"}), "paths.ats")
    assert "did you mean" not in str(err)


@pytest.mark.parametrize(("ats", "role", "limit"), [
    ("DP3", "secondary", 45000), ("DP4", "secondary", 90), ("DP4", "primary", 45),
    ("SP5", "secondary", 45), ("DP2", "primary", 900)])
def test_supervision_slower_than_the_category_asks_is_refused(
        tmp_path: Path, ats: str, role: str, limit: int) -> None:
    mqtt = {"role": "secondary" if role == "primary" else "primary"}
    # The MQTT heartbeat meets every category here (10 s).
    refused(write(tmp_path, paths={"ats": ats}, mqtt=mqtt, health_s=10, role=role,
                  supervision_s=limit + 1), "paths.dc09.supervision_s",
            f"{limit + 1} s does not meet {ats}", f"a {role} path", f"at most every {limit} s")
    d = load_config(write(tmp_path, paths={"ats": ats}, mqtt=mqtt, health_s=10, role=role,
                    supervision_s=limit)).paths.dc09
    assert d is not None and d.supervision_s == limit


@pytest.mark.parametrize(("ats", "role", "interval", "failover"), [
    ("DP4", "secondary", 90, 45), ("DP3", "secondary", 45000, 90), ("DP4", "primary", 45, 45),
    ("SP4", "secondary", 90, 90)])
def test_the_category_sets_the_default_intervals(tmp_path: Path, ats: str, role: str,
                                                interval: float, failover: float) -> None:
    mqtt = {"role": "secondary" if role == "primary" else "primary"}
    d = load_config(write(tmp_path, paths={"ats": ats}, mqtt=mqtt, health_s=10,
                          role=role)).paths.dc09
    assert d is not None and (d.supervision_s, d.supervision_failover_s) == (interval, failover)


def test_without_a_category_supervision_is_as_configured(tmp_path: Path) -> None:
    d = load_config(write(tmp_path, supervision_s=7200)).paths.dc09
    assert d is not None and (d.supervision_s, d.supervision_failover_s) == (7200, 3600)
    refused(write(tmp_path, supervision_s=4), "paths.dc09.supervision_s", "out of range")


@pytest.mark.parametrize(("ats", "role", "dc09", "limit"), [
    ("DP4", "primary", True, 45), ("DP4", "secondary", True, 90), ("DP3", "primary", True, 90),
    ("SP6", "primary", False, 10), ("SP5", "primary", False, 45)])
def test_a_heartbeat_slower_than_the_category_asks_of_mqtt_is_refused(
        tmp_path: Path, ats: str, role: str, dc09: bool, limit: int) -> None:
    def config(health_s: float) -> Path:
        return write(tmp_path, paths={"ats": ats}, mqtt={"role": role}, health_s=health_s,
                     dc09=None if dc09 else {})

    refused(config(limit + 1), "paths.ats", f"{ats} asks the MQTT path ({role})",
            f"every {limit + 1} s", f"set health.interval_s to at most {limit}")
    assert load_config(config(limit)).paths.ats == ats


# -- zones, silent, duress and codes ---------------------------------------------------------

def test_zones_given_replace_the_defaults(tmp_path: Path) -> None:
    d = load_config(write(tmp_path, zones={"gate-panic": 7, "box-tamper": 999})).paths.dc09
    assert d is not None and d.zones == {"gate-panic": 7, "office-panic": 2, "box-tamper": 999}


@pytest.mark.parametrize(("zones", "key", "words"), [
    ({"gate-panic": 5, "office-panic": 5}, "office-panic", ["zone 5 is also gate-panic's"]),
    ({"box-tamper": 1}, "box-tamper", ["zone 1 is also gate-panic's"]),  # gate-panic's default
    ({"office-panic": 3}, "box-tamper", ["zone 3 is also office-panic's"]),
])
def test_a_zone_used_twice_is_refused(tmp_path: Path, zones: dict[str, int], key: str,
                                      words: list[str]) -> None:
    refused(write(tmp_path, zones=zones), f"paths.dc09.zones.{key}", *words,
            "could not tell them apart")


def test_a_zone_for_no_input_is_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, zones={"gym-panic": 4}), "paths.dc09.zones.gym-panic",
            "no input 'gym-panic' is configured", ", ".join(INPUT_IDS))


@pytest.mark.parametrize("zone", [0, 1000, -1, "7", True, 1.5])
def test_a_zone_out_of_range_is_refused(tmp_path: Path, zone: Any) -> None:
    refused(write(tmp_path, zones={"gate-panic": zone}), "paths.dc09.zones.gate-panic",
            "not a zone number from 1 to 999")


def test_zones_must_be_a_table(tmp_path: Path) -> None:
    refused(write(tmp_path, zones=[1, 2, 3]), "paths.dc09.zones", "must be a table",
            "zones = { gate-panic = 1 }")


@pytest.mark.parametrize("key", ["silent", "duress"])
@pytest.mark.parametrize(("value", "words"), [
    (["box-tamper"], ["'box-tamper' is not a panic input", "gate-panic, office-panic"]),
    (["gym-panic"], ["'gym-panic' is not a panic input"]),
    ("gate-panic", ["must be a list of panic input ids"]),
])
def test_silent_and_duress_name_panic_inputs_only(tmp_path: Path, key: str, value: Any,
                                                  words: list[str]) -> None:
    refused(write(tmp_path, **{key: value}), f"paths.dc09.{key}", *words)


def test_a_panic_input_is_silent_or_duress_not_both(tmp_path: Path) -> None:
    refused(write(tmp_path, silent=["office-panic"], duress=["office-panic", "gate-panic"]),
            "paths.dc09.duress", "['office-panic'] are named in silent too", "not both")
    d = load_config(write(tmp_path, silent=["office-panic"], duress=["gate-panic"])).paths.dc09
    assert d is not None and (d.silent, d.duress) == ({"office-panic"}, {"gate-panic"})


def test_codes_name_configured_inputs_and_contact_id_codes(tmp_path: Path) -> None:
    d = load_config(write(tmp_path, codes={"box-tamper": 137})).paths.dc09
    assert d is not None and d.codes == {"box-tamper": 137}
    refused(write(tmp_path, codes={"gym-panic": 120}), "paths.dc09.codes.gym-panic",
            "no input 'gym-panic'")
    refused(write(tmp_path, codes={"box-tamper": 99}), "paths.dc09.codes.box-tamper",
            "99 is not a Contact ID event code", "100-999")


# -- carries, port, transport ----------------------------------------------------------------

@pytest.mark.parametrize(("carries", "words"), [
    (["faults", "restores"], ['must include "alarms"', "every path carries the alarms"]),
    ([], ['must include "alarms"']),
    (["alarms", "pictures"], ["'pictures' is not one of alarms, faults, restores, tests"]),
    (["Alarms"], ["'Alarms' is not one of"]),
    ("alarms", ["must be a list of alarms, faults, restores, tests"]),
])
def test_carries_without_alarms_or_with_unknown_kinds_is_refused(tmp_path: Path, carries: Any,
                                                                 words: list[str]) -> None:
    refused(write(tmp_path, carries=carries), "paths.dc09.carries", *words)


def test_carries_with_alarms_passes(tmp_path: Path) -> None:
    d = load_config(write(tmp_path, carries=["faults", "alarms"])).paths.dc09
    assert d is not None and d.carries == {"alarms", "faults"}


@pytest.mark.parametrize(("port", "words"), [
    (0, ["0 is out of range (1 to 65535)"]), (65536, ["65536 is out of range"]),
    ("12128", ["must be an integer, not a string"])])
def test_a_port_out_of_range_is_refused(tmp_path: Path, port: Any, words: list[str]) -> None:
    refused(write(tmp_path, port=port), "paths.dc09.port", *words)


@pytest.mark.parametrize("port", [1, 65535])
def test_ports_1_to_65535_pass(tmp_path: Path, port: int) -> None:
    d = load_config(write(tmp_path, port=port)).paths.dc09
    assert d is not None and d.port == port


def test_a_port_is_required(tmp_path: Path) -> None:
    refused(write(tmp_path, dc09={k: v for k, v in DC09.items() if k != "port"}),
            "paths.dc09.port", "missing")


@pytest.mark.parametrize("transport", ["sctp", "TCP", "tls"])
def test_an_unknown_transport_is_refused(tmp_path: Path, transport: str) -> None:
    refused(write(tmp_path, transport=transport), "paths.dc09.transport", repr(transport),
            "is not one of 'tcp', 'udp'")


def test_udp_is_a_transport(tmp_path: Path) -> None:
    d = load_config(write(tmp_path, transport="udp")).paths.dc09
    assert d is not None and d.endpoint == "udp://127.0.0.1:12128"


# -- the category these intervals meet -------------------------------------------------------

@pytest.mark.parametrize(("intervals", "failover", "met"), [
    ({"primary": 45, "secondary": 90}, 45, "DP4"),
    # Alone (the primary in fault) the secondary must meet the primary's reporting time.
    ({"primary": 45, "secondary": 90}, None, "DP3"),
    ({"primary": 30, "secondary": 90}, 90, "DP3"),
    ({"primary": 45, "secondary": 91}, 45, "DP3"),
    ({"primary": 90, "secondary": 45000}, 90, "DP3"),
    ({"primary": 91, "secondary": 45000}, 90, "DP2"),
    ({"primary": 90, "secondary": 45000}, None, "DP1"),
    ({"primary": 900, "secondary": 3600}, 3600, "DP1"),
    ({"primary": 901, "secondary": 45000}, 900, "DP1"),
    ({"primary": 45000, "secondary": 45000}, None, "DP1"),
    ({"primary": 45001, "secondary": 60}, 60, None),
    ({"primary": 30, "secondary": 45001}, 30, None),
    ({"primary": 30, "secondary": 60}, 45001, None),
])
def test_the_dual_path_category_met(intervals: dict[Any, float], failover: float | None,
                                    met: str | None) -> None:
    assert category_met(intervals, dual=True, failover_s=failover) == met


@pytest.mark.parametrize(("interval", "met"), [
    (10, "SP6"), (10.5, "SP5"), (45, "SP5"), (90, "SP4"), (900, "SP3"), (901, "SP2"),
    (45000, "SP2"), (16 * 24 * 3600, "SP1"), (16 * 24 * 3600 + 1, None)])
def test_the_single_path_category_met(interval: float, met: str | None) -> None:
    assert category_met({"primary": interval}, dual=False) == met


def test_each_category_is_met_by_half_its_reporting_times() -> None:
    for name, (primary, secondary) in DP_REPORTING_S.items():
        assert category_met({"primary": primary / 2, "secondary": secondary / 2}, dual=True,
                            failover_s=primary / 2) == name
    for name, reporting in SP_REPORTING_S.items():
        assert category_met({"primary": reporting / 2}, dual=False) == name


# -- the example -----------------------------------------------------------------------------

def test_the_commented_example_in_examples_config_loads_when_uncommented(
        tmp_path: Path, pki: Pki) -> None:
    text = (REPO / "examples" / "config.toml").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("# [paths]")
    end = lines.index("", start)
    block = [line[2:] if line.startswith("# ") else "" for line in lines[start:end]]
    assert all(line == "" or lines[start + i].startswith("# ")
               for i, line in enumerate(block))
    config = tmp_path / "config.toml"
    config.write_text(text + "\n" + "\n".join(block) + "\n", encoding="utf-8")
    cfg = load_config(config, overrides={
        "broker.tls.ca": str(pki.ca_cert), "broker.tls.cert": str(pki.client_cert),
        "broker.tls.key": str(pki.client_key),
        "commands.key_file": str(write_key_file(tmp_path / "command.key", "ab" * 32)),
        "paths.dc09.key_file": str(key_file(tmp_path))})
    p = cfg.paths
    assert (p.ats, p.path_fail_s, p.mqtt_role) == ("DP3", 90, "primary")
    d = p.dc09
    assert d is not None
    assert (d.endpoint, d.account, d.receiver, d.line, d.role) == (
        "tcp://arc.example.cn:12128", "1234", "1", "1", "secondary")
    assert (d.key, d.supervision_s, d.supervision_failover_s) == (KEY.encode(), 45000, 90)
    assert (d.silent, d.duress, d.codes) == ({"gate-panic-2"}, set(), {"box-tamper": 137})
    assert d.zones["gate-panic-2"] == 2 and d.zones["gym-panic"] == 5
    # As shipped (commented out) the example has MQTT as its only path.
    assert "\n[paths" not in text

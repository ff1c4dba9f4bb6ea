"""The config loader and `alarmgw check-config`: a bad config names the file, the key and the fault.

Every refusal is checked the way a technician reads it: the message starts with
"{file}: {dotted.key}: " and says what is wrong. The shipped example configs load, the
password never leaks into a repr or the CLI, and `alarmgw run` with a bad config exits 2
before it creates anything on disk.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gw import REPO
from pki import Pki, write_key_file

from gateway.config import Config, load_config, parse_override
from gateway.errors import ConfigError

#: A complete, valid simulator config: every case below breaks one thing in a copy of it.
BASE: dict[str, Any] = {
    "gateway": {"site": "test-school", "id": "gw-1", "state_dir": "state",
                "runtime_dir": "run"},
    "broker": {"host": "127.0.0.1", "port": 1883, "plaintext": True},
    "clock": {"sync_source": "assume-synced"},
    "gpio": {"backend": "mock", "debounce_ms": 30},
    "inputs": [
        {"id": "gate-panic", "name": "南门门卫室一键报警", "location": "South gate",
         "kind": "panic", "gpio": 17, "contact": "NO", "pull": "up"},
        {"id": "box-tamper", "name": "报警箱防拆", "kind": "tamper", "gpio": 22,
         "contact": "NC", "pull": "up"},
    ],
}

#: The password used by the secrecy tests; it must never be printed.
SECRET = "s3cr3t-Pa55-9f1c"

#: Upper bound for one `alarmgw` command, in seconds (they take well under one).
CLI_TIMEOUT = 30.0


# -- helpers -------------------------------------------------------------------

def _toml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    raise TypeError(f"not a TOML scalar: {v!r}")


def to_toml(doc: dict[str, Any]) -> str:
    """Serialise `doc` (scalars, tables, arrays of tables) as TOML."""
    lines: list[str] = []

    def table(prefix: str, t: dict[str, Any]) -> None:
        for k, v in t.items():
            if not isinstance(v, dict | list):
                lines.append(f"{k} = {_toml_scalar(v)}")
        for k, v in t.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                lines.extend(["", f"[{name}]"])
                table(name, v)
            elif isinstance(v, list):
                for item in v:
                    lines.extend(["", f"[[{name}]]"])
                    table(name, item)

    table("", doc)
    return "\n".join(lines) + "\n"


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def write(directory: Path, doc: dict[str, Any] | str, name: str = "config.toml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(doc if isinstance(doc, str) else to_toml(doc), encoding="utf-8")
    return path


def refused(path: Path, key: str, *words: str) -> ConfigError:
    """Load `path`, expect a ConfigError about `key` whose message holds every word."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    msg = str(err)
    prefix = f"{path}: {key}: " if key else f"{path}: "
    assert msg.startswith(prefix), f"expected the message to start with {prefix!r}: {msg!r}"
    assert err.path == str(path)
    assert err.key == key
    for word in words:
        assert word.lower() in msg.lower(), f"{word!r} not in {msg!r}"
    return err


def alarmgw(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run `python -m gateway ARGS...` as a real process and capture its output."""
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=CLI_TIMEOUT, check=False)


def tls_files(pki: Pki) -> dict[str, str]:
    return {"ca": str(pki.ca_cert), "cert": str(pki.client_cert), "key": str(pki.client_key)}


def tls_doc(pki: Pki, **tls: Any) -> dict[str, Any]:
    """BASE with a TLS broker on a non-loopback host (plaintext removed)."""
    doc = base()
    doc["broker"] = {"host": "mqtt.platform.example.cn", "port": 8883,
                     "tls": {**tls_files(pki), **tls}}
    return doc


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """A mutation that sets the dotted key `path` ("inputs.0.gpio") to `value`."""

    def apply(doc: dict[str, Any]) -> None:
        node: Any = doc
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _del(path: str) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        node: Any = doc
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return apply


# -- the happy path ------------------------------------------------------------

def test_base_config_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, base()))
    assert cfg.gateway.site == "test-school"
    assert cfg.broker.tls is None
    assert cfg.broker.port == 1883
    assert [i.id for i in cfg.inputs] == ["gate-panic", "box-tamper"]
    assert cfg.input("gate-panic").source == "gpio:17"


# -- refusals: (mutation, dotted key, words the message must hold) -----------------

REFUSALS: list[Any] = [
    # unknown keys
    pytest.param(_set("colour", "red"), "colour", ["unknown key"], id="unknown-top-level"),
    pytest.param(_set("gpoi", {"backend": "mock"}), "gpoi", ["unknown key"],
                 id="unknown-top-level-table"),
    pytest.param(_set("broker.keepalive", 10), "broker.keepalive", ["unknown key"],
                 id="unknown-in-broker"),
    pytest.param(_set("inputs.0.debounce", 50), "inputs[0].debounce", ["unknown key"],
                 id="unknown-in-inputs"),
    pytest.param(_set("inputs.1.contacts", "NO"), "inputs[1].contacts", ["unknown key"],
                 id="unknown-in-second-input"),
    # wrong types
    pytest.param(_set("broker.port", "8883"), "broker.port",
                 ["must be an integer", "not a string"], id="string-for-int"),
    pytest.param(_set("broker.port", True), "broker.port",
                 ["must be an integer", "not a boolean"], id="bool-for-int"),
    pytest.param(_set("inputs.0.debounce_ms", False), "inputs[0].debounce_ms",
                 ["must be an integer", "not a boolean"], id="bool-for-int-in-input"),
    pytest.param(_set("gateway.site", 42), "gateway.site",
                 ["must be a string", "not an integer"], id="int-for-string"),
    pytest.param(_set("inputs.0.name", 7), "inputs[0].name",
                 ["must be a string", "not an integer"], id="int-for-string-in-input"),
    pytest.param(_set("broker.plaintext", "yes"), "broker.plaintext",
                 ["must be true or false", "not a string"], id="string-for-bool"),
    pytest.param(_set("broker.keepalive_s", 1), "broker.keepalive_s", ["out of range"],
                 id="int-out-of-range"),
    pytest.param(_set("broker", "mqtt.example.cn"), "broker", ["must be a table"],
                 id="string-for-table"),
    pytest.param(_set("inputs", {"id": "x", "gpio": 17}), "inputs",
                 ["must be an array of tables", "[[inputs]]"], id="table-for-array-of-tables"),
    # missing
    pytest.param(_del("broker"), "broker", ["missing"], id="missing-broker"),
    pytest.param(_del("broker.host"), "broker.host", ["missing"], id="missing-broker-host"),
    pytest.param(_del("inputs"), "inputs", ["missing", "[[inputs]]"], id="missing-inputs"),
    pytest.param(_set("inputs", []), "inputs", ["missing", "[[inputs]]"], id="empty-inputs"),
    pytest.param(_del("gateway.site"), "gateway.site", ["missing"], id="missing-site"),
    pytest.param(_del("inputs.0.gpio"), "inputs[0].gpio", ["missing"], id="missing-gpio"),
    pytest.param(_del("inputs.0.kind"), "inputs[0].kind", ["missing"], id="missing-kind"),
    # pins
    pytest.param(_set("inputs.0.gpio", 40), "inputs[0].gpio",
                 ["pin 40", "not a usable GPIO", "2 to 27"], id="pin-40"),
    pytest.param(_set("inputs.0.gpio", 28), "inputs[0].gpio", ["pin 28", "not a usable GPIO"],
                 id="pin-28"),
    pytest.param(_set("inputs.0.gpio", 0), "inputs[0].gpio", ["pin 0", "not a usable GPIO"],
                 id="pin-0"),
    pytest.param(_set("inputs.0.gpio", 1), "inputs[0].gpio", ["pin 1", "not a usable GPIO"],
                 id="pin-1"),
    pytest.param(_set("inputs.0.gpio", -3), "inputs[0].gpio", ["not a usable GPIO"],
                 id="pin-negative"),
    pytest.param(_set("inputs.0.gpio", "17"), "inputs[0].gpio",
                 ["must be an integer", "not a string"], id="pin-as-string"),
    pytest.param(_set("inputs.1.gpio", 17), "inputs[1].gpio",
                 ["GPIO17", "already used by inputs[0]"], id="duplicate-pin"),
    # ids and names that end up in topics
    pytest.param(_set("inputs.1.id", "gate-panic"), "inputs[1].id",
                 ["'gate-panic'", "already used by inputs[0]"], id="duplicate-id"),
    pytest.param(_set("inputs.0.id", "Gate Panic"), "inputs[0].id", ["not allowed"],
                 id="id-space-and-capitals"),
    pytest.param(_set("inputs.0.id", "gate/panic"), "inputs[0].id", ["not allowed"],
                 id="id-slash"),
    pytest.param(_set("inputs.0.id", "南门"), "inputs[0].id", ["not allowed"],
                 id="id-non-ascii"),
    pytest.param(_set("inputs.0.id", "-gate"), "inputs[0].id", ["not allowed"],
                 id="id-leading-dash"),
    pytest.param(_set("inputs.0.id", ""), "inputs[0].id", ["must not be empty"],
                 id="id-empty"),
    pytest.param(_set("inputs.0.id", "gate\n"), "inputs[0].id", ["not allowed"],
                 id="id-trailing-newline"),
    pytest.param(_set("gateway.site", "school/a"), "gateway.site", ["'school/a'", "not allowed"],
                 id="site-slash"),
    pytest.param(_set("gateway.site", "school+"), "gateway.site", ["not allowed"],
                 id="site-plus"),
    pytest.param(_set("gateway.site", "school#"), "gateway.site", ["not allowed"],
                 id="site-hash"),
    pytest.param(_set("gateway.site", "$SYS"), "gateway.site", ["not allowed"],
                 id="site-dollar"),
    pytest.param(_set("gateway.site", "school\n"), "gateway.site", ["not allowed"],
                 id="site-trailing-newline"),
    pytest.param(_set("gateway.id", "gw+1"), "gateway.id", ["not allowed"], id="gateway-id-plus"),
]


def _wiring(gpio: int | None = None, **fields: Any) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        inp = doc["inputs"][0]
        if gpio is not None:
            inp["gpio"] = gpio
        inp.update(fields)

    return apply


REFUSALS += [
    pytest.param(_wiring(2, pull="down"), "inputs[0].pull", ["GPIO2", "fixed pull-up"],
                 id="pull-down-on-gpio2"),
    pytest.param(_wiring(3, pull="down"), "inputs[0].pull", ["GPIO3", "fixed pull-up"],
                 id="pull-down-on-gpio3"),
    pytest.param(_wiring(3, pull="off", active_level="low"), "inputs[0].pull",
                 ["GPIO3", "fixed pull-up"], id="pull-off-on-gpio3"),
    pytest.param(_wiring(contact="NO", pull="up", active_level="high"), "inputs[0].active_level",
                 ["'high' contradicts", "active low"], id="active-level-contradicts-up-NO"),
    pytest.param(_wiring(contact="NC", pull="down", active_level="high"),
                 "inputs[0].active_level", ["contradicts", "active low"],
                 id="active-level-contradicts-down-NC"),
    pytest.param(_wiring(pull="off"), "inputs[0].active_level", ["missing"],
                 id="pull-off-without-active-level"),
    pytest.param(_wiring(pull="sideways"), "inputs[0].pull", ["'sideways' is not one of"],
                 id="pull-unknown"),
    pytest.param(_wiring(contact="NX"), "inputs[0].contact", ["'NX' is not one of"],
                 id="contact-unknown"),
    pytest.param(_wiring(kind="smoke"), "inputs[0].kind", ["'smoke' is not one of"],
                 id="kind-unknown"),
]


@pytest.mark.parametrize(("mutate", "key", "words"), REFUSALS)
def test_bad_config_is_refused_naming_file_and_key(tmp_path: Path, mutate: Mutation, key: str,
                                                   words: list[str]) -> None:
    doc = base()
    mutate(doc)
    refused(write(tmp_path, doc), key, *words)


def test_config_error_is_a_value_error(tmp_path: Path) -> None:
    doc = base()
    doc["inputs"][0]["gpio"] = 40
    err = refused(write(tmp_path, doc), "inputs[0].gpio")
    assert isinstance(err, ValueError)
    assert "40" in err.problem


# -- wiring that loads -----------------------------------------------------------

@pytest.mark.parametrize(("pull", "contact", "level"), [
    ("up", "NO", "low"),
    ("up", "NC", "high"),
    ("down", "NO", "high"),
    ("down", "NC", "low"),
])
def test_contact_and_pull_derive_the_active_level(tmp_path: Path, pull: str, contact: str,
                                                  level: str) -> None:
    doc = base()
    doc["inputs"][0].update(pull=pull, contact=contact)
    assert load_config(write(tmp_path / "derived", doc)).inputs[0].active_level == level
    # Saying the same thing explicitly is allowed.
    doc["inputs"][0]["active_level"] = level
    assert load_config(write(tmp_path / "explicit", doc)).inputs[0].active_level == level


@pytest.mark.parametrize("level", ["low", "high"])
def test_pull_off_takes_the_given_active_level(tmp_path: Path, level: str) -> None:
    doc = base()
    doc["inputs"][0].update(pull="off", active_level=level)
    inp = load_config(write(tmp_path, doc)).inputs[0]
    assert (inp.pull, inp.active_level) == ("off", level)


@pytest.mark.parametrize("pin", [2, 3, 27])
def test_edge_pins_are_usable(tmp_path: Path, pin: int) -> None:
    doc = base()
    doc["inputs"][0]["gpio"] = pin
    assert load_config(write(tmp_path, doc)).inputs[0].gpio == pin


def test_defaults_fill_in_wiring_and_debounce(tmp_path: Path) -> None:
    doc = base()
    doc["gpio"]["debounce_ms"] = 45
    doc["inputs"] = [{"id": "gate-panic", "kind": "panic", "gpio": 17},
                     {"id": "box-tamper", "kind": "tamper", "gpio": 22, "debounce_ms": 100}]
    cfg = load_config(write(tmp_path, doc))
    gate, box = cfg.inputs
    assert (gate.contact, gate.pull, gate.active_level) == ("NO", "up", "low")
    assert gate.name == "gate-panic"
    assert (gate.debounce_ms, box.debounce_ms) == (45, 100)


# -- TLS and plaintext -----------------------------------------------------------

def test_tls_table_missing_and_no_plaintext_is_refused(tmp_path: Path) -> None:
    doc = base()
    del doc["broker"]["plaintext"]
    refused(write(tmp_path, doc), "broker.tls", "missing", "TLS", "plaintext")


@pytest.mark.parametrize("host", ["mqtt.platform.example.cn", "10.0.0.5", "192.168.1.20",
                                  "0.0.0.0", "localhost.example.cn"])
def test_plaintext_to_a_non_loopback_host_is_refused(tmp_path: Path, host: str) -> None:
    doc = base()
    doc["broker"]["host"] = host
    refused(write(tmp_path, doc), "broker.plaintext", "loopback", repr(host))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_plaintext_to_loopback_is_allowed(tmp_path: Path, host: str) -> None:
    doc = base()
    doc["broker"]["host"] = host
    del doc["broker"]["port"]
    cfg = load_config(write(tmp_path, doc))
    assert cfg.broker.tls is None
    assert cfg.broker.port == 1883


def test_plaintext_with_a_tls_table_is_refused(tmp_path: Path, pki: Pki) -> None:
    doc = base()
    doc["broker"]["tls"] = {"ca": str(pki.ca_cert)}
    refused(write(tmp_path, doc), "broker.plaintext", "contradicts", "[broker.tls]")


def test_tls_config_loads_with_port_8883_by_default(tmp_path: Path, pki: Pki) -> None:
    doc = tls_doc(pki)
    del doc["broker"]["port"]
    cfg = load_config(write(tmp_path, doc))
    assert cfg.broker.port == 8883
    assert cfg.broker.tls is not None
    assert cfg.broker.tls.ca == pki.ca_cert
    assert cfg.broker.tls.cert == pki.client_cert
    assert cfg.broker.tls.key == pki.client_key


def test_tls_with_ca_only_uses_no_client_certificate(tmp_path: Path, pki: Pki) -> None:
    doc = tls_doc(pki)
    doc["broker"]["tls"] = {"ca": str(pki.ca_cert)}
    tls = load_config(write(tmp_path, doc)).broker.tls
    assert tls is not None
    assert (tls.cert, tls.key) == (None, None)


def test_empty_tls_table_means_the_system_ca_store(tmp_path: Path, pki: Pki) -> None:
    doc = tls_doc(pki)
    doc["broker"]["tls"] = {}
    tls = load_config(write(tmp_path, doc)).broker.tls
    assert tls is not None
    assert tls.ca is None


def test_tls_cert_without_key_is_refused(tmp_path: Path, pki: Pki) -> None:
    doc = tls_doc(pki)
    del doc["broker"]["tls"]["key"]
    refused(write(tmp_path, doc), "broker.tls.key", "missing", "cert and key go together")


def test_tls_key_without_cert_is_refused(tmp_path: Path, pki: Pki) -> None:
    doc = tls_doc(pki)
    del doc["broker"]["tls"]["cert"]
    refused(write(tmp_path, doc), "broker.tls.cert", "missing", "cert and key go together")


@pytest.mark.parametrize("name", ["ca", "cert", "key"])
def test_tls_file_that_does_not_exist_is_refused(tmp_path: Path, pki: Pki, name: str) -> None:
    doc = tls_doc(pki)
    missing = tmp_path / f"no-such-{name}.pem"
    doc["broker"]["tls"][name] = str(missing)
    refused(write(tmp_path, doc), f"broker.tls.{name}", str(missing), "does not exist")


def test_tls_path_that_is_a_directory_is_refused(tmp_path: Path, pki: Pki) -> None:
    doc = tls_doc(pki)
    doc["broker"]["tls"]["ca"] = str(tmp_path)
    refused(write(tmp_path, doc), "broker.tls.ca", "not a file")


def test_unknown_key_in_the_tls_table_is_refused(tmp_path: Path, pki: Pki) -> None:
    doc = tls_doc(pki)
    doc["broker"]["tls"]["cafile"] = str(pki.ca_cert)
    refused(write(tmp_path, doc), "broker.tls.cafile", "unknown key")


def test_relative_tls_paths_resolve_against_the_config_directory(tmp_path: Path,
                                                                 pki: Pki) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "platform-ca.pem").write_bytes(pki.ca_cert.read_bytes())
    doc = tls_doc(pki)
    doc["broker"]["tls"] = {"ca": "platform-ca.pem"}
    tls = load_config(write(conf_dir, doc)).broker.tls
    assert tls is not None
    assert tls.ca == conf_dir / "platform-ca.pem"


# -- credentials -----------------------------------------------------------------

def test_password_and_password_file_together_are_refused(tmp_path: Path) -> None:
    pw = tmp_path / "broker.password"
    pw.write_text(SECRET)
    doc = base()
    doc["broker"].update(username="gw-1", password=SECRET, password_file=str(pw))
    err = refused(write(tmp_path, doc), "broker.password_file", "not both")
    assert SECRET not in str(err)


def test_password_without_username_is_refused(tmp_path: Path) -> None:
    doc = base()
    doc["broker"]["password"] = SECRET
    err = refused(write(tmp_path, doc), "broker.username", "missing", "password")
    assert SECRET not in str(err)


def test_password_file_without_username_is_refused(tmp_path: Path) -> None:
    pw = tmp_path / "broker.password"
    pw.write_text(SECRET + "\n")
    doc = base()
    doc["broker"]["password_file"] = "broker.password"
    err = refused(write(tmp_path, doc), "broker.username", "missing")
    assert SECRET not in str(err)


def test_password_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    doc = base()
    doc["broker"].update(username="gw-1", password_file="no-such.password")
    refused(write(tmp_path, doc), "broker.password_file", "cannot read",
            str(tmp_path / "no-such.password"))


def _config_with_password_file(tmp_path: Path) -> Path:
    (tmp_path / "broker.password").write_text(SECRET + "\n", encoding="utf-8")
    doc = base()
    doc["broker"].update(username="test-school.gw-1", password_file="broker.password")
    return write(tmp_path, doc)


def test_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    cfg = load_config(_config_with_password_file(tmp_path))
    assert cfg.broker.username == "test-school.gw-1"
    assert cfg.broker.password == SECRET  # stripped of the trailing newline
    assert SECRET not in repr(cfg)
    assert SECRET not in repr(cfg.broker)
    assert SECRET not in str(cfg.broker)


def test_inline_password_is_never_shown(tmp_path: Path) -> None:
    doc = base()
    doc["broker"].update(username="gw-1", password=SECRET)
    cfg = load_config(write(tmp_path, doc))
    assert cfg.broker.password == SECRET
    assert SECRET not in repr(cfg)


def test_check_config_never_prints_the_password(tmp_path: Path) -> None:
    path = _config_with_password_file(tmp_path)
    res = alarmgw("check-config", str(path))
    assert res.returncode == 0, res.stderr
    assert "user test-school.gw-1" in res.stdout  # the username is fine to show
    assert SECRET not in res.stdout + res.stderr
    res = alarmgw("check-config", "--json", str(path))
    assert res.returncode == 0, res.stderr
    json.loads(res.stdout)
    assert SECRET not in res.stdout + res.stderr


# -- paths, files, syntax --------------------------------------------------------

def test_relative_state_dir_resolves_against_the_config_file(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    conf_dir = tmp_path / "site" / "etc"
    write(conf_dir, base())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "site" / "etc" / "config.toml")
    assert cfg.gateway.state_dir == conf_dir.resolve() / "state"
    assert cfg.gateway.runtime_dir == conf_dir.resolve() / "run"
    assert cfg.gateway.state_dir.is_absolute()
    assert not cfg.gateway.state_dir.exists()  # loading creates nothing


def test_absolute_state_dir_is_kept(tmp_path: Path) -> None:
    doc = base()
    doc["gateway"]["state_dir"] = str(tmp_path / "var" / "lib")
    cfg = load_config(write(tmp_path, doc))
    assert cfg.gateway.state_dir == tmp_path / "var" / "lib"


def test_state_dir_defaults_to_var_lib(tmp_path: Path) -> None:
    doc = base()
    del doc["gateway"]["state_dir"]
    del doc["gateway"]["runtime_dir"]
    cfg = load_config(write(tmp_path, doc))
    assert cfg.gateway.state_dir == Path("/var/lib/alarmgw")
    assert cfg.gateway.runtime_dir == Path("/run/alarmgw")


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\nsite = "test-school\nid = "gw-1"\n')
    refused(path, "", "not valid TOML", "line 2")


def test_a_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    refused(tmp_path / "nope.toml", "", "file not found")


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(to_toml(base()).encode() + b'\n# \xff\xfe\n')
    refused(path, "", "not UTF-8")


# -- overrides (--set) -------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("broker.port=8884", ("broker.port", 8884)),
    ("broker.host=mqtt.example.cn", ("broker.host", "mqtt.example.cn")),
    ("broker.host=localhost", ("broker.host", "localhost")),
    ("gateway.id=gw-02", ("gateway.id", "gw-02")),
    ('gateway.site="a b"', ("gateway.site", "a b")),
    ("broker.plaintext=true", ("broker.plaintext", True)),
    ("health.interval_s=2.5", ("health.interval_s", 2.5)),
    (" broker.port = 8884", ("broker.port", 8884)),
])
def test_parse_override(text: str, expected: tuple[str, object]) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["broker.port", "=8884", " =x", ""])
def test_malformed_override_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_override(text)
    assert str(info.value).startswith("--set: ")
    assert "expected KEY=VALUE" in str(info.value)


def test_overrides_apply_on_load_and_are_validated(tmp_path: Path) -> None:
    path = write(tmp_path, base())
    cfg = load_config(path, overrides=dict([parse_override("broker.port=8884"),
                                            parse_override("gateway.id=gw-02")]))
    assert (cfg.broker.port, cfg.gateway.id) == (8884, "gw-02")
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides=dict([parse_override("broker.port=eighty")]))
    assert str(info.value).startswith(f"{path}: broker.port: must be an integer, not a string")


def test_override_through_a_non_table_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, base())
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides={"broker.host.name": "x"})
    assert "broker.host.name" in str(info.value)
    assert "not a table" in str(info.value)


# -- the shipped examples ----------------------------------------------------------

def test_example_sim_config_loads() -> None:
    path = REPO / "examples" / "sim.toml"
    cfg = load_config(path)
    assert cfg.gpio.backend == "mock"
    assert cfg.broker.tls is None
    assert cfg.broker.host == "127.0.0.1"
    assert cfg.gateway.state_dir == (REPO / "examples" / "state")
    assert [i.id for i in cfg.inputs] == ["gate-panic", "office-panic", "box-tamper"]
    assert all(i.active_level in ("low", "high") for i in cfg.inputs)


def test_example_config_is_valid_when_its_files_exist(pki: Pki, tmp_path: Path) -> None:
    path = REPO / "examples" / "config.toml"
    key = write_key_file(tmp_path / "command.key", "ab" * 32)
    cfg: Config = load_config(path, overrides={
        "broker.tls.ca": str(pki.ca_cert),
        "broker.tls.cert": str(pki.client_cert),
        "broker.tls.key": str(pki.client_key),
        "commands.key_file": str(key),
    })
    assert cfg.commands is not None and cfg.commands.key == bytes.fromhex("ab" * 32)
    assert cfg.escalation is not None and cfg.escalation.modem_port == "/dev/ttyUSB2"
    assert cfg.broker.host == "mqtt.platform.example.cn"
    assert cfg.broker.port == 8883
    assert cfg.broker.tls is not None
    assert cfg.broker.tls.cert == pki.client_cert
    assert cfg.gpio.backend == "lgpio"
    assert cfg.gateway.state_dir == Path("/var/lib/alarmgw")
    gate = cfg.input("gate-panic")
    assert (gate.contact, gate.pull, gate.active_level) == ("NC", "up", "high")
    assert cfg.input("gate-panic-2").active_level == "low"
    assert cfg.input("box-tamper").debounce_ms == 100


# -- alarmgw check-config, as a real process ---------------------------------------

def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, base())
    res = alarmgw("check-config", str(path))
    assert res.returncode == 0, res.stderr
    assert f"{path}: OK" in res.stdout
    assert "test-school/gw-1" in res.stdout
    assert "PLAINTEXT" in res.stdout
    lines = res.stdout.splitlines()
    for inp_id, source, level in (("gate-panic", "gpio:17", "active-low"),
                                  ("box-tamper", "gpio:22", "active-high")):
        line = next((ln for ln in lines if inp_id in ln), None)
        assert line is not None, f"{inp_id} not listed:\n{res.stdout}"
        assert source in line
        assert level in line


def test_check_config_takes_the_file_from_dash_c(tmp_path: Path) -> None:
    path = write(tmp_path, base())
    res = alarmgw("-c", str(path), "check-config")
    assert res.returncode == 0, res.stderr
    assert f"{path}: OK" in res.stdout


def test_check_config_shows_tls(tmp_path: Path, pki: Pki) -> None:
    path = write(tmp_path, tls_doc(pki))
    res = alarmgw("check-config", str(path))
    assert res.returncode == 0, res.stderr
    assert "mqtt.platform.example.cn:8883" in res.stdout
    assert "TLS with client certificate" in res.stdout


def test_check_config_refuses_a_bad_file_with_exit_2(tmp_path: Path) -> None:
    doc = base()
    doc["inputs"][1]["gpio"] = 40
    path = write(tmp_path, doc)
    res = alarmgw("check-config", str(path))
    assert res.returncode == 2
    assert res.stdout == ""
    assert f"{path}: inputs[1].gpio: pin 40 is not a usable GPIO" in res.stderr
    assert "Traceback" not in res.stderr


def test_check_config_refuses_a_missing_file_with_exit_2(tmp_path: Path) -> None:
    res = alarmgw("check-config", str(tmp_path / "nope.toml"))
    assert res.returncode == 2
    assert str(tmp_path / "nope.toml") in res.stderr
    assert "not found" in res.stderr


def test_check_config_json(tmp_path: Path, pki: Pki) -> None:
    path = write(tmp_path, tls_doc(pki))
    res = alarmgw("check-config", "--json", str(path))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] is True
    assert doc["path"] == str(path)
    assert (doc["site"], doc["gateway"]) == ("test-school", "gw-1")
    assert doc["broker"] == "mqtt.platform.example.cn:8883"
    assert doc["tls"] is True
    assert doc["gpio_backend"] == "mock"
    assert doc["inputs"] == [
        {"id": "gate-panic", "kind": "panic", "source": "gpio:17", "active_level": "low",
         "cameras": []},
        {"id": "box-tamper", "kind": "tamper", "source": "gpio:22", "active_level": "high",
         "cameras": []},
    ]
    assert doc["cameras"] == []


@pytest.fixture
def bad_pem(tmp_path: Path, pki: Pki, request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    """A [broker.tls] table whose files exist but cannot be used."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a PEM certificate\n")
    if request.param == "ca":
        return "ca", {**tls_files(pki), "ca": str(garbage)}
    # A client certificate with somebody else's key.
    return "key", {**tls_files(pki), "key": str(pki.server_key)}


@pytest.mark.parametrize("bad_pem", ["ca", "key"], indirect=True)
def test_check_config_refuses_tls_files_that_cannot_be_used(
        tmp_path: Path, bad_pem: tuple[str, dict[str, str]]) -> None:
    """A CA that is not PEM, or a key that does not match the certificate, is a bad config:
    check-config must say so, not "OK" (the service would refuse to start with it)."""
    name, tls = bad_pem
    doc = base()
    doc["broker"] = {"host": "mqtt.platform.example.cn", "tls": tls}
    path = write(tmp_path / "conf", doc)
    res = alarmgw("check-config", str(path))
    assert res.returncode == 2, f"check-config accepted unusable TLS files:\n{res.stdout}"
    keys = ["broker.tls.ca"] if name == "ca" else ["broker.tls.cert", "broker.tls.key"]
    assert any(f"{path}: {k}: " in res.stderr for k in keys), res.stderr


# -- the service never starts half-configured --------------------------------------

def _run_refused(path: Path, key: str) -> subprocess.CompletedProcess[str]:
    res = alarmgw("-c", str(path), "run")
    problems = []
    if res.returncode != 2:
        problems.append(f"exit status {res.returncode}, not 2")
    if f"{path}: {key}" not in res.stderr:
        problems.append(f"stderr does not name {path}: {key}")
    problems += [f"{d} was created" for d in (path.parent / "state", path.parent / "run")
                 if d.exists()]
    assert not problems, "; ".join(problems) + f"\nstderr:\n{res.stderr}"
    return res


def test_run_with_a_bad_config_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    doc = base()
    doc["inputs"][0]["pull"] = "down"
    doc["inputs"][0]["gpio"] = 2
    _run_refused(write(tmp_path, doc), "inputs[0].pull")


def test_run_with_an_unknown_key_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    doc = base()
    doc["broker"]["pasword"] = SECRET
    res = _run_refused(write(tmp_path, doc), "broker.pasword")
    assert "unknown key" in res.stderr


@pytest.mark.parametrize("bad_pem", ["ca", "key"], indirect=True)
def test_run_with_unusable_tls_files_exits_2_and_creates_nothing(
        tmp_path: Path, bad_pem: tuple[str, dict[str, str]]) -> None:
    """Files that exist but are not a usable CA/key are a config error like any other: exit 2,
    before the state directory, the outbox or the control socket are created."""
    _, tls = bad_pem
    doc = base()
    doc["broker"] = {"host": "localhost", "port": 1, "tls": tls}
    _run_refused(write(tmp_path / "conf", doc), "broker.tls")


def test_relative_paths_keep_their_symlinks(tmp_path: Path) -> None:
    # A serial port is often a stable link (/dev/serial/by-id/...): the config must keep
    # the link, not whatever device it points to when the config is read.
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    doc = base()
    doc["gateway"]["state_dir"] = "link/./sub/../"
    cfg = load_config(write(tmp_path, doc))
    assert cfg.gateway.state_dir == tmp_path / "link"

"""Platform commands: every refusal, the fuzzed parser, and ack/drill/ping over a real broker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from gw import DEFAULT_INPUTS, InProcessGateway, write_config
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.store import Outbox
from gateway.uplink.commands import CommandChecker, Refusal, canonical, sign
from gateway.uplink.protocol import load_schema
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

KEY = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
NOW = 1_795_000_000.0
SITE, GWID = "test-school", "gw-test"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def cmd(op: str = "ping", args: dict[str, Any] | None = None, *, cid: str = "c-1",
        at: float = NOW, key: bytes | None = KEY, **extra: Any) -> bytes:
    doc: dict[str, Any] = {"v": 1, "id": cid, "op": op, "issued_at": iso(at), "args": args or {}}
    doc.update(extra)
    if key is not None:
        doc = sign(doc, key)
    return json.dumps(doc, ensure_ascii=False).encode()


def refusal(checker: CommandChecker, payload: bytes, **kw: Any) -> Refusal:
    with pytest.raises(Refusal) as exc:
        checker.check(payload, now=NOW, **kw)
    return exc.value


def test_a_signed_fresh_command_passes_and_is_described_by_the_schema() -> None:
    payload = cmd("ack", {"event_id": "e1", "operator": "张警官", "note": "出警"})
    c = CommandChecker(KEY).check(payload, now=NOW)
    assert (c.id, c.op, c.signed) == ("c-1", "ack", True)
    assert c.args["operator"] == "张警官"
    jsonschema.validate(json.loads(payload), load_schema("command"))


def test_canonical_form_is_sorted_compact_utf8_without_sig() -> None:
    doc = {"v": 1, "op": "ping", "id": "x", "args": {"b": 1, "a": "南门"}, "sig": "ff"}
    assert canonical(doc) == '{"args":{"a":"南门","b":1},"id":"x","op":"ping","v":1}'.encode()


@pytest.mark.parametrize(("payload", "code"), [
    (cmd(key=None), "unsigned"),
    (cmd(key=b"another gateway's key 32 bytes.."), "bad_signature"),
    (cmd(at=NOW - 41), "stale"),
    (cmd(at=NOW + 21), "stale"),
    (b"not json", "malformed"),
    (b"\xff\xfe", "malformed"),
    (b"[1, 2]", "malformed"),
    (b'{"v": 1, "id": "x", "op": "ping", "issued_at": NaN}', "malformed"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed"),
    (b'{"v": 1, "id": "x", "op": "ping", "issued_at": "' + b"x" * 20_000 + b'"}', "malformed"),
    (cmd(v=2), "malformed"),
    (cmd(v=True), "malformed"),  # a JSON boolean is not the integer 1
    (cmd(v=1.0), "malformed"),
    (cmd(cid="has space"), "malformed"),
    (cmd(issued_at="yesterday"), "malformed"),
    (cmd(args=["x"]), "malformed"),  # type: ignore[arg-type]
    (cmd(extra_field=1), "malformed"),
    (cmd(key=None, sig="ABC"), "malformed"),
    (cmd("reboot"), "unknown_op"),
    (cmd("ack", {"event_id": "e1"}), "bad_args"),
    (cmd("ack", {"event_id": "e1", "operator": 7}), "bad_args"),
    (cmd("ack", {"event_id": "e1", "operator": "x", "rm": "-rf"}), "bad_args"),
    (cmd("output", {"output": "siren", "on": 1}), "bad_args"),
    (cmd("output", {"output": "siren", "on": True, "duration_s": True}), "bad_args"),
    (cmd("output", {"output": "siren", "on": True, "duration_s": -5}), "bad_args"),
    (cmd("drill", {"point": ""}), "bad_args"),
])
def test_each_bad_command_is_refused_with_its_reason(payload: bytes, code: str) -> None:
    r = refusal(CommandChecker(KEY), payload)
    assert r.code == code, r
    assert r.reason


def test_a_replayed_id_is_refused_but_a_forged_one_does_not_burn_the_id() -> None:
    checker = CommandChecker(KEY)
    forged = cmd(cid="c-9", key=b"attacker key that is 32 bytes.!!")
    assert refusal(checker, forged).code == "bad_signature"
    checker.check(cmd(cid="c-9"), now=NOW)  # the real c-9 still goes through
    assert refusal(checker, cmd(cid="c-9")).code == "replayed"


def test_freshness_is_not_judged_by_an_unsynced_clock() -> None:
    checker = CommandChecker(KEY)
    checker.check(cmd(at=NOW - 3600), now=NOW, clock_synced=False)
    assert refusal(checker, cmd(cid="c-2", at=NOW - 3600), clock_synced=True).code == "stale"


def test_unsigned_commands_pass_only_when_signatures_are_explicitly_off() -> None:
    assert CommandChecker(None, require_signature=False).check(
        cmd(key=None), now=NOW).signed is False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        CommandChecker(KEY).check(data, now=NOW)
    except Refusal:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "id", "op", "issued_at", "args", "sig", "x"]),
                       json_values, max_size=7),
       st.booleans())
def test_fuzz_command_shaped_objects_are_refused_or_accepted_never_crash(
        obj: dict[str, Any], signed: bool) -> None:
    if signed:
        try:
            obj = sign(obj, KEY)
        except ValueError:
            return  # not representable as canonical JSON (e.g. inf); refused below anyway
    payload = json.dumps(obj).encode()
    try:
        c = CommandChecker(KEY).check(payload, now=NOW, clock_synced=False)
    except Refusal as r:
        assert r.code in {"malformed", "unsigned", "bad_signature", "stale", "replayed",
                          "unknown_op", "bad_args"}
    else:
        assert c.op in {"ping", "ack", "drill", "snapshot", "output"}


# -- over a real broker --------------------------------------------------------------


def result_schema_ok(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, load_schema("cmd_result"),
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture
def gw_with_commands(tmp_path: Path, broker: Mosquitto) -> Iterator[InProcessGateway]:
    key_file = tmp_path / "cmd.key"
    key_file.write_text(KEY.hex())
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
    with cfg.open("a") as f:
        f.write(f'\n[commands]\nkey_file = "{key_file}"\n')
    with InProcessGateway(cfg) as gw:
        yield gw


@pytest.fixture
def platform(broker: Mosquitto) -> Iterator[PlatformConsole]:
    with PlatformConsole(broker.host, broker.port, persistent=False, client_id="police",
                         command_key=KEY, operator="张警官") as c:
        yield c


def wait_result(c: PlatformConsole, cid: str) -> dict[str, Any]:
    assert c.wait_for(lambda p: cid in p.results, 10), f"no result for {cid}"
    result_schema_ok(c.results[cid])
    return c.results[cid]


def online(c: PlatformConsole) -> None:
    # Commands reach the gateway only once it has subscribed, after it is online.
    assert c.wait_for(lambda p: p.status.get(f"{SITE}/{GWID}", {}).get("state") == "online", 10)


def test_ack_is_recorded_and_answered(gw_with_commands: InProcessGateway,
                                      platform: PlatformConsole) -> None:
    gw = gw_with_commands
    online(platform)
    assert gw.panel is not None
    gw.panel.press("gate-panic")
    assert platform.wait_for(lambda p: len(p.events_of("alarm")) == 1, 10)
    alarm = platform.events_of("alarm")[0]
    cid = platform.ack(SITE, GWID, alarm["id"], note="出警中")
    res = wait_result(platform, cid)
    assert res["ok"] is True and res["code"] == "ok"
    assert res["result"]["point"] == "gate-panic" and res["result"]["seq"] == alarm["seq"]
    recorded = gw.service.outbox.acks_for(alarm["id"])
    assert [(a["operator"], a["note"], a["command_id"]) for a in recorded] == [
        ("张警官", "出警中", cid)]


def test_ack_of_an_unknown_event_is_refused_and_records_nothing(
        gw_with_commands: InProcessGateway, platform: PlatformConsole) -> None:
    online(platform)
    cid = platform.ack(SITE, GWID, "00000000-0000-4000-8000-000000000000")
    res = wait_result(platform, cid)
    assert (res["ok"], res["code"]) == (False, "unknown_event")
    assert gw_with_commands.service.outbox.acks_for(
        "00000000-0000-4000-8000-000000000000") == []


def test_unsigned_and_replayed_commands_over_mqtt_change_nothing(
        gw_with_commands: InProcessGateway, platform: PlatformConsole) -> None:
    online(platform)
    cid = platform.send_command(SITE, GWID, "drill", {"point": "gate-panic"}, sign_it=False)
    assert wait_result(platform, cid)["code"] == "unsigned"
    ok = platform.send_command(SITE, GWID, "ping", cmd_id="c-same")
    assert wait_result(platform, ok)["ok"] is True
    platform.results.clear()
    again = platform.send_command(SITE, GWID, "drill", {"point": "gate-panic"},
                                  cmd_id="c-same")
    assert wait_result(platform, again)["code"] == "replayed"
    assert platform.events_of("drill") == []
    assert gw_with_commands.service.commands is not None
    assert gw_with_commands.service.commands.counters["unsigned"] == 1


def test_a_command_id_stays_refused_after_a_restart_with_the_clock_unsynced(
        tmp_path: Path, broker: Mosquitto, platform: PlatformConsole) -> None:
    """After a power cut a Pi's clock is unsynced, so an old command cannot be told stale:
    its id, kept in the store, is what refuses it."""
    key_file = tmp_path / "cmd.key"
    key_file.write_text(KEY.hex())
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                       sync_source="assume-unsynced")
    with cfg.open("a") as f:
        f.write(f'\n[commands]\nkey_file = "{key_file}"\n')
    with InProcessGateway(cfg):
        online(platform)
        first = platform.send_command(SITE, GWID, "drill", {"point": "gate-panic"},
                                      cmd_id="c-before-power-cut")
        assert wait_result(platform, first)["ok"] is True
        assert platform.wait_for(lambda p: len(p.events_of("drill")) == 1, 10)
    platform.results.clear()
    platform.status.clear()
    with InProcessGateway(cfg) as gw:
        online(platform)
        again = platform.send_command(SITE, GWID, "drill", {"point": "gate-panic"},
                                      cmd_id="c-before-power-cut")
        assert wait_result(platform, again)["code"] == "replayed"
        fresh = platform.send_command(SITE, GWID, "ping", cmd_id="c-after")
        assert wait_result(platform, fresh)["ok"] is True
        assert gw.service.outbox.recent_commands(10) == ["c-before-power-cut", "c-after"]
    assert len(platform.events_of("drill")) == 1


def test_the_store_keeps_the_last_command_ids(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3") as box:
        for i in range(300):
            box.remember_command(f"c-{i}", keep=100)
        box.remember_command("c-250", keep=100)  # already known: no new row
        kept = box.recent_commands(1000)
        # Pruned in batches: at least the last 100, never more than 100 + one batch.
        assert kept[-100:] == [f"c-{i}" for i in range(200, 300)]
        assert 100 <= len(kept) <= 100 + 64


def test_drill_ping_and_unsupported_ops(gw_with_commands: InProcessGateway,
                                        platform: PlatformConsole) -> None:
    online(platform)
    drill = platform.send_command(SITE, GWID, "drill", {"point": "office-panic",
                                                         "operator": "李"})
    res = wait_result(platform, drill)
    assert res["ok"] and res["result"]["point"] == "office-panic"
    assert platform.wait_for(lambda p: len(p.events_of("drill")) == 1, 10)
    ev = platform.events_of("drill")[0]
    assert ev["id"] == res["result"]["event_id"]
    assert ev["detail"]["requested_by"] == "platform:李"
    ping = wait_result(platform, platform.send_command(SITE, GWID, "ping"))
    assert ping["ok"] and set(ping["result"]["queue"]) == {"alarm", "event", "bulk"}
    snap = wait_result(platform, platform.send_command(SITE, GWID, "snapshot",
                                                       {"camera": "gate"}))
    assert (snap["ok"], snap["code"]) == (False, "not_supported")
    bad = wait_result(platform, platform.send_command(SITE, GWID, "drill", {"point": "nope"}))
    assert (bad["ok"], bad["code"]) == (False, "bad_args") and "nope" in bad["reason"]


def test_commands_config_needs_a_key_unless_signatures_are_explicitly_off(
        tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=1883)
    with cfg.open("a") as f:
        f.write("\n[commands]\n")
    with pytest.raises(ConfigError, match=r"commands\.key_file: missing"):
        load_config(cfg)
    short = tmp_path / "short.key"
    short.write_text("abcd")
    with pytest.raises(ConfigError, match="at least 16"):
        load_config(cfg, {"commands.key_file": str(short)})
    loaded = load_config(cfg, {"commands.require_signature": False})
    assert loaded.commands is not None and loaded.commands.key is None


def test_a_drill_timeline_is_complete_and_its_durations_add_up(
        tmp_path: Path, gw_with_commands: InProcessGateway,
        platform: PlatformConsole) -> None:
    online(platform)
    platform.auto_ack_s = 0.0  # the police acknowledge at once
    gw = gw_with_commands
    res = gw.service.handle_control({"cmd": "test-alarm", "point": "gate-panic",
                                     "drill": True})
    assert platform.wait_for(lambda p: any(
        r.get("op") == "ack" and r.get("result", {}).get("event_id") == res["id"]
        for r in p.results.values()), 10)
    drills = gw.service.handle_control({"cmd": "drills"})
    assert len(drills) == 1
    d = drills[0]
    assert d["event_id"] == res["id"] and d["point"] == "gate-panic"
    assert d["requested_by"] == "alarmgw test-alarm"
    assert d["complete"] is True, d["timeline"]
    assert list(d["durations_ms"]) == ["pressed->committed", "committed->published",
                                       "published->puback", "puback->platform_ack"]
    assert all(ms >= 0 for ms in d["durations_ms"].values())
    assert sum(d["durations_ms"].values()) == pytest.approx(d["total_ms"], abs=0.01)
    # A real alarm leaves no drill record.
    assert gw.panel is not None
    gw.panel.press("gate-panic")
    assert platform.wait_for(lambda p: len(p.events_of("alarm")) == 1, 10)
    assert len(gw.service.handle_control({"cmd": "drills"})) == 1


def test_the_documented_signature_test_vector() -> None:
    doc = {"v": 1, "id": "c-1", "op": "ping", "issued_at": "2026-11-28T15:48:05.120Z",
           "args": {}}
    assert canonical(doc) == (b'{"args":{},"id":"c-1","issued_at":"2026-11-28T15:48:05.120Z",'
                              b'"op":"ping","v":1}')
    sig = "84d2701c321ce83778f257304add988ef9a9557576bcff85d5263c9971723889"
    assert sign(doc, bytes(range(32)))["sig"] == sig
    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol" / "README.md").read_text()
    assert sig in text


@pytest.fixture
def gw_with_lamp(tmp_path: Path, broker: Mosquitto) -> Iterator[InProcessGateway]:
    key_file = tmp_path / "cmd.key"
    key_file.write_text(KEY.hex())
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
    with cfg.open("a") as f:
        f.write('\n[[outputs]]\nid = "ack-lamp"\nname = "接警确认灯"\ngpio = 23\n'
                '\n[[outputs]]\nid = "siren"\nname = "警号"\ngpio = 24\n'
                f'\n[commands]\nkey_file = "{key_file}"\nack_lamp = "ack-lamp"\n'
                'ack_lamp_s = 0\n')
    with InProcessGateway(cfg) as gw:
        yield gw


def test_platform_ack_lights_the_lamp_and_output_command_switches(
        gw_with_lamp: InProcessGateway, platform: PlatformConsole) -> None:
    gw = gw_with_lamp
    outputs = gw.service.outputs
    assert outputs is not None and gw.panel is not None
    online(platform)
    assert outputs.status_of("ack-lamp")["on"] is False
    gw.panel.press("gate-panic")
    assert platform.wait_for(lambda p: len(p.events_of("alarm")) == 1, 10)
    res = wait_result(platform, platform.ack(SITE, GWID, platform.events_of("alarm")[0]["id"]))
    assert (res["result"]["lamp"], res["result"]["lamp_on"]) == ("ack-lamp", True)
    assert outputs.status_of("ack-lamp")["on"] is True
    # The lamp is a real pin on the (simulated) board.
    assert bool(gw.service.pin_factory.pin(23).state) is True
    on = wait_result(platform, platform.send_command(SITE, GWID, "output",
                                                     {"output": "siren", "on": True}))
    assert on["ok"] and on["result"]["on"] is True
    off = wait_result(platform, platform.send_command(SITE, GWID, "output",
                                                      {"output": "siren", "on": False}))
    assert off["ok"] and off["result"]["on"] is False
    bad = wait_result(platform, platform.send_command(SITE, GWID, "output",
                                                      {"output": "nope", "on": True}))
    assert (bad["ok"], bad["code"]) == (False, "bad_args") and "siren" in bad["reason"]


def test_platform_snapshot_command_uplinks_a_picture_or_says_why_not(
        tmp_path: Path, broker: Mosquitto, platform: PlatformConsole) -> None:
    key_file = tmp_path / "cmd.key"
    key_file.write_text(KEY.hex())
    cam = {"id": "gate-cam", "name": "南门摄像机", "driver": "sim", "username": "admin",
           "password": "sim-pass", "width": 320, "height": 180, "timeout_s": 1.0}
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, cameras=[cam])
    with cfg.open("a") as f:
        f.write(f'\n[commands]\nkey_file = "{key_file}"\n')
    with InProcessGateway(cfg) as gw:
        online(platform)
        cid = platform.send_command(SITE, GWID, "snapshot", {"camera": "gate-cam"})
        res = wait_result(platform, cid)
        assert res["ok"] and (res["result"]["width"], res["result"]["height"]) == (320, 180)
        assert platform.wait_for(lambda p: any(s.event_id == cid for s in p.snapshots), 10)
        snap = next(s for s in platform.snapshots if s.event_id == cid)
        assert snap.jpeg[:2] == b"\xff\xd8" and snap.phase == "request"
        assert gw.service.cameras is not None
        gw.service.cameras.sims["gate-cam"].set_mode("500")
        bad = wait_result(platform, platform.send_command(SITE, GWID, "snapshot",
                                                          {"camera": "gate-cam"}))
        assert (bad["ok"], bad["code"]) == (False, "failed") and "500" in bad["reason"]
        unknown = wait_result(platform, platform.send_command(SITE, GWID, "snapshot",
                                                              {"camera": "nope"}))
        assert (unknown["ok"], unknown["code"]) == (False, "bad_args")


def test_a_drill_timeline_counts_its_snapshots(tmp_path: Path, broker: Mosquitto,
                                               platform: PlatformConsole) -> None:
    cam = {"id": "gate-cam", "name": "南门摄像机", "driver": "sim", "username": "admin",
           "password": "sim-pass", "width": 160, "height": 90, "timeout_s": 1.0, "shots": 2,
           "interval_s": 0.1}
    inputs = [dict(i, cameras=["gate-cam"]) if i["id"] == "gate-panic" else i
              for i in DEFAULT_INPUTS]
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, cameras=[cam], inputs=inputs)
    with InProcessGateway(cfg) as gw:
        online(platform)
        res = gw.service.handle_control({"cmd": "test-alarm", "point": "gate-panic",
                                         "drill": True})
        assert platform.wait_for(lambda p: sum(s.event_id == res["id"]
                                               for s in p.snapshots) == 2, 10)
        assert gw.service.uplink is not None and gw.service.uplink.wait_for_drained(10)
        (drill,) = gw.service.handle_control({"cmd": "drills"})
    assert drill["snapshots"]["count"] == 2
    assert drill["snapshots"]["last_after_ms"] > 0


def test_check_config_shows_the_police_loop_without_its_secrets(tmp_path: Path) -> None:
    import subprocess
    import sys

    key_file = tmp_path / "cmd.key"
    key_file.write_text(KEY.hex())
    cfg = write_config(tmp_path / "gw", broker_port=1883)
    with cfg.open("a") as f:
        f.write(f'\n[commands]\nkey_file = "{key_file}"\n'
                '\n[escalation]\nsms_to = ["+8613912345678"]\n'
                '[escalation.modem]\nport = "/dev/ttyUSB2"\n')
    res = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(cfg)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "commands  signed (HMAC-SHA256), window 40 s behind / 20 s ahead" in res.stdout
    assert "SMS to 1 number(s) via /dev/ttyUSB2" in res.stdout
    js = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--json", str(cfg)],
                        capture_output=True, text=True, timeout=60, check=False).stdout
    assert "+8613912345678" not in js and "*********5678" in js
    assert KEY.hex() not in res.stdout + js


BAD_IDS_AND_VERSIONS: list[tuple[dict[str, Any], str | None]] = [
    ({"id": 5}, None), ({"id": None}, None), ({"id": ["c-1"]}, None),
    ({"id": "has space"}, None), ({"id": "x" * 200}, None), ({"id": {"a": 1}, "v": True}, None),
    ({"id": "警-1"}, None), ({"id": ""}, None), ({"id": "c-1\n"}, None), ({"id": 1.5}, None),
    ({"id": True}, None), ({"v": True, "id": "c-v1"}, "c-v1"), ({"v": 1.0, "id": "c-v2"}, "c-v2"),
]


def test_a_command_with_a_bad_id_or_version_gets_a_malformed_result(
        gw_with_commands: InProcessGateway, platform: PlatformConsole) -> None:
    online(platform)
    for bad, answered_id in BAD_IDS_AND_VERSIONS:
        doc: dict[str, Any] = {"v": 1, "id": "c-0", "op": "ping",
                               "issued_at": iso(time.time()), "args": {}}
        doc.update(bad)
        if answered_id is not None:
            doc = sign(doc, KEY)  # signed and fresh: only the version is wrong
        key = str(answered_id)
        platform.results.pop(key, None)
        platform.send_raw(SITE, GWID, json.dumps(doc).encode())
        assert platform.wait_for(lambda p, k=key: k in p.results, 10), f"no cmd/result: {bad}"
        res = platform.results[key]
        result_schema_ok(res)
        assert (res["id"], res["ok"], res["code"]) == (answered_id, False, "malformed"), bad


def test_a_duty_number_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    # `$` in a pattern matches before a final newline: the number would reach the modem's
    # AT+CMGS line with it.
    key_file = tmp_path / "cmd.key"
    key_file.write_text(KEY.hex())
    key_file.chmod(0o600)
    cfg = write_config(tmp_path / "gw", broker_port=1883)
    with cfg.open("a") as f:
        f.write(f'\n[commands]\nkey_file = "{key_file}"\n'
                '\n[escalation]\nsms_to = ["+8613912345678\\n"]\n'
                '[escalation.modem]\nport = "/dev/ttyUSB2"\n')
    with pytest.raises(ConfigError, match=r"escalation\.sms_to: .* is not a phone number"):
        load_config(cfg)

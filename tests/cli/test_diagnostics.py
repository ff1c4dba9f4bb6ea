"""The technician's diagnostics over SSH: status, inputs --watch, selftest, logs.

Each command runs as a real `alarmgw` process against a gateway on the
simulator (in this process) and a real Mosquitto, with the service running
and with it stopped, in text and in JSON, and its exit code is checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gw import DEFAULT_INPUTS, REPO, InProcessGateway, password_broker, write_config
from pki import Pki

from hw_sim.broker import Mosquitto, TlsListener
from hw_sim.platform import PlatformConsole

WAIT = 10.0
CLI_TIMEOUT = 30.0
GATEWAY = "test-school/gw-test"

#: gate-panic without debounce, so that a tap reaches the engine at once.
INPUTS: list[dict[str, Any]] = [dict(DEFAULT_INPUTS[0], debounce_ms=0), *DEFAULT_INPUTS[1:]]


def alarmgw(config: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=CLI_TIMEOUT,
                          check=False, env=env)


def run_json(config: Path, *args: str, code: int = 0) -> Any:
    res = alarmgw(config, *args, "--json")
    assert res.returncode == code, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout)


def run_text(config: Path, *args: str, code: int = 0) -> str:
    res = alarmgw(config, *args)
    assert res.returncode == code, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    return res.stdout


@dataclass
class Running:
    config: Path
    gw: InProcessGateway
    console: PlatformConsole
    broker: Mosquitto


def online(console: PlatformConsole) -> bool:
    return console.wait_for(lambda c: c.status.get(GATEWAY, {}).get("state") == "online", WAIT)


@pytest.fixture
def running(tmp_path: Path, broker: Mosquitto) -> Iterator[Running]:
    config = write_config(tmp_path / "gw", broker_port=broker.port, inputs=INPUTS)
    with PlatformConsole(broker.host, broker.port, persistent=False) as console:
        gw = InProcessGateway(config)
        try:
            gw.start()
            assert online(console), "the gateway never came online"
            yield Running(config, gw, console, broker)
        finally:
            gw.stop()


def stopped_with_waiting_alarm(tmp_path: Path, broker: Mosquitto) -> Path:
    """A config whose service ran, committed an alarm the broker never took, and stopped."""
    config = write_config(tmp_path / "gw", broker_port=broker.port, inputs=INPUTS)
    gw = InProcessGateway(config)
    try:
        gw.start()
        broker.kill()
        assert gw.panel is not None
        gw.panel.press("gate-panic")  # debounce 0: committed before stop() returns
    finally:
        gw.stop()
    return config


# -- status --------------------------------------------------------------------------------

def test_status_running_healthy(running: Running) -> None:
    out = run_text(running.config, "test-alarm", "gate-panic")
    event_id = re.search(r"id (\S+);", out)
    assert event_id
    assert running.console.wait_for(lambda c: event_id.group(1) in c.ids, WAIT)
    assert running.gw.service.uplink is not None
    assert running.gw.service.uplink.wait_for_drained(WAIT)

    out = run_text(running.config, "status")
    assert re.search(r"^uplink:\s+CONNECTED to 127\.0\.0\.1:\d+ PLAINTEXT since \S+; last PUBACK"
                     r" \d{4}-\d\d-\d\dT", out, re.M), out
    assert re.search(r"^queue:\s+alarm 0 ready / 0 in flight; event 0 ready", out, re.M), out
    assert re.search(r"^oldest:\s+nothing waits for the platform$", out, re.M), out
    assert re.search(r"^clock:\s+synced \(config\)$", out, re.M), out
    assert re.search(r"^faults:\s+none$", out, re.M), out
    assert re.search(r"^systemd: not started by systemd", out, re.M), out
    assert re.search(r"^versions: alarmgw 0\.1\.0 \(protocol v1\), Python 3\.\d+\.\d+,"
                     r" paho-mqtt \d", out, re.M), out
    assert re.search(r"^\s+gate-panic\s+panic\s+gpio:17\s+normal\s+level high glitches 0",
                     out, re.M), out
    assert re.search(r"^outputs: none configured$", out, re.M), out

    st = run_json(running.config, "status")
    assert st["running"] is True
    assert st["uplink"]["connected"] is True
    assert st["uplink"]["last_puback_at"]
    assert st["queue"]["oldest_waiting"] is None
    assert st["versions"]["alarmgw"] == "0.1.0"
    assert st["versions"]["paho-mqtt"]
    assert st["clock"] | {"synced": True, "source": "assume-synced", "method": "config"} \
        == st["clock"]
    assert st["disk"]["free_bytes"] > 0
    assert st["disk"]["total_bytes"] >= st["disk"]["free_bytes"]
    assert st["disk"]["store_bytes"] > 0
    assert st["faults"] == []
    assert st["outputs"] == []
    assert st["systemd"]["notify_socket"] is None


def test_status_running_needs_attention(tmp_path: Path, broker: Mosquitto) -> None:
    """Uplink down, an alarm waiting and the clock unsynced for too long: exit 1, all shown."""
    config = write_config(tmp_path / "gw", broker_port=broker.port, inputs=INPUTS,
                          sync_source="assume-unsynced", unsynced_fault_s=1)
    broker.kill()
    with InProcessGateway(config) as gw:
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        out = run_text(config, "status", code=1)
        st = run_json(config, "status", code=1)
    assert re.search(rf"^uplink:\s+DOWN \(127\.0\.0\.1:{broker.port}\) since start: broker"
                     rf" 127\.0\.0\.1:{broker.port} refused the connection", out, re.M), out
    assert re.search(r"^queue:\s+alarm 1 ready / 0 in flight, oldest \S+;", out, re.M), out
    # The clock fault came first: the oldest waiting is that event, in the event lane.
    assert re.search(r"^oldest:\s+[0-9a-f-]{36} in the event lane, waiting since \S+ \(\d+ s\)$",
                     out, re.M), out
    assert re.search(r"^clock:\s+NOT SYNCED", out, re.M), out
    assert re.search(r"^faults:\s+1 open$", out, re.M), out
    assert re.search(r"^\s+clock\s+ntp:assume-unsynced\s+since \S+: the clock has not been"
                     r" NTP-synced", out, re.M), out
    assert re.search(r"^\s+gate-panic\s+panic\s+gpio:17\s+ACTIVE", out, re.M), out
    assert st["uplink"]["connected"] is False
    assert st["uplink"]["connect_failures"] >= 1
    oldest = st["queue"]["oldest_waiting"]
    assert oldest["lane"] == "event"
    assert oldest["age_s"] >= 0
    assert [f["device"] for f in st["faults"]] == ["clock"]


def test_status_when_stopped_reads_the_store(tmp_path: Path, broker: Mosquitto) -> None:
    config = stopped_with_waiting_alarm(tmp_path, broker)
    res = alarmgw(config, "status")
    assert res.returncode == 3, res
    out = res.stdout
    assert re.match(r"alarmgw 0\.1\.0 test-school/gw-test: NOT RUNNING \(alarmgw is not running"
                    r" \(no answer on \S+control\.sock", out), out
    assert re.search(r"^queue:\s+\(read from the store directly\) alarm 1 ready / 0 in flight",
                     out, re.M), out
    assert re.search(r"^oldest:\s+[0-9a-f-]{36} in the alarm lane, waiting since", out,
                     re.M), out
    assert re.search(r"^disk:\s+\d+ MB free on \S+ \(store [\d.]+ MB\)$", out, re.M), out
    assert re.search(r"^inputs:\s+not read while the service is down \(3 configured: gate-panic,"
                     r" office-panic, box-tamper\)$", out, re.M), out
    assert "start it with: systemctl start alarmgw" in out
    assert "not running" in res.stderr

    st = run_json(config, "status", code=3)
    assert st["running"] is False
    assert "not running" in st["error"]
    assert st["queue"]["read_from"] == "store"
    assert st["queue"]["lanes"]["alarm"]["ready"] == 1
    assert st["queue"]["waiting"] == 1
    assert st["queue"]["oldest_waiting"]["lane"] == "alarm"
    assert [p["id"] for p in st["inputs"]] == ["gate-panic", "office-panic", "box-tamper"]
    assert all(p["active"] is None for p in st["inputs"])
    assert st["versions"]["alarmgw"] == "0.1.0"
    assert st["clock"]["synced"] is True


def test_status_when_stopped_and_never_ran(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker_port=1)
    out = run_text(config, "status", code=3)
    assert re.search(r"^queue:\s+cannot read the store: no store at \S+outbox\.sqlite3", out,
                     re.M), out
    st = run_json(config, "status", code=3)
    assert st["queue"] is None
    assert "no store at" in st["store_error"]


# -- inputs --watch ---------------------------------------------------------------------------

def watch(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway", "-c", str(config), "inputs",
                             "--watch", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=CLI_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"inputs --watch did not finish:\n{out}\n{err}")
    return out, err


def test_inputs_watch_json_sees_a_tap_and_glitches(running: Running) -> None:
    panel = running.gw.panel
    assert panel is not None
    proc = watch(running.config, "--json", "--count", "5")
    try:
        first = json.loads(proc.stdout.readline() if proc.stdout else "")
        assert [p["id"] for p in first["inputs"]] == ["gate-panic", "office-panic", "box-tamper"]
        # A tap shorter than any poll: pressed and released back to back.
        panel.press("gate-panic")
        panel.release("gate-panic")
        # A bouncing contact on a debounced input: three glitches, no change.
        panel.bounce("office-panic", edges=3)
    finally:
        out, err = finish(proc)
    assert proc.returncode == 0, err
    entries = [json.loads(line) for line in out.splitlines()]
    gate = [(e["what"], e["active"]) for e in entries if e["input"] == "gate-panic"]
    assert gate == [("change", True), ("change", False)], entries
    office = [(e["what"], e["glitches"]) for e in entries if e["input"] == "office-panic"]
    assert office == [("glitch", 1), ("glitch", 2), ("glitch", 3)], entries
    assert [e["n"] for e in entries] == sorted(e["n"] for e in entries)
    assert running.console.wait_for(lambda c: bool(c.events_of("restore", "gate-panic")), WAIT)
    assert running.console.events_of("alarm", "office-panic") == []


def test_inputs_watch_text(running: Running) -> None:
    panel = running.gw.panel
    assert panel is not None
    proc = watch(running.config, "--count", "2")
    try:
        assert proc.stdout is not None
        head = proc.stdout.readline()
        assert head.startswith("inputs now (press each button"), head
        for _ in INPUTS:  # the table of inputs as they are now
            assert re.match(r"^\s+\S+\s+\w+\s+gpio:\d+\s+normal", proc.stdout.readline())
        panel.bounce("office-panic", edges=1)
        panel.press("gate-panic")
    finally:
        out, err = finish(proc)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3}\s+office-panic\s+gpio:27\s+glitch: a bounce"
                     r" shorter than 30 ms, ignored \(1 so far\)", out, re.M), lines
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3}\s+gate-panic\s+gpio:17\s+ACTIVE\s+南门门卫室一键报警",
                     out, re.M), lines


def test_inputs_watch_when_stopped(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker_port=1)
    res = alarmgw(config, "inputs", "--watch")
    assert res.returncode == 3
    assert "not running" in res.stderr
    assert res.stdout == ""
    res = alarmgw(config, "inputs", "--watch", "--json")
    assert res.returncode == 3
    assert json.loads(res.stdout)["running"] is False


def test_inputs_watch_ends_when_the_service_stops(tmp_path: Path, broker: Mosquitto) -> None:
    config = write_config(tmp_path / "gw", broker_port=broker.port, inputs=INPUTS)
    gw = InProcessGateway(config)
    gw.start()
    try:
        proc = watch(config, "--json")
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["inputs"]
    finally:
        gw.stop()
    out, err = finish(proc)
    assert proc.returncode == 3, (out, err)
    assert "the service stopped while watching" in err
    assert json.loads(out.splitlines()[-1])["running"] is False


# -- selftest --------------------------------------------------------------------------------

def checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"]}


def test_selftest_all_pass(running: Running) -> None:
    uplink = running.gw.service.uplink
    assert uplink is not None
    out = run_text(running.config, "selftest")
    names = [ln.split()[1] for ln in out.splitlines() if ln[:4] in ("PASS", "FAIL", "SKIP")]
    assert names == ["config", "service", "store", "broker", "uplink", "inputs", "faults",
                     "clock"]
    assert re.search(rf"^PASS\s+broker\s+127\.0\.0\.1:{running.broker.port} PLAINTEXT, CONNACK"
                     r" Success in \d+ ms \(client id alarmgw-test-school-gw-test-selftest\)",
                     out, re.M), out
    assert re.search(r"^PASS\s+store\s+\S+ writable \(4 KiB write \+ fsync", out, re.M), out
    assert out.splitlines()[-1] == "all 8 checks passed"

    doc = run_json(running.config, "selftest")
    assert doc["ok"] is True
    assert all(c["verdict"] == "PASS" for c in doc["checks"]), doc
    # The check used a client id of its own: the service's session was not taken over.
    state = uplink.state()
    assert state["connected"] is True
    assert state["connects"] == 1, state
    # Nothing was left in the state directory.
    state_dir = running.gw.config.gateway.state_dir
    assert not [p for p in state_dir.iterdir() if p.name.startswith(".selftest")]


def test_selftest_names_the_broker_when_it_is_down(running: Running) -> None:
    running.broker.kill()
    port = running.broker.port
    res = alarmgw(running.config, "selftest")
    assert res.returncode == 1, res
    assert re.search(rf"^FAIL\s+broker\s+broker 127\.0\.0\.1:{port} refused the connection;",
                     res.stdout, re.M), res.stdout
    assert re.search(rf"^\s+-> check that the network reaches 127\.0\.0\.1 port {port}",
                     res.stdout, re.M), res.stdout
    assert re.search(r"^FAIL\s+uplink\s+the service's uplink to \S+ is DOWN", res.stdout, re.M)
    assert re.search(r"^\d+ of 8 checks FAILED$", res.stdout, re.M), res.stdout
    doc = run_json(running.config, "selftest", code=1)
    assert doc["ok"] is False
    broker = checks(doc)["broker"]
    assert broker["verdict"] == "FAIL"
    assert f"127.0.0.1:{port}" in broker["detail"]
    assert broker["hint"]
    assert checks(doc)["store"]["verdict"] == "PASS"


def test_selftest_when_stopped(tmp_path: Path, broker: Mosquitto) -> None:
    """Every check that can run without the service runs; the exit code says it is not
    running (3), as status does."""
    config = stopped_with_waiting_alarm(tmp_path, broker)
    broker.start()
    out = run_text(config, "selftest", code=3)
    assert re.search(r"^FAIL\s+service\s+not running: ", out, re.M), out
    assert re.search(r"^\s+-> start it with `systemctl start alarmgw`", out, re.M), out
    assert re.search(r"^PASS\s+store\s+.*outbox\.sqlite3 readable, 1 waiting", out, re.M), out
    assert re.search(r"^PASS\s+broker\s+", out, re.M), out
    for name in ("uplink", "inputs", "faults"):
        assert re.search(rf"^SKIP\s+{name}\s+the service is not running", out, re.M), out
    doc = run_json(config, "selftest", code=3)
    verdicts = {n: c["verdict"] for n, c in checks(doc).items()}
    assert verdicts == {"config": "PASS", "service": "FAIL", "store": "PASS", "broker": "PASS",
                        "uplink": "SKIP", "inputs": "SKIP", "faults": "SKIP", "clock": "PASS"}


def test_selftest_bad_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker_port=1)
    config.write_text(config.read_text().replace("[broker]", "[broker]\nprot = 1"))
    out = run_text(config, "selftest", code=2)
    assert re.search(r"^FAIL\s+config\s+\S+config\.toml: broker\.prot: unknown key", out,
                     re.M), out
    doc = run_json(config, "selftest", code=2)
    assert {c["verdict"] for c in doc["checks"][1:]} == {"SKIP"}


def test_selftest_store_not_writable(tmp_path: Path, broker: Mosquitto) -> None:
    # Under /sys nobody may create a directory, root included (a state_dir that is a file
    # is refused by the config loader: that is a config FAIL, see test_selftest_bad_config).
    config = write_config(tmp_path / "gw", broker_port=broker.port)
    config.write_text(config.read_text().replace('state_dir = "state"',
                                                 'state_dir = "/sys/alarmgw-test/state"'))
    doc = run_json(config, "selftest", code=3)  # the service is not running either
    store = checks(doc)["store"]
    assert store["verdict"] == "FAIL"
    assert "state" in store["detail"]
    assert "writable" in store["hint"]


@pytest.mark.parametrize("good", [True, False], ids=["right-password", "wrong-password"])
def test_selftest_authenticates(tmp_path: Path, good: bool) -> None:
    secret = "s3cret-Pa55word"
    with password_broker(tmp_path / "b", "gw-test", secret) as broker:
        config = write_config(tmp_path / "gw", broker_port=broker.port, broker={
            "username": "gw-test", "password": secret if good else "not-the-password"})
        doc = run_json(config, "selftest", code=3)  # the service is not running
    broker_check = checks(doc)["broker"]
    if good:
        assert broker_check["verdict"] == "PASS", broker_check
        assert "as gw-test" in broker_check["detail"]
    else:
        assert broker_check["verdict"] == "FAIL", broker_check
        assert f"broker 127.0.0.1:{broker.port} refused client id" in broker_check["detail"]
        assert "password" in broker_check["hint"]
    assert secret not in json.dumps(doc)


def test_selftest_over_mutual_tls(tmp_path: Path, pki: Pki) -> None:
    listener = TlsListener(pki.ca_cert, pki.server_cert, pki.server_key)
    with Mosquitto(tmp_path / "b", tls=listener) as broker:
        config = write_config(tmp_path / "gw", broker_port=broker.port,
                              broker={"host": "localhost"},
                              tls={"ca": str(pki.ca_cert), "cert": str(pki.client_cert),
                                   "key": str(pki.client_key)})
        doc = run_json(config, "selftest", code=3)  # the service is not running
        no_cert = write_config(tmp_path / "gw2", broker_port=broker.port,
                               broker={"host": "localhost"}, tls={"ca": str(pki.ca_cert)})
        refused = run_json(no_cert, "selftest", code=3)
    ok = checks(doc)["broker"]
    assert ok["verdict"] == "PASS", ok
    assert re.match(rf"localhost:{broker.port} TLSv1\.[23] peer \S+, CONNACK Success",
                    ok["detail"]), ok
    bad = checks(refused)["broker"]
    assert bad["verdict"] == "FAIL", bad
    assert f"localhost:{broker.port}" in bad["detail"]
    assert "certificate" in bad["detail"] + bad["hint"]


# -- logs --------------------------------------------------------------------------------------

def stand_in_journalctl(bindir: Path, record: Path) -> None:
    """A `journalctl` for a machine without journald: it records its arguments and, for
    `-o json`, prints two entries the way journalctl does."""
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "journalctl"
    entries = [
        {"__REALTIME_TIMESTAMP": "1764344224123456", "PRIORITY": "4", "_PID": "812",
         "_SYSTEMD_UNIT": "alarmgw.service",
         "MESSAGE": "gateway.uplink.mqtt: uplink: broker 10.0.0.5:8883 refused the connection"},
        {"__REALTIME_TIMESTAMP": "1764344225000000", "PRIORITY": "3", "_PID": "812",
         "_SYSTEMD_UNIT": "alarmgw.service", "MESSAGE": list("FAULT: 报警".encode())},
    ]
    lines = "\n".join(json.dumps(e, ensure_ascii=False) for e in entries)
    script.write_text(f"""#!/bin/sh
printf '%s\\n' "$@" > {record}
case " $* " in
  *" -o json "*) cat <<'EOF'
{lines}
EOF
  ;;
  *) echo "2025-11-28T15:37:04+0000 pi alarmgw[812]: gateway.uplink.mqtt: uplink: refused" ;;
esac
""")
    script.chmod(0o755)


def stand_in_systemctl(bindir: Path, main_pid: int = 812) -> None:
    """A `systemctl` of a machine where alarmgw.service is installed and running."""
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "systemctl"
    script.write_text(f"""#!/bin/sh
cat <<'EOF'
LoadState=loaded
ActiveState=active
SubState=running
Result=success
ExecMainStatus=0
NRestarts=0
StateChangeTimestamp=Fri 2025-11-28 08:00:00 UTC
MainPID={main_pid}
User=alarmgw
EOF
""")
    script.chmod(0o755)


def env_with_path(bindir: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin"}


def test_logs_maps_its_options_to_journalctl(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker_port=1)
    record = tmp_path / "argv"
    stand_in_journalctl(tmp_path / "bin", record)
    stand_in_systemctl(tmp_path / "bin")
    env = env_with_path(tmp_path / "bin")

    def argv(*args: str) -> list[str]:
        res = alarmgw(config, "logs", *args, env=env)
        assert res.returncode == 0, res
        return record.read_text().split("\n")[:-1]

    default = argv()
    assert default[:2] == ["-u", "alarmgw.service"]
    assert default[default.index("-p") + 1] == "warning"
    assert default[default.index("-n") + 1] == "200"
    assert "-f" not in default
    assert default[-2:] == ["-o", "short-iso"]
    every = argv("--all", "-n", "50", "--follow", "--since", "1 hour ago")
    assert "-p" not in every
    assert every[every.index("-n") + 1] == "50"
    assert "-f" in every
    assert every[every.index("--since") + 1] == "1 hour ago"

    res = alarmgw(config, "logs", "--json", env=env)
    assert res.returncode == 0, res
    doc = json.loads(res.stdout)  # one document
    assert (doc["ok"], doc["unit"]) == (True, "alarmgw.service")
    recs = doc["entries"]
    assert recs[0] == {"at": "2025-11-28T15:37:04.123Z", "priority": "warning", "pid": "812",
                       "unit": "alarmgw.service",
                       "message": "gateway.uplink.mqtt: uplink: broker 10.0.0.5:8883 refused"
                                  " the connection"}
    assert recs[1]["priority"] == "err"
    assert recs[1]["message"] == "FAULT: 报警"  # journald's byte-array messages decoded


def test_logs_without_journalctl(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker_port=1)
    (tmp_path / "empty").mkdir()
    res = alarmgw(config, "logs", env={**os.environ, "PATH": str(tmp_path / "empty")})
    assert res.returncode == 1
    assert "journalctl not found" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="journalctl is not installed")
def test_logs_with_the_real_journalctl(tmp_path: Path) -> None:
    """journalctl itself, on an empty journal directory (a Pi's SD card with no entries)."""
    config = write_config(tmp_path / "gw", broker_port=1)
    (tmp_path / "journal").mkdir()
    res = alarmgw(config, "logs", "-D", str(tmp_path / "journal"))
    assert res.returncode == 0, res
    assert "No entries" in res.stdout + res.stderr
    res = alarmgw(config, "logs", "--json", "-D", str(tmp_path / "journal"))
    assert res.returncode == 0, res
    doc = json.loads(res.stdout)  # one document, also when there is nothing in it
    assert (doc["ok"], doc["entries"], doc["directory"]) == (True, [], str(tmp_path / "journal"))


def stand_in_systemd_without_the_unit(bindir: Path) -> None:
    """A machine whose systemd does not know alarmgw.service (the simulator, a laptop):
    journalctl answers as it does for a unit it never saw."""
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "systemctl").write_text("#!/bin/sh\necho LoadState=not-found\n")
    (bindir / "journalctl").write_text("#!/bin/sh\necho '-- No entries --'\n")
    for name in ("systemctl", "journalctl"):
        (bindir / name).chmod(0o755)


def test_logs_without_a_journal_says_where_the_running_service_logs(running: Running,
                                                                    tmp_path: Path) -> None:
    """On the simulator `logs` used to print journalctl's "-- No entries --" (exit 0)."""
    stand_in_systemd_without_the_unit(tmp_path / "bin")
    env = env_with_path(tmp_path / "bin")
    res = alarmgw(running.config, "logs", env=env)
    assert res.returncode == 1, res
    assert "No entries" not in res.stdout + res.stderr
    assert "systemd does not know alarmgw.service" in res.stderr
    # The service runs in this process (pytest's): its stderr is whatever pytest made it.
    assert f"the alarmgw running now (pid {os.getpid()}) logs to its stderr, which is" \
        in res.stderr, res.stderr
    doc = json.loads(alarmgw(running.config, "logs", "--json", env=env).stdout)
    assert (doc["ok"], doc["journal"]) == (False, False)
    assert doc["service"]["pid"] == os.getpid()
    assert doc["service"]["kind"] in ("file", "terminal", "pipe", "socket", "null")
    assert doc["service"]["parent"]["pid"] == os.getppid()


def test_logs_without_a_journal_and_without_a_service(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker_port=1)
    stand_in_systemd_without_the_unit(tmp_path / "bin")
    res = alarmgw(config, "logs", env=env_with_path(tmp_path / "bin"))
    assert res.returncode == 1
    assert "No entries" not in res.stdout + res.stderr
    assert "no alarmgw service answers for this config" in res.stderr
    assert "`alarmgw demo`" in res.stderr and "stderr" in res.stderr


@pytest.mark.parametrize("kind", ["file", "null", "pipe"])
def test_where_a_process_logs_is_read_from_proc(tmp_path: Path, kind: str) -> None:
    from gateway.cli.logs import describe_stderr

    log = tmp_path / "gw.log"
    with log.open("w") as f:
        target = {"file": f, "null": subprocess.DEVNULL, "pipe": subprocess.PIPE}[kind]
        proc = subprocess.Popen(["sleep", "30"], stderr=target)
    try:
        found = describe_stderr(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert found["kind"] == kind, found
    assert found["parent"]["pid"] == os.getpid()
    if kind == "file":
        assert found["stderr"] == str(log)
        assert f"tail -n 200 {log}" in found["stderr_text"]
    if kind == "pipe":
        assert f"pid {os.getpid()}" in found["stderr_text"]

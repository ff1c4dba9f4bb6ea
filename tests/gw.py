"""Test helpers: write a config, run the gateway in-process or as a real process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, load_config
from gateway.control import request
from gateway.errors import ServiceNotRunningError
from gateway.service import Service, socket_path
from hw_sim.broker import Mosquitto
from hw_sim.gpio import SimPanel

REPO = Path(__file__).resolve().parents[1]

DEFAULT_INPUTS: list[dict[str, Any]] = [
    {"id": "gate-panic", "name": "南门门卫室一键报警", "location": "South gate", "kind": "panic",
     "gpio": 17, "contact": "NO", "pull": "up"},
    {"id": "office-panic", "name": "行政楼值班室", "location": "Admin building", "kind": "panic",
     "gpio": 27, "contact": "NC", "pull": "up"},
    {"id": "box-tamper", "name": "报警箱防拆", "location": "Guard room", "kind": "tamper",
     "gpio": 22, "contact": "NC", "pull": "up"},
]


def _toml_value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)


def write_config(directory: Path, *, broker_port: int, inputs: Sequence[dict[str, Any]] | None
                 = None, broker: dict[str, Any] | None = None, tls: dict[str, Any] | None = None,
                 store: dict[str, Any] | None = None, debounce_ms: int = 30,
                 health_interval_s: float = 30.0, sync_source: str = "assume-synced",
                 site: str = "test-school", gateway: str = "gw-test",
                 unsynced_fault_s: float | None = None,
                 cameras: Sequence[dict[str, Any]] = ()) -> Path:
    """Write a simulator config in `directory` (state and socket beside it) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    b: dict[str, Any] = {"host": "127.0.0.1", "port": broker_port, "keepalive_s": 5,
                         "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
    if tls is None:
        b["plaintext"] = True
    b.update(broker or {})
    lines = ["[gateway]", f"site = {_toml_value(site)}", f"id = {_toml_value(gateway)}",
             'state_dir = "state"', 'runtime_dir = "run"', "", "[broker]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in b.items()]
    if tls is not None:
        lines += ["", "[broker.tls]"] + [f"{k} = {_toml_value(v)}" for k, v in tls.items()]
    # A small reserve: hundreds of gateways start in a test run, each writing it once.
    store = {"reserve_bytes": 64 * 1024, **(store or {})}
    lines += ["", "[store]"] + [f"{k} = {_toml_value(v)}" for k, v in store.items()]
    lines += ["", "[clock]", f"sync_source = {_toml_value(sync_source)}"]
    if unsynced_fault_s is not None:
        lines.append(f"unsynced_fault_s = {unsynced_fault_s!r}")
    lines += ["", "[health]", f"interval_s = {health_interval_s}",
              "", "[gpio]", 'backend = "mock"', f"debounce_ms = {debounce_ms}"]
    for inp in inputs if inputs is not None else DEFAULT_INPUTS:
        lines += ["", "[[inputs]]"] + [f"{k} = {_toml_value(v)}" for k, v in inp.items()]
    for cam in cameras:
        lines += ["", "[[cameras]]"] + [f"{k} = {_toml_value(v)}" for k, v in cam.items()]
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class InProcessGateway:
    """The service in this process, on the simulator's pins."""

    def __init__(self, config_path: Path) -> None:
        self.config: Config = load_config(config_path)
        self.service = Service(self.config)
        self.panel: SimPanel | None = None

    def start(self) -> InProcessGateway:
        self.service.start()
        assert self.service.sim is not None
        self.panel = self.service.sim
        return self

    def stop(self) -> None:
        self.service.stop()

    def __enter__(self) -> InProcessGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GatewayProcess:
    """`alarmgw run` as a real child process (for SIGKILL and restart tests)."""

    def __init__(self, config_path: Path, log_path: Path | None = None, *,
                 env: dict[str, str] | None = None, args: Sequence[str] = ()) -> None:
        """`env`: variables added to the child's environment (e.g. NOTIFY_SOCKET);
        `args`: options before `run` (e.g. "-v")."""
        self.config_path = config_path
        self.config = load_config(config_path)
        self.log_path = log_path or config_path.parent / "gateway.log"
        self.env = dict(env or {})
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "-c", str(self.config_path), *self.args,
                 "run"],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.control({"cmd": "ping"}, timeout=1.0)
                return self
            except ServiceNotRunningError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(f"gateway not serving after {timeout} s:\n{self.log()}"
                                       ) from None
                # The socket is the service's only readiness signal seen from outside.
                time.sleep(0.02)

    def control(self, req: dict[str, Any], timeout: float = 10.0) -> Any:
        return request(socket_path(self.config), req, timeout=timeout)

    def press(self, point: str) -> None:
        self.control({"cmd": "sim", "action": "press", "input": point})

    def release(self, point: str) -> None:
        self.control({"cmd": "sim", "action": "release", "input": point})

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


def persistent_broker_conf(directory: Path) -> str:
    """Mosquitto lines that keep sessions on disk, saved every second.

    The platform console's persistent session must survive a broker SIGKILL,
    as a production broker's would, or events published before it
    resubscribes are dropped by the broker as "no subscribers".
    """
    directory.mkdir(parents=True, exist_ok=True)
    return (f"persistence true\npersistence_location {directory}/\n"
            "autosave_interval 1\n")


def wait_broker_saved(directory: Path, since_ns: int, timeout: float = 10.0) -> None:
    """Wait until Mosquitto has written its session database after `since_ns` (time_ns).

    Take `since_ns` after the change that must be saved (e.g. after SUBACK).
    """
    db = directory / "mosquitto.db"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if db.stat().st_mtime_ns > since_ns:
                return
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"mosquitto did not save {db} within {timeout} s")
        # Mosquitto gives no other signal that it has saved; its autosave runs each second.
        time.sleep(0.05)


#: The command key and duty number of `escalation_config`.
ESCALATION_KEY = bytes(range(32))
#: The account and AES key the `arc` fixture's receiving centre knows (tests/conftest.py).
ARC_ACCOUNT, ARC_KEY = "1234", "0123456789ABCDEF"
DUTY_NUMBER = "+8613800138000"


def escalation_config(tmp_path: Path, broker_port: int, modem_port: str, *,
                      broker: dict[str, Any] | None = None,
                      store: dict[str, Any] | None = None, **esc: Any) -> Path:
    """A gateway config with a sounder, signed commands and escalation by SMS through
    the modem on `modem_port` (escalation settings in `esc`)."""
    (tmp_path / "k").write_text(ESCALATION_KEY.hex())
    (tmp_path / "k").chmod(0o600)
    cfg = write_config(tmp_path / "gw", broker_port=broker_port, debounce_ms=0, broker=broker,
                       store=store)
    settings = {"ack_timeout_s": 1.0, "uplink_down_s": 1.0, "sounder": "sounder", **esc}
    lines = ["", "[[outputs]]", 'id = "sounder"', 'name = "门卫室警号"', "gpio = 24",
             "", "[commands]", f'key_file = "{tmp_path / "k"}"', "", "[escalation]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines += [f'sms_to = ["{DUTY_NUMBER}"]', "", "[escalation.modem]", f'port = "{modem_port}"',
              "sms_timeout_s = 5"]
    with cfg.open("a") as f:
        f.write("\n".join(lines) + "\n")
    return cfg


def password_broker(workdir: Path, user: str, password: str) -> Mosquitto:
    """A Mosquitto that takes only `user` with `password` (not started)."""
    mosquitto_passwd = shutil.which("mosquitto_passwd")
    if mosquitto_passwd is None:
        pytest.skip("mosquitto_passwd is not installed (Debian package mosquitto)")
    workdir.mkdir(parents=True, exist_ok=True)
    pwfile = workdir / "passwd"
    subprocess.run([mosquitto_passwd, "-c", "-b", str(pwfile), user, password], check=True,
                   capture_output=True, timeout=30)
    os.chmod(pwfile, stat.S_IRUSR | stat.S_IWUSR)
    return Mosquitto(workdir, extra_conf=f"password_file {pwfile}\nallow_anonymous false")

"""`alarmgw demo`: the whole system on the simulator, on any Linux machine.

A private Mosquitto on a free loopback port, the gateway service as its
own process on `examples/sim.toml` (simulated GPIO buttons), and the
reference platform console printing every event it receives. Beside the
police platform, a simulated alarm-receiving centre (ARC, hw_sim.arc) on
another free loopback port is the second path: the demo adds a
[paths.dc09] toward it to its copy of the config, with an AES key made
for the run in a 0600 file, and prints each Contact ID event the ARC
receives ("ARC 1234: 1120 zone 001 (panic, new)"). The demo presses a
button, shows the alarm arrive at both, releases it, and keeps running
so you can press buttons yourself with `alarmgw sim`.
"""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from gateway.config import Config, load_config
from gateway.control import request
from gateway.errors import ConfigError, ControlError, GatewayError, ServiceNotRunningError
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

if TYPE_CHECKING:
    from hw_sim.arc import ArcReceiver
    from hw_sim.console.app import WebConsole

REPO_ROOT = Path(__file__).resolve().parents[1]
SIM_CONFIG = REPO_ROOT / "examples" / "sim.toml"

#: The account the demo's ARC knows the demo school by.
ARC_ACCOUNT = "1234"

_PORT_LINE = re.compile(r"^port\s*=\s*\d+\s*$", re.MULTILINE)
_RELATIVE_FILE = re.compile(r'^\w+_file\s*=\s*"([^"/]+)"', re.MULTILINE)
_DC09_TABLE = re.compile(r"^\s*\[\s*paths\s*\.\s*dc09\s*\]", re.MULTILINE)

def has_dc09(template: Path) -> bool:
    """Whether the config already names its own DC-09 path (the demo then adds none)."""
    return _DC09_TABLE.search(template.read_text(encoding="utf-8")) is not None


def prepare_config(template: Path, workdir: Path, broker_port: int,
                   arc: ArcReceiver | None = None, arc_key_file: Path | None = None) -> Path:
    """Copy the simulator config into `workdir`, pointed at the demo's broker, and with
    `arc` a [paths.dc09] toward that (started) ARC, encrypted with the key in
    `arc_key_file`."""
    text = template.read_text(encoding="utf-8")
    text, n = _PORT_LINE.subn(f"port = {broker_port}", text)
    if n != 1:
        raise ConfigError(template, "broker.port", "the demo needs exactly one 'port = N' line"
                          " to point at its private broker")
    if arc is not None:
        assert arc_key_file is not None
        text += dc09_section(arc.port, arc_key_file)
    path = workdir / "demo.toml"
    path.write_text(text, encoding="utf-8")
    # Files the config names by relative path travel with it.
    for name in _RELATIVE_FILE.findall(text):
        src = template.parent / name
        if src.is_file():
            shutil.copy2(src, workdir / name)
    return path


def write_arc_key(workdir: Path) -> Path:
    """A fresh AES-128 key (16 hex characters) in `workdir`/dc09.key, readable by its owner
    only, as the gateway demands of a key file."""
    from hw_sim.arc import write_key_file

    return write_key_file(workdir / "dc09.key", secrets.token_hex(8).upper())


def dc09_section(arc_port: int, key_file: Path) -> str:
    """The [paths.dc09] the demo appends to its copy of the config."""
    return (
        "\n# Added by the demo: the second alarm path, SIA DC-09 (Contact ID) to its ARC.\n"
        "[paths.dc09]\n"
        'host = "127.0.0.1"\n'
        f"port = {arc_port}\n"
        f'account = "{ARC_ACCOUNT}"\n'
        'receiver = "1"\n'
        'line = "1"\n'
        f'key_file = "{key_file}"\n'
        "retry_max_s = 5\n"
    )


def _print_arc_event(event: dict[str, Any]) -> None:
    from hw_sim.arc import describe

    # One write, so that the line stays whole beside the platform console's (its thread).
    sys.stdout.write(describe(event) + "\n")
    sys.stdout.flush()


def _start_arc(template: Path, key_file: Path) -> ArcReceiver | None:
    """The demo's ARC, started on a free loopback port, knowing account ARC_ACCOUNT by the
    key in `key_file`; None when the config has its own [paths.dc09] or pysiaalarm is
    missing."""
    if has_dc09(template):
        print(f"demo: {template} has its own [paths.dc09]; no simulated ARC", flush=True)
        return None
    try:
        from hw_sim.arc import HOST, ArcReceiver
    except ImportError as exc:
        print(f"demo: no simulated ARC ({exc}); install it with pip install -e '.[dev]'",
              flush=True)
        return None
    key = key_file.read_text(encoding="ascii").strip()
    arc = ArcReceiver({ARC_ACCOUNT: key}, on_event=_print_arc_event).start()
    print(f"demo: simulated alarm-receiving centre (ARC) on {HOST}:{arc.port}, account"
          f" {ARC_ACCOUNT}, AES-{len(key) * 8} key in {key_file}: the gateway's second path"
          " (SIA DC-09, Contact ID)", flush=True)
    return arc


def wait_until_serving(cfg: Config, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for the service's control socket to answer (or the process to die)."""
    from gateway.service import socket_path

    sock = socket_path(cfg)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise GatewayError(f"the gateway exited with code {proc.returncode} during start;"
                               " see its log above")
        try:
            request(sock, {"cmd": "ping"}, timeout=1.0)
            return
        except ServiceNotRunningError:
            if time.monotonic() > deadline:
                raise GatewayError(f"the gateway did not open {sock} within {timeout:.0f} s"
                                   ) from None
            # The service creates the socket last, after the store and uplink are up;
            # there is no other signal to wait on from outside the process.
            time.sleep(0.05)


def _wait_for_snapshots(console: PlatformConsole, point: str, timeout: float = 15.0) -> None:
    """Show the pictures the press's alarm listed arriving (or failing) at the platform."""
    alarm = console.events_of("alarm", point)[0]
    wanted = sum(int(s.get("pre", 0)) + int(s.get("post", 0)) for s in alarm["snapshots"])
    if not wanted:
        return

    def arrived(c: PlatformConsole) -> int:
        return len(c.snapshots_of(alarm["id"])) + len(c.failures_of(alarm["id"]))

    console.wait_for(lambda c: arrived(c) >= wanted, timeout)
    print(f"demo: {len(console.snapshots_of(alarm['id']))} of the {wanted} pictures listed in"
          f" the alarm arrived, {len(console.failures_of(alarm['id']))} failed", flush=True)


def run_demo(config: Path | None = None, duration: float | None = None) -> int:
    template = config or SIM_CONFIG
    if not template.is_file():
        print(f"demo: no simulator config at {template}; pass one with --config",
              file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="alarmgw-demo-"))
    broker = Mosquitto(workdir / "broker")
    console: PlatformConsole | None = None
    web: WebConsole | None = None
    arc: ArcReceiver | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        broker.start()
        print(f"demo: private Mosquitto on {broker.host}:{broker.port} (log"
              f" {workdir / 'broker'})", flush=True)
        arc_key_file = write_arc_key(workdir)
        arc = _start_arc(template, arc_key_file)
        cfg_path = prepare_config(template, workdir, broker.port, arc, arc_key_file)
        cfg = load_config(cfg_path)
        key = cfg.commands.key if cfg.commands is not None else None
        console = PlatformConsole(broker.host, broker.port, out=sys.stdout,
                                  jsonl=workdir / "platform.jsonl", command_key=key,
                                  auto_ack_s=2.0 if key else None, operator="值班民警",
                                  snapshot_dir=workdir / "snapshots")
        console.start()
        print("demo: platform console subscribed to alarmgw/v1/+/+/#"
              + ("; it acknowledges each alarm 2 s after it arrives (接警确认)" if key else ""),
              flush=True)
        web = _start_web_console(broker, workdir, key)
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "-c", str(cfg_path), "run"])
        wait_until_serving(cfg, proc, timeout=20.0)
        gw = f"{cfg.gateway.site}/{cfg.gateway.id}"
        print(f"demo: gateway {gw} running on the simulator (pid {proc.pid})", flush=True)
        panic = next(i for i in cfg.inputs if i.kind == "panic")
        from gateway.service import socket_path

        sock = socket_path(cfg)
        print(f"demo: pressing {panic.id} ({panic.name})", flush=True)
        request(sock, {"cmd": "sim", "action": "press", "input": panic.id})
        if not console.wait_for(lambda c: bool(c.events_of("alarm", panic.id)), 10.0):
            print("demo: FAILED: the alarm did not reach the platform in 10 s", file=sys.stderr)
            return 1
        if arc is not None and not _wait_for_arc(arc, cfg, panic.id):
            return 1
        if key is not None:
            console.wait_for(lambda c: any(r.get("op") == "ack" for r in c.results.values()),
                             10.0)
        _wait_for_snapshots(console, panic.id)
        print(f"demo: releasing {panic.id}", flush=True)
        request(sock, {"cmd": "sim", "action": "release", "input": panic.id})
        console.wait_for(lambda c: bool(c.events_of("restore", panic.id)), 10.0)
        if not _demo_modbus(cfg, sock, console):
            return 1
        if not _demo_inspection(cfg, sock, console):
            return 1
        me = f"{sys.argv[0] if sys.argv[0].endswith('alarmgw') else 'alarmgw'} -c {cfg_path}"
        print("demo: the system keeps running. In another terminal try:\n"
              f"    {me} status\n"
              f"    {me} sim press office-panic\n"
              f"    {me} sim release office-panic\n"
              f"    {me} test-alarm --drill gate-panic\n"
              f"    {me} inspect start --points office-panic --minutes 5 --by 技术员\n"
              f"    {me} inspect status     (then: sim press / release, inspect report)\n"
              f"    {me} queue\n"
              f"    {me} drills\n"
              + "".join(f"    {me} snapshot {c.id} -o {c.id}.jpg\n"
                        f"    {me} sim camera {c.id} 500     (then: ok)\n"
                        for c in cfg.cameras[:1])
              + (f"demo: the platform saves snapshots under {workdir / 'snapshots'}"
                 " while the demo runs\n" if cfg.cameras else "")
              + (f"demo: stopping in {duration:.0f} s" if duration is not None
                 else "demo: Ctrl-C to stop"), flush=True)
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            if proc.poll() is not None:
                print(f"demo: the gateway exited (code {proc.returncode})", file=sys.stderr)
                return 1
            remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if remaining <= 0:
                break
            stop.wait(remaining)
        return 0
    except (GatewayError, ControlError, OSError, TimeoutError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if web is not None:
            web.stop()
        if arc is not None:
            arc.stop()
            cids = [e for e in arc.events if e["message_type"] == "ADM-CID"]
            print(f"demo: ARC received {len(cids)} Contact ID events and"
                  f" {len(arc.events) - len(cids)} supervision messages", flush=True)
        if console is not None:
            console.stop()
            print(f"demo: platform received {len(console.events)} events"
                  f" ({console.duplicates} duplicates dropped), open seq gaps:"
                  f" {console.gaps() or 'none'}", flush=True)
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_arc(arc: ArcReceiver, cfg: Config, point: str) -> bool:
    """Wait for the press's alarm at the ARC (new event, the point's zone); False if it
    did not come."""
    assert cfg.paths.dc09 is not None
    zone = f"{cfg.paths.dc09.zones[point]:03d}"
    try:
        arc.wait_for(lambda e: e["message_type"] == "ADM-CID" and e["event_qualifier"] == "1"
                     and e["ri"] == zone and e["event_type"] in ("120", "121", "122"), 10.0)
    except TimeoutError:
        print("demo: FAILED: the alarm did not reach the ARC in 10 s", file=sys.stderr)
        return False
    return True


def _start_web_console(broker: Mosquitto, workdir: Path, key: bytes | None
                       ) -> WebConsole | None:
    """The duty officer's web console on a free loopback port; None without aiohttp."""
    try:
        from hw_sim.console.app import WebConsole
    except ImportError as exc:
        print(f"demo: no web console ({exc}); install it with pip install -e '.[sim]'",
              flush=True)
        return None
    web = WebConsole(broker.host, broker.port, db=workdir / "console.db", command_key=key)
    url = web.start()
    print(f"demo: the duty officer's console (值班台) is at {url}: open it in a browser on"
          " this machine to see each alarm with its pictures and acknowledge it", flush=True)
    return web


def _demo_inspection(cfg: Config, sock: Path, console: PlatformConsole) -> bool:
    """A short inspection (巡检) of two buttons: their presses reach the platform as test
    events, not alarms; then the report. False if a test press is lost."""
    buttons = [i.id for i in cfg.inputs if i.kind == "panic"][:2]
    if len(buttons) < 2:
        return True
    window = request(sock, {"cmd": "inspect-start", "points": buttons, "minutes": 5,
                            "by": "演示技术员"})
    print(f"demo: inspection {window['id']} of {', '.join(buttons)}: their presses are test"
          " events now, not alarms", flush=True)
    for point in buttons:
        print(f"demo: pressing and releasing {point} under inspection", flush=True)
        request(sock, {"cmd": "sim", "action": "press", "input": point})

        def arrived(c: PlatformConsole, point: str = point) -> bool:
            return any(e["detail"].get("inspection") == window["id"]
                       for e in c.events_of("test", point))

        if not console.wait_for(arrived, 10.0):
            print(f"demo: FAILED: the test press of {point} did not reach the platform in"
                  " 10 s", file=sys.stderr)
            return False
        request(sock, {"cmd": "sim", "action": "release", "input": point})
    # Each point passes once the broker has its test press (PUBACK) and it was released.
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        st = request(sock, {"cmd": "inspect-status"})
        if st["window"] is None or set(st["window"]["so_far"]["passed"]) == set(buttons):
            break
        time.sleep(0.1)
    report = request(sock, {"cmd": "inspect-stop", "by": "演示技术员"})
    print(f"demo: inspection report: passed {[e['point'] for e in report['passed']]},"
          f" failed {[e['point'] for e in report['failed']]},"
          f" not tested {[e['point'] for e in report['not_tested']]}", flush=True)
    return True


def _demo_modbus(cfg: Config, sock: Path, console: PlatformConsole) -> bool:
    """Press and release a button on a simulated Modbus module; False if its alarm is lost."""
    panic = next((p for p in cfg.modbus.points if p.kind == "panic"), None)
    if panic is None:
        return True
    print(f"demo: pressing {panic.id} ({panic.name}) on Modbus module {panic.device}"
          f" ({panic.source})", flush=True)
    request(sock, {"cmd": "sim", "action": "press", "input": panic.id})
    if not console.wait_for(lambda c: bool(c.events_of("alarm", panic.id)), 10.0):
        print("demo: FAILED: the Modbus alarm did not reach the platform in 10 s",
              file=sys.stderr)
        return False
    print(f"demo: releasing {panic.id}", flush=True)
    request(sock, {"cmd": "sim", "action": "release", "input": panic.id})
    console.wait_for(lambda c: bool(c.events_of("restore", panic.id)), 10.0)
    device = cfg.modbus.device(panic.device)
    print("demo: Modbus modules are simulated too; try:\n"
          f"    alarmgw -c {cfg.path} sim press {panic.id}\n"
          f"    alarmgw -c {cfg.path} sim modbus-fault {device.id} silent   (then: ok)\n"
          f"    alarmgw -c {cfg.path} outputs", flush=True)
    return True

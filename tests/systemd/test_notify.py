"""What the service tells systemd (unit Type=notify, WatchdogSec=), seen on a real socket.

A real AF_UNIX datagram socket plays systemd's notify socket, for a real
`alarmgw run` child process and for an in-process service: READY=1 only once
the store is open and the service answers, STATUS= lines that follow the
uplink and the queue, WATCHDOG=1 while the engine answers, and no WATCHDOG=1
while the engine thread is stuck.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw import REPO, GatewayProcess, InProcessGateway, write_config
from sdsock import NotifySocket

from gateway.control import request
from gateway.service import socket_path, store_path
from gateway.systemd.notify import Heartbeat, Notifier
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

#: Upper bound for anything that takes milliseconds on loopback, in seconds.
WAIT = 10.0
#: WATCHDOG_USEC of the tests: a ping every 0.1 s, a probe may take 0.05 s.
WATCHDOG_USEC = 200_000


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    with NotifySocket(tmp_path / "notify.sock") as s:
        yield s


# -- the protocol ----------------------------------------------------------------------------

@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notifier_sends_datagrams(tmp_path: Path, abstract: bool) -> None:
    with NotifySocket(None if abstract else tmp_path / "n.sock") as sock:
        n = Notifier(sock.address, watchdog_usec=3_000_000)
        try:
            assert n.ready("starting up")
            assert n.status("uplink   connected,\n0 waiting")
            assert n.watchdog()
        finally:
            n.close()
        msgs = [sock.recv(WAIT) for _ in range(3)]
    assert msgs[0] is not None and msgs[0]["READY"] == "1"
    assert msgs[0]["STATUS"] == "starting up"
    assert msgs[0]["MAINPID"].isdigit()
    assert msgs[1] == {"STATUS": "uplink connected, 0 waiting"}  # one line, always
    assert msgs[2] == {"WATCHDOG": "1"}
    assert n.watchdog_interval_s == 3.0


def test_notifier_without_socket_is_a_no_op() -> None:
    n = Notifier.from_environ({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog_interval_s is None


def test_watchdog_for_another_pid_is_ignored() -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000",
                               "WATCHDOG_PID": "1"})
    assert n.enabled
    assert n.watchdog_interval_s is None


def test_send_errors_are_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """sdnotify swallows errors; ours names the socket the first time and then stays quiet."""
    missing = tmp_path / "no-such.sock"
    n = Notifier(str(missing))
    try:
        with caplog.at_level(logging.DEBUG, logger="gateway.systemd.notify"):
            assert n.ready() is False
            assert n.watchdog() is False
            assert n.watchdog() is False
    finally:
        n.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in caplog.records]
    assert str(missing) in errors[0].getMessage()
    assert "READY=1" in errors[0].getMessage()
    assert n.errors == 3


def test_heartbeat_pings_only_while_the_probe_passes(notify_socket: NotifySocket) -> None:
    alive = threading.Event()
    alive.set()
    n = Notifier(notify_socket.address, watchdog_usec=WATCHDOG_USEC)
    hb = Heartbeat(n, probe=alive.wait, status=lambda: "fine")
    hb.start()
    try:
        assert hb.wait_for(lambda h: h.pings >= 2, WAIT)
        alive.clear()
        assert hb.wait_for(lambda h: h.withheld >= 1, WAIT)
        p1 = hb.pings
        assert hb.wait_for(lambda h: h.withheld >= 3, WAIT)
        assert hb.pings == p1
        alive.set()
        assert hb.wait_for(lambda h: h.pings > p1, WAIT)
    finally:
        hb.stop()
        n.close()


# -- an in-process service -----------------------------------------------------------------

def test_service_ready_status_and_watchdog(tmp_path: Path, broker: Mosquitto,
                                           notify_socket: NotifySocket,
                                           console: PlatformConsole,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # `console`: a platform subscribed, so the alarm is delivered (an alarm nobody is
    # subscribed to stays waiting: docs/protocol/README.md).
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    config = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
    gw = InProcessGateway(config)
    blocker = threading.Event()
    try:
        gw.start()
        svc = gw.service
        link = svc.systemd
        assert link is not None
        ready = notify_socket.wait_for(lambda m: "READY" in m, WAIT)
        assert ready is not None, notify_socket.received
        assert ready["READY"] == "1"
        # STATUS tells the uplink's state and the queue depth.
        assert notify_socket.wait_for_status(lambda s: s == "uplink connected, 0 waiting",
                                             WAIT), notify_socket.received
        assert notify_socket.wait_for(lambda m: m.get("WATCHDOG") == "1", WAIT)

        # The broker dies, an alarm waits: STATUS says so without being asked.
        broker.kill()
        down = notify_socket.wait_for_status(lambda s: s.startswith("uplink DOWN ("), WAIT)
        assert down is not None, notify_socket.received
        assert f"127.0.0.1:{broker.port}" in down
        assert gw.panel is not None
        gw.panel.press("gate-panic")
        assert notify_socket.wait_for_status(lambda s: s.endswith(", 1 waiting (1 alarms)"),
                                             WAIT), notify_socket.received
        broker.start()
        assert notify_socket.wait_for_status(lambda s: s == "uplink connected, 0 waiting",
                                             WAIT), notify_socket.received

        # A stuck engine: the pings stop.
        hb = link.heartbeat
        assert svc.engine is not None
        svc.engine.call(blocker.wait)
        w0 = hb.withheld
        assert hb.wait_for(lambda h: h.withheld >= w0 + 1, WAIT)
        p1 = hb.pings
        notify_socket.drain()
        assert hb.wait_for(lambda h: h.withheld >= w0 + 4, WAIT)
        assert hb.pings == p1, "WATCHDOG=1 was sent while the engine was stuck"
        assert not [m for m in notify_socket.drain() if "WATCHDOG" in m]

        # Unstuck: the pings come back.
        blocker.set()
        assert notify_socket.wait_for(lambda m: m.get("WATCHDOG") == "1", WAIT)
        assert hb.wait_for(lambda h: h.pings > p1, WAIT)
    finally:
        blocker.set()
        gw.stop()
    stopping = notify_socket.wait_for(lambda m: "STOPPING" in m, WAIT)
    assert stopping is not None and stopping["STOPPING"] == "1"


def test_a_busy_engine_is_not_a_stuck_engine(tmp_path: Path, broker: Mosquitto,
                                             notify_socket: NotifySocket,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog longer than the probe's timeout (a burst of events, each an fsync) still
    feeds the watchdog, because the engine keeps handling messages."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every 0.5 s, probes wait 0.25 s
    config = write_config(tmp_path / "gw", broker_port=broker.port)
    with InProcessGateway(config) as gw:
        link, engine = gw.service.systemd, gw.service.engine
        assert link is not None and engine is not None
        hb = link.heartbeat
        assert hb.wait_for(lambda h: h.pings >= 1, WAIT)
        # 30 messages of 0.1 s each: 3 s of backlog, six probe periods, each probe
        # queued behind far more than its 0.25 s.
        work = [engine.call(lambda: time.sleep(0.1)) for _ in range(30)]
        p0, w0 = hb.pings, hb.withheld
        work[-1].result(WAIT)
        assert hb.pings >= p0 + 3, (hb.pings, p0)
        assert hb.withheld == w0, "a busy engine was taken for a stuck one"


def test_service_without_notify_socket_sends_nothing(tmp_path: Path, broker: Mosquitto,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    config = write_config(tmp_path / "gw", broker_port=broker.port)
    with InProcessGateway(config) as gw:
        link = gw.service.systemd
        assert link is not None
        assert not link.notifier.enabled
        st = gw.service.status()
    assert st["systemd"]["notify_socket"] is None


# -- a real `alarmgw run` --------------------------------------------------------------------

def test_real_process_ready_after_the_store_is_open(tmp_path: Path, broker: Mosquitto) -> None:
    config = write_config(tmp_path / "gw", broker_port=broker.port)
    with NotifySocket() as sock:  # abstract, as systemd's own /run/systemd/notify is not
        proc = GatewayProcess(config, env={"NOTIFY_SOCKET": sock.address,
                                           "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        try:
            proc.start()
            ready = sock.wait_for(lambda m: "READY" in m, WAIT)
            assert ready is not None, f"no READY=1: {sock.received}\n{proc.log()}"
            assert proc.proc is not None
            assert ready["MAINPID"] == str(proc.proc.pid)
            # At READY the store is open (WAL mode) and the service answers.
            cfg = proc.config
            assert store_path(cfg).exists()
            assert store_path(cfg).with_name(store_path(cfg).name + "-wal").exists()
            q = request(socket_path(cfg), {"cmd": "queue"})
            assert q["stats"]["waiting"] == 0
            assert sock.wait_for_status(lambda s: s == "uplink connected, 0 waiting", WAIT), \
                sock.received
            assert sock.wait_for(lambda m: m.get("WATCHDOG") == "1", WAIT), sock.received
            st = request(socket_path(cfg), {"cmd": "status"})
            assert st["systemd"]["watchdog_s"] == WATCHDOG_USEC / 1e6
            assert st["systemd"]["pings"] >= 1
        finally:
            code = proc.stop()
        assert code == 0, proc.log()
        assert sock.wait_for(lambda m: m.get("STOPPING") == "1", WAIT), sock.received


def test_no_ready_when_the_store_cannot_open(tmp_path: Path, broker: Mosquitto) -> None:
    config = write_config(tmp_path / "gw", broker_port=broker.port)
    # A directory where the store's file should be: the config is right, the store is not
    # (a state_dir that is a file is a config error, refused before anything starts).
    (tmp_path / "gw" / "state" / "outbox.sqlite3").mkdir(parents=True)
    with NotifySocket(tmp_path / "notify.sock") as sock:
        res = subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), "run"],
                             env={"NOTIFY_SOCKET": sock.address, "PATH": "/usr/bin:/bin"},
                             cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
        messages = sock.drain()
    assert res.returncode == 1, res.stderr
    assert "outbox.sqlite3" in res.stderr
    assert not [m for m in messages if "READY" in m], messages


def test_a_notify_socket_nobody_reads_costs_lost_pings_not_a_blocked_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from gateway.systemd import notify

    monkeypatch.setattr(notify, "SEND_TIMEOUT_S", 0.05)
    path = tmp_path / "full.sock"
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind(str(path))
    try:
        n = Notifier(str(path))
        # The queue of a datagram socket holds a few hundred small messages at most: before
        # the fix the first send past it blocked for ever (pytest-timeout ends the test).
        results: list[bool] = []
        while len(results) < 5000 and (not results or results[-1]):
            results.append(n.send("WATCHDOG=1"))
        n.close()
    finally:
        reader.close()
    assert results[0] is True
    assert results[-1] is False and n.errors == 1

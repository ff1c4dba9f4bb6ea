"""The watchdog vouches for the whole alarm path: engine, store and uplink, on a real socket.

A real AF_UNIX datagram socket plays systemd's notify socket for an in-process service.
WATCHDOG=1 must stop when the uplink thread hangs while an alarm waits for it, or when the
store's lock is held and nothing can be read or written, and come back when they move
again. (The engine's own case is in test_notify.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gw import InProcessGateway, write_config
from sdsock import NotifySocket

from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

#: Upper bound for anything that takes milliseconds on loopback, in seconds.
WAIT = 10.0
#: WATCHDOG_USEC of the tests: a ping every 0.1 s, a probe may take 0.05 s.
WATCHDOG_USEC = 200_000
#: How long the uplink may go without a turn of its loop while it has work, here.
STALL_S = 0.5


def reading(sock: NotifySocket, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Wait until `predicate()` holds, reading what the service sends meanwhile, as systemd
    does (a notify socket nobody reads fills up, and then blocks its sender)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.recv(min(left, 0.05))
    return True


@pytest.fixture
def gateway(tmp_path: Path, broker: Mosquitto, console: PlatformConsole,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InProcessGateway, NotifySocket]]:
    with NotifySocket(tmp_path / "notify.sock") as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
        monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
        cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0)
        gw = InProcessGateway(cfg)
        try:
            gw.start()
            link = gw.service.systemd
            assert link is not None
            link.uplink_stall_s = STALL_S
            assert reading(sock, lambda: link.heartbeat.pings >= 2)
            yield gw, sock
        finally:
            stopping = threading.Thread(target=gw.stop, name="test-gw-stop")
            stopping.start()
            while stopping.is_alive():
                sock.recv(0.05)
            stopping.join()


def assert_pings_stop_then_resume(gw: InProcessGateway, sock: NotifySocket,
                                  release: threading.Event) -> None:
    link = gw.service.systemd
    assert link is not None
    hb = link.heartbeat
    w0 = hb.withheld
    assert reading(sock, lambda: hb.withheld >= w0 + 1), \
        "WATCHDOG=1 still sent while a part of the alarm path is stuck"
    p1 = hb.pings
    sock.drain()
    n = len(sock.received)
    assert reading(sock, lambda: hb.withheld >= w0 + 4)
    sock.drain()
    assert hb.pings == p1, "WATCHDOG=1 was sent while a part of the alarm path was stuck"
    assert not [m for m in sock.received[n:] if "WATCHDOG" in m]
    assert link.state()["stuck"] is not None
    release.set()
    assert sock.wait_for(lambda m: m.get("WATCHDOG") == "1", WAIT)
    assert reading(sock, lambda: hb.pings > p1)
    assert link.state()["stuck"] is None


def test_a_hung_uplink_with_an_alarm_waiting_stops_the_watchdog(
        gateway: tuple[InProcessGateway, NotifySocket]) -> None:
    gw, sock = gateway
    uplink = gw.service.uplink
    assert uplink is not None and gw.panel is not None
    hang, hung, release = threading.Event(), threading.Event(), threading.Event()

    def watcher() -> None:
        """Called by the uplink from its own thread on every change of its state."""
        if hang.is_set() and threading.current_thread().name == "uplink":
            hung.set()
            release.wait()

    uplink.add_watcher(watcher)
    try:
        hang.set()
        gw.panel.press("gate-panic")  # its PUBACK is a change of state: the uplink hangs
        assert hung.wait(WAIT)
        hang.clear()
        gw.panel.press("office-panic")  # an alarm waits for the hung uplink
        assert_pings_stop_then_resume(gw, sock, release)
        assert reading(sock, lambda: gw.service.outbox.stats().waiting == 0)
    finally:
        release.set()


def test_an_idle_uplink_waiting_on_its_socket_keeps_the_watchdog_fed(
        gateway: tuple[InProcessGateway, NotifySocket]) -> None:
    """Nothing to send for many stall periods: the loop turns, which is progress."""
    gw, sock = gateway
    link = gw.service.systemd
    assert link is not None and gw.service.uplink is not None
    assert reading(sock, lambda: gw.service.outbox.stats().waiting == 0)
    hb = link.heartbeat
    w0, p0 = hb.withheld, hb.pings
    uplink = gw.service.uplink
    turns = uplink.loop_turns
    # Three of the uplink's select timeouts (1 s each at most, far over STALL_S), idle.
    assert reading(sock, lambda: uplink.loop_turns >= turns + 3 and hb.pings >= p0 + 5)
    assert hb.withheld == w0


def test_a_store_nobody_can_read_stops_the_watchdog(
        gateway: tuple[InProcessGateway, NotifySocket]) -> None:
    gw, sock = gateway
    held, release = threading.Event(), threading.Event()

    def hold_the_store() -> None:
        # The store's one connection lock (private): as a wedged transaction would hold it.
        with gw.service.outbox._lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold_the_store, name="test-store-holder")
    holder.start()
    try:
        assert held.wait(WAIT)
        assert_pings_stop_then_resume(gw, sock, release)
    finally:
        release.set()
        holder.join(WAIT)

"""The fault-injecting proxy: each mode does what it says, and the gateway survives a black hole."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw import InProcessGateway, write_config

from hw_sim.broker import Mosquitto
from hw_sim.netfault import NetFault
from hw_sim.platform import PlatformConsole

GW = "test-school/gw-test"


class EchoServer:
    """A loopback TCP server that echoes every byte and records what it received."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.received = bytearray()
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accepter = threading.Thread(target=self._accept, name="echo-accept")
        self._accepter.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.02)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self._conns.append(conn)
            t = threading.Thread(target=self._echo, args=(conn,), name="echo-conn")
            self._threads.append(t)
            t.start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(0.02)
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            with self.cond:
                self.received += data
                self.cond.notify_all()
            conn.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._accepter.join()
        for t in self._threads:
            t.join()
        for c in self._conns:
            c.close()
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[NetFault]:
    with NetFault("127.0.0.1", echo.port) as p:
        yield p


def connect(proxy: NetFault) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def test_pass_carries_bytes_both_ways(proxy: NetFault) -> None:
    with connect(proxy) as s:
        s.sendall(b"hello")
        assert recv_exactly(s, 5) == b"hello"
    assert proxy.counters["up"] == 5 and proxy.counters["down"] == 5


def test_latency_is_added_in_each_direction(proxy: NetFault) -> None:
    proxy.latency(150)
    with connect(proxy) as s:
        t0 = time.monotonic()
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"ping"
        rtt = time.monotonic() - t0
        # Order is kept when the delay shrinks mid-stream.
        proxy.latency(1)
        s.sendall(b"a")
        proxy.pass_()
        s.sendall(b"b")
        assert recv_exactly(s, 2) == b"ab"
    assert rtt >= 0.3  # 150 ms up + 150 ms down


def test_cut_resets_open_and_new_connections(proxy: NetFault) -> None:
    with connect(proxy) as s:
        s.sendall(b"x")
        assert recv_exactly(s, 1) == b"x"
        proxy.cut()
        with pytest.raises(ConnectionResetError):
            while s.recv(1):
                pass
    # A new connection is reset at once (at connect or at the first read, as timing has it).
    with pytest.raises(ConnectionResetError), connect(proxy) as s2:
        while s2.recv(1):
            pass
    proxy.pass_()
    with connect(proxy) as s3:
        s3.sendall(b"y")
        assert recv_exactly(s3, 1) == b"y"


def test_blackhole_keeps_connections_open_and_drops_every_byte(
        proxy: NetFault, echo: EchoServer) -> None:
    with connect(proxy) as s:
        s.sendall(b"1")
        assert recv_exactly(s, 1) == b"1"
        proxy.blackhole()
        s.sendall(b"lost")
        with connect(proxy) as born_dead:
            born_dead.sendall(b"also lost")
            # Nothing comes back, and neither connection is closed (no EOF, no RST).
            for conn in (s, born_dead):
                conn.settimeout(0.3)
                with pytest.raises(TimeoutError):
                    conn.recv(1)
            assert proxy.counters["dropped"] >= len(b"lost") + len(b"also lost")
            proxy.pass_()
            # A black-holed connection stays dead, as a half-open one does ...
            s.sendall(b"still lost")
            with pytest.raises(TimeoutError):
                s.recv(1)
            # ... while a new one passes.
            with connect(proxy) as fresh:
                fresh.sendall(b"ok")
                assert recv_exactly(fresh, 2) == b"ok"
    with echo.cond:
        assert bytes(echo.received) == b"1ok"


def test_throttle_limits_bytes_per_second(proxy: NetFault) -> None:
    proxy.throttle(20_000)
    data = bytes(range(256)) * 40  # 10 240 bytes
    with connect(proxy) as s:
        t0 = time.monotonic()
        s.sendall(data)
        assert recv_exactly(s, len(data)) == data
        took = time.monotonic() - t0
    # 10 KiB at 20 kB/s is half a second (the two directions overlap: the echo
    # trickles back as it trickles in); the first 50 ms slice goes out at once.
    assert took >= 0.4


def test_bad_modes_are_refused(proxy: NetFault) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        proxy.set_mode("flaky")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency_ms"):
        proxy.set_mode("latency")
    with pytest.raises(ValueError, match="rate_bps"):
        proxy.throttle(0)
    assert proxy.state.mode == "pass"


def test_stop_closes_everything_with_connections_open(echo: EchoServer) -> None:
    proxy = NetFault("127.0.0.1", echo.port).start()
    with connect(proxy) as s, connect(proxy) as s2:
        s.sendall(b"a")
        assert recv_exactly(s, 1) == b"a"
        proxy.blackhole()
        s2.sendall(b"b")
        proxy.stop()
        assert proxy.connections == 0
        # The proxy closed its ends: the clients see the connection end.
        s.settimeout(5)
        assert s.recv(1) == b""


def test_black_holed_uplink_is_noticed_and_the_backlog_resent_once(
        tmp_path: Path, persistent: tuple[Mosquitto, PlatformConsole],
        caplog: pytest.LogCaptureFixture) -> None:
    broker, console = persistent
    with NetFault(broker.host, broker.port) as proxy:
        cfg = write_config(tmp_path / "gw", broker_port=proxy.port, debounce_ms=0,
                           broker={"keepalive_s": 2})
        with InProcessGateway(cfg) as gw:
            assert gw.panel is not None and gw.service.uplink is not None
            uplink = gw.service.uplink
            gw.panel.press("gate-panic")
            gw.panel.release("gate-panic")
            assert console.wait_for(lambda c: len(c.events) == 2, 10)
            connects = uplink.state()["connects"]

            proxy.blackhole()
            for _ in range(10):
                gw.panel.press("gate-panic")
                gw.panel.release("gate-panic")
            engine = gw.service.engine
            assert engine is not None
            engine.call(lambda: None).result(10)
            assert gw.service.outbox.stats().next_seq == 23
            # The gateway declares the half-open link dead on its own (1.5 x keepalive).
            assert not uplink.wait_for_drained(0.1)
            silent = threading.Event()
            uplink.add_watcher(lambda: _latch(silent, uplink.state()))
            assert silent.wait(15)
            assert len(console.events) == 2

            proxy.pass_()
            assert console.wait_for(lambda c: len(c.events) == 22, 30), (
                f"got {len(console.events)}; gaps {console.gaps()}")
            assert uplink.wait_for_drained(10)
            assert uplink.state()["connects"] > connects
    ordered = console.ordered(GW)
    assert [e["seq"] for e in ordered] == list(range(1, 23))
    assert len({e["id"] for e in ordered}) == 22
    assert console.gaps() == {}
    silences = [r.getMessage() for r in caplog.records if "silent for" in r.getMessage()]
    assert silences and "keepalive 2 s" in silences[0]


def _latch(flag: threading.Event, state: dict[str, object]) -> None:
    if "silent for" in str(state.get("last_error")):
        flag.set()

"""The uplink's TLS: mutual TLS end to end, and every way a handshake must fail, failing closed.

A real Mosquitto with a (mutual) TLS listener and a throwaway PKI. A refused handshake is
reported in `uplink.state()["last_error"]` and retried as TLS: a plain TCP "broker" that
records the first bytes of every connection proves that no retry ever speaks plaintext MQTT.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from gw import InProcessGateway, write_config
from pki import CLIENT_CN, Pki, make_ca, make_client_cert, make_server_cert

from gateway.config import TlsSettings, load_config
from gateway.errors import UplinkError
from gateway.uplink.mqtt import make_tls_context
from hw_sim.broker import Mosquitto, TlsListener
from hw_sim.platform import PlatformConsole

#: Upper bound for anything that takes milliseconds on loopback, in seconds.
WAIT = 10.0

#: The first byte of a TLS record carrying a handshake message (a ClientHello).
TLS_HANDSHAKE = 0x16
#: The first byte of an MQTT CONNECT packet (type 1, flags 0).
MQTT_CONNECT = 0x10

GATEWAY = "test-school/gw-test"


def mutual_tls_broker(workdir: Path, pki: Pki) -> Mosquitto:
    return Mosquitto(workdir, tls=TlsListener(pki.ca_cert, pki.server_cert, pki.server_key,
                                              require_certificate=True))


def tls_table(ca: Path, cert: Path | None = None, key: Path | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"ca": str(ca)}
    if cert is not None and key is not None:
        t.update(cert=str(cert), key=str(key))
    return t


class UplinkLog(logging.Handler):
    """Collects the uplink's warnings and errors; lets a test wait for the n-th one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._cond = threading.Condition()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.messages.append(record.getMessage())
            self._cond.notify_all()

    def wait_for_count(self, n: int, timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= n, timeout)

    def __enter__(self) -> UplinkLog:
        logger = logging.getLogger("gateway.uplink.mqtt")
        self._saved_level = logger.level
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
        logger.addHandler(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        logger = logging.getLogger("gateway.uplink.mqtt")
        logger.removeHandler(self)
        logger.setLevel(self._saved_level)


@contextmanager
def gateway(config: Path) -> Iterator[InProcessGateway]:
    gw = InProcessGateway(config)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


def uplink_state(gw: InProcessGateway) -> dict[str, Any]:
    assert gw.service.uplink is not None
    return gw.service.uplink.state()


def wait_for_failures(gw: InProcessGateway, n: int, timeout: float = WAIT) -> bool:
    """Block until the uplink has counted `n` failed connection attempts."""
    uplink = gw.service.uplink
    assert uplink is not None
    cond = threading.Condition()

    def changed() -> None:
        with cond:
            cond.notify_all()

    uplink.add_watcher(changed)
    with cond:
        return cond.wait_for(lambda: uplink.state()["connect_failures"] >= n, timeout)


def assert_logged_on_change(log: UplinkLog) -> None:
    """Repeated failures are logged when the reason changes, not at every attempt."""
    assert log.messages, "no failure was logged"
    repeats = [a for a, b in zip(log.messages, log.messages[1:], strict=False) if a == b]
    assert not repeats, f"the same failure was logged again: {log.messages}"


def refused_twice(gw: InProcessGateway, log: UplinkLog) -> dict[str, Any]:
    """Wait for two failed connection attempts and return the uplink's state after them."""
    assert wait_for_failures(gw, 2), \
        f"fewer than 2 failed attempts: {uplink_state(gw)} {log.messages}"
    assert_logged_on_change(log)
    state = uplink_state(gw)
    assert state["connected"] is False, state
    assert state["connects"] == 0, f"the uplink connected: {state}"
    assert state["tls"] is True
    assert state["tls_peer"] is None
    assert state["last_error"], state
    return state


# -- mutual TLS end to end ------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_mutual_tls_end_to_end(tmp_path: Path, pki: Pki, host: str) -> None:
    with mutual_tls_broker(tmp_path / "b", pki) as broker, \
            PlatformConsole("127.0.0.1", broker.port, tls_ca=pki.ca_cert,
                            tls_cert=pki.client_cert, tls_key=pki.client_key,
                            persistent=False) as console:
        config = write_config(tmp_path / "gw", broker_port=broker.port, broker={"host": host},
                              tls=tls_table(pki.ca_cert, pki.client_cert, pki.client_key))
        with gateway(config) as gw:
            assert console.wait_for(
                lambda c: c.status.get(GATEWAY, {}).get("state") == "online", WAIT), \
                f"gateway never came online over TLS: {uplink_state(gw)}"
            assert gw.panel is not None
            gw.panel.press("gate-panic")
            assert console.wait_for(lambda c: bool(c.events_of("alarm", "gate-panic")), WAIT), \
                f"no alarm arrived over TLS: {uplink_state(gw)}"
            state = uplink_state(gw)
        assert state["connected"] is True
        assert state["tls"] is True
        assert state["broker"] == f"{host}:{broker.port}"
        assert state["last_error"] is None
        peer = state["tls_peer"]
        assert peer is not None
        assert peer["version"] in ("TLSv1.2", "TLSv1.3")
        assert peer["subject"] == "localhost"  # the CN of the pki's broker certificate
        (alarm,) = console.events_of("alarm", "gate-panic")
        assert alarm["source"] == "gpio:17"


# -- the broker's certificate must match broker.host -----------------------------------

def test_server_certificate_for_another_host_is_refused(tmp_path: Path, pki: Pki) -> None:
    wrong = make_server_cert(pki, tmp_path / "wrong", ["wrong.example"])
    with mutual_tls_broker(tmp_path / "b", wrong) as broker, UplinkLog() as log:
        config = write_config(tmp_path / "gw", broker_port=broker.port,
                              tls=tls_table(pki.ca_cert, pki.client_cert, pki.client_key))
        with gateway(config) as gw:
            state = refused_twice(gw, log)
    err = state["last_error"]
    assert "TLS" in err
    assert "certificate" in err
    assert "mismatch" in err, err  # the verify message says why: the name does not match
    assert f"127.0.0.1:{broker.port}" in err


class FirstBytesServer:
    """A plain TCP server on loopback that records the first bytes of each connection.

    It plays a "broker" that speaks nothing: it reads what the client sends first, records
    it, and hangs up. `wait_for_connections(n)` blocks until n connections were recorded.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # lets the accept loop notice stop()
        self.port: int = self._listener.getsockname()[1]
        self._cond = threading.Condition()
        self.first_bytes: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="first-bytes-server")

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(WAIT)
                data = self._read_first_record(conn)
            with self._cond:
                self.first_bytes.append(data)
                self._cond.notify_all()

    @staticmethod
    def _read_first_record(conn: socket.socket) -> bytes:
        """Read what the client sends first: a whole TLS record if it is one (so that the
        hang-up is a clean close, as a plain MQTT broker rejecting a bad packet does), else
        whatever the first read returns."""
        data = b""
        try:
            data = conn.recv(5)
            if len(data) == 5 and data[0] == TLS_HANDSHAKE:
                want = 5 + int.from_bytes(data[3:5], "big")
                while len(data) < want:
                    chunk = conn.recv(want - len(data))
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            pass
        return data

    def seen(self) -> list[bytes]:
        with self._cond:
            return list(self.first_bytes)

    def wait_for_connections(self, n: int, timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.first_bytes) >= n, timeout)

    def __enter__(self) -> FirstBytesServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()


def test_refused_tls_is_retried_as_tls_never_plaintext(tmp_path: Path, pki: Pki) -> None:
    with FirstBytesServer() as server, UplinkLog() as log:
        config = write_config(tmp_path / "gw", broker_port=server.port,
                              tls=tls_table(pki.ca_cert, pki.client_cert, pki.client_key))
        with gateway(config) as gw:
            assert server.wait_for_connections(2), \
                f"the gateway did not retry: {server.seen()}"
            assert wait_for_failures(gw, 2), uplink_state(gw)
            assert_logged_on_change(log)
            state = uplink_state(gw)
        seen = server.seen()
    assert len(seen) >= 2
    for i, data in enumerate(seen):
        assert data, f"connection {i} sent nothing"
        assert data[0] != MQTT_CONNECT, f"connection {i} spoke plaintext MQTT: {data!r}"
        assert data[0] == TLS_HANDSHAKE, f"connection {i} did not start a TLS handshake: {data!r}"
    assert state["connects"] == 0
    assert state["connected"] is False
    assert state["last_error"]
    assert f"127.0.0.1:{server.port}" in state["last_error"]
    assert "TLS" in state["last_error"]


# -- the broker refuses clients it does not know ---------------------------------------

def test_client_without_certificate_is_refused_and_reported(tmp_path: Path, pki: Pki) -> None:
    with mutual_tls_broker(tmp_path / "b", pki) as broker, UplinkLog() as log:
        config = write_config(tmp_path / "gw", broker_port=broker.port,
                              tls=tls_table(pki.ca_cert))
        with gateway(config) as gw:
            state = refused_twice(gw, log)
    err = state["last_error"]
    assert f"127.0.0.1:{broker.port}" in err
    # A technician must learn that the client certificate is the problem, not just that the
    # connection was lost.
    assert "certificate" in err, err


def test_client_certificate_from_an_unknown_ca_is_refused(tmp_path: Path, pki: Pki) -> None:
    rogue_ca = make_ca(tmp_path / "rogue")
    rogue = make_client_cert(rogue_ca, tmp_path / "rogue", common_name=CLIENT_CN)
    with mutual_tls_broker(tmp_path / "b", pki) as broker, UplinkLog() as log:
        config = write_config(tmp_path / "gw", broker_port=broker.port,
                              tls=tls_table(pki.ca_cert, rogue.cert, rogue.key))
        with gateway(config) as gw:
            state = refused_twice(gw, log)
    err = state["last_error"]
    assert f"127.0.0.1:{broker.port}" in err
    assert "certificate" in err, err


def test_broker_from_an_unknown_ca_is_refused(tmp_path: Path, pki: Pki) -> None:
    """The gateway trusts only its configured CA: a broker certificate from another is refused."""
    other_ca = make_ca(tmp_path / "other")
    with mutual_tls_broker(tmp_path / "b", pki) as broker, UplinkLog() as log:
        config = write_config(tmp_path / "gw", broker_port=broker.port,
                              tls=tls_table(other_ca.cert, pki.client_cert, pki.client_key))
        with gateway(config) as gw:
            state = refused_twice(gw, log)
    err = state["last_error"]
    assert "TLS" in err
    assert "certificate" in err
    assert "broker.tls.ca" in err
    assert f"127.0.0.1:{broker.port}" in err


# -- the SSLContext itself --------------------------------------------------------------

Tls = Callable[[Pki], dict[str, Any] | None]


@pytest.mark.parametrize("tls", [
    pytest.param(lambda p: tls_table(p.ca_cert, p.client_cert, p.client_key), id="mutual"),
    pytest.param(lambda p: tls_table(p.ca_cert), id="ca-only"),
    pytest.param(lambda p: {}, id="system-store"),
])
def test_tls_context_is_strict(tmp_path: Path, pki: Pki, tls: Tls) -> None:
    config = load_config(write_config(tmp_path, broker_port=8883, tls=tls(pki)))
    ctx = make_tls_context(config.broker)
    assert ctx is not None
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.check_hostname is True
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.protocol == ssl.PROTOCOL_TLS_CLIENT


def test_tls_context_trusts_only_the_configured_ca(tmp_path: Path, pki: Pki) -> None:
    config = load_config(write_config(tmp_path, broker_port=8883, tls=tls_table(pki.ca_cert)))
    ctx = make_tls_context(config.broker)
    assert ctx is not None
    cas = ctx.get_ca_certs()
    assert len(cas) == 1
    assert "'commonName', 'alarmgw test CA'" in str(cas[0]["subject"])


def test_plaintext_loopback_has_no_tls_context(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, broker_port=1883))
    assert config.broker.tls is None
    assert make_tls_context(config.broker) is None


def test_unusable_key_is_an_uplink_error_naming_broker_tls(tmp_path: Path, pki: Pki) -> None:
    config = load_config(write_config(tmp_path, broker_port=8883,
                                      tls=tls_table(pki.ca_cert, pki.client_cert,
                                                    pki.client_key)))
    # Settings built by hand: the config loader may (rightly) refuse this pair itself.
    mismatched = replace(config.broker, tls=TlsSettings(ca=pki.ca_cert, cert=pki.client_cert,
                                                        key=pki.server_key))
    with pytest.raises(UplinkError, match=r"^broker\.tls: ") as info:
        make_tls_context(mismatched)
    assert isinstance(info.value.__cause__, ssl.SSLError)

"""The broker harness itself: a real Mosquitto that starts, takes QoS 1, dies and comes back.

Every outage test of the gateway leans on these behaviours, so they are proven here with a
bare paho-mqtt client (callback API v2, MQTT 5) and nothing from ``gateway``.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pki import CLIENT_CN, Pki, make_ca, make_client_cert, make_server_cert

import hw_sim.broker
from hw_sim.broker import Mosquitto

#: Upper bound for anything that should take milliseconds on loopback, in seconds.
WAIT = 5.0


class _Events:
    """What a probe's paho callbacks report; holds no reference to the client (no cycles)."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.connect_rc: ReasonCode | None = None
        self.disconnected = threading.Event()
        self.disconnect_rc: ReasonCode | None = None
        self._lock = threading.Lock()
        self._acks: dict[int, threading.Event] = {}
        self.ack_rc: dict[int, ReasonCode] = {}

    def ack_event(self, mid: int) -> threading.Event:
        """The event set when the broker acknowledges message ``mid`` (in either order)."""
        with self._lock:
            return self._acks.setdefault(mid, threading.Event())

    def on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connect_rc = reason_code
        self.connected.set()

    def on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.disconnect_rc = reason_code
        self.disconnected.set()

    def on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        self.ack_rc[mid] = reason_code
        self.ack_event(mid).set()


class Probe:
    """A bare paho client (v2 callbacks, MQTT 5, no automatic reconnect) for harness tests."""

    def __init__(self, client_id: str) -> None:
        self.events = _Events()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        self.client.on_connect = self.events.on_connect
        self.client.on_disconnect = self.events.on_disconnect
        self.client.on_publish = self.events.on_publish

    def tls(self, ca: Path, cert: Path | None = None, key: Path | None = None) -> None:
        """Use TLS, trusting ``ca``; present ``cert``/``key`` if given."""
        self.client.tls_set(
            ca_certs=str(ca),
            certfile=str(cert) if cert else None,
            keyfile=str(key) if key else None,
        )

    def start(self, broker: Mosquitto) -> None:
        """Connect to ``broker`` and start the network thread (CONNACK is not awaited)."""
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()

    def wait_connected(self) -> None:
        """Wait for a successful CONNACK."""
        assert self.events.connected.wait(WAIT), "no CONNACK"
        rc = self.events.connect_rc
        assert rc is not None
        assert not rc.is_failure, f"broker refused the connection: {rc}"

    def publish_acked(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK reason code once it arrives."""
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(info.rc)
        assert self.events.ack_event(info.mid).wait(WAIT), "no PUBACK"
        return self.events.ack_rc[info.mid]

    def close(self) -> None:
        """Disconnect and stop the network thread; safe whatever state the client is in."""
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def probe(client_id: str) -> Iterator[Probe]:
    """A :class:`Probe` that is always disconnected and stopped afterwards."""
    p = Probe(client_id)
    try:
        yield p
    finally:
        p.close()


def _assert_refused_by_tls(p: Probe, broker: Mosquitto) -> None:
    """Assert that ``broker`` refuses ``p`` during or right after the TLS handshake.

    With TLS 1.2 the client's handshake fails; with TLS 1.3 the server checks the client
    certificate after the client has finished, so the refusal arrives as a closed connection
    before any CONNACK.
    """
    try:
        p.start(broker)
    except (ssl.SSLError, ConnectionError):
        return
    assert p.events.disconnected.wait(WAIT), "broker kept the connection open"
    assert not p.events.connected.is_set(), "broker sent a CONNACK"


def test_publish_qos1_gets_puback(broker: Mosquitto) -> None:
    assert broker.is_running
    assert "running" in broker.log_tail()
    with probe("harness-pub") as p:
        p.start(broker)
        p.wait_connected()
        rc = p.publish_acked("alarmgw/v1/harness/gw/event", b'{"v":1}')
    # No subscriber: MQTT 5 says so in the PUBACK, which still means "the broker has it".
    assert rc.value in (0, 16), rc


def test_kill_is_an_outage_and_start_comes_back_on_the_same_port(broker: Mosquitto) -> None:
    port = broker.port
    with probe("harness-outage") as p:
        p.start(broker)
        p.wait_connected()
        broker.kill()
        assert p.events.disconnected.wait(WAIT), "client did not notice the broker dying"
    assert not broker.is_running
    assert broker.port == port

    with pytest.raises(ConnectionRefusedError), socket.create_connection((broker.host, port)):
        pass

    broker.start()
    assert broker.port == port
    with probe("harness-back") as p:
        p.start(broker)
        p.wait_connected()
        assert not p.publish_acked("t", b"back").is_failure


def test_restart_keeps_the_port(broker: Mosquitto) -> None:
    port, pid = broker.port, broker.pid
    broker.restart()
    assert broker.is_running
    assert broker.port == port
    assert broker.pid != pid
    with pytest.raises(RuntimeError, match="already running"):
        broker.start()


def test_stop_is_idempotent_and_reaps(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "b")
    broker.stop()  # never started: nothing to do
    with broker:
        assert broker.is_running
    assert not broker.is_running
    broker.stop()
    broker.kill()
    # The leak check proves that no mosquitto child is left behind.


def test_bad_config_raises_with_the_log_tail(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "b", extra_conf="no_such_option 1")
    with pytest.raises(RuntimeError, match="no_such_option"):
        broker.start()
    assert not broker.is_running


def test_taken_free_port_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken = squatter.getsockname()[1]
        real_free_port = hw_sim.broker._free_port
        offers = iter([taken])

        def racy_free_port(host: str) -> int:
            return next(offers, None) or real_free_port(host)

        monkeypatch.setattr(hw_sim.broker, "_free_port", racy_free_port)
        with Mosquitto(tmp_path / "b") as broker:
            assert broker.port != taken
            assert "Address already in use" in broker.log_tail()


def test_requested_port_in_use_fails_clearly(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken = squatter.getsockname()[1]
        broker = Mosquitto(tmp_path / "b", port=taken)
        with pytest.raises(RuntimeError, match="address in use"):
            broker.start(timeout=0.5)
        assert not broker.is_running


def test_mutual_tls_accepts_the_client_certificate(tmp_path: Path, pki: Pki) -> None:
    with Mosquitto(tmp_path / "b", tls=pki.broker_tls()) as broker, probe(CLIENT_CN) as p:
        p.tls(pki.ca_cert, pki.client_cert, pki.client_key)
        p.start(broker)
        p.wait_connected()
        assert not p.publish_acked("alarmgw/v1/s/gw/event", b"{}").is_failure


def test_mutual_tls_refuses_a_client_without_certificate(tmp_path: Path, pki: Pki) -> None:
    with Mosquitto(tmp_path / "b", tls=pki.broker_tls()) as broker, probe("anon") as p:
        p.tls(pki.ca_cert)
        _assert_refused_by_tls(p, broker)


def test_mutual_tls_refuses_a_certificate_from_another_ca(tmp_path: Path, pki: Pki) -> None:
    rogue_ca = make_ca(tmp_path / "rogue")
    rogue = make_client_cert(rogue_ca, tmp_path / "rogue")
    with Mosquitto(tmp_path / "b", tls=pki.broker_tls()) as broker, probe("rogue") as p:
        p.tls(pki.ca_cert, rogue.cert, rogue.key)
        _assert_refused_by_tls(p, broker)


def test_client_rejects_a_broker_certificate_for_another_host(tmp_path: Path, pki: Pki) -> None:
    other = make_server_cert(pki, tmp_path / "other", ["other.invalid"])
    with Mosquitto(tmp_path / "b", tls=other.broker_tls()) as broker, probe(CLIENT_CN) as p:
        p.tls(pki.ca_cert, pki.client_cert, pki.client_key)
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            p.start(broker)


def test_a_broker_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    # A demo or test killed with SIGKILL runs no cleanup; the kernel must take the
    # broker along (hw_sim.lifeline), or it would hold its port for ever.
    code = ("import sys; from pathlib import Path; from hw_sim.broker import Mosquitto;"
            f"m = Mosquitto(Path({str(tmp_path / 'b')!r})); m.start();"
            "print(m.pid, flush=True); sys.stdin.read()")
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{broker_pid}").exists() and time.monotonic() < deadline:
            # Nothing to wait on for a process that is not our child: poll /proc.
            time.sleep(0.02)
        stat = Path(f"/proc/{broker_pid}/stat")
        alive = stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"
        assert not alive, f"broker {broker_pid} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for f in (parent.stdin, parent.stdout):
            if f is not None:
                f.close()

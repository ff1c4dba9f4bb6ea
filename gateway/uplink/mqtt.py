"""The MQTT 5 uplink: drains the outbox to the broker, one PUBACK at a time.

One thread owns the connection and runs paho-mqtt's network loop itself
(`loop_read`/`loop_write`/`loop_misc` around one `select`), so publishing,
PUBACK handling and the outbox never race. The engine only calls `wake()`
after it commits; the uplink takes rows from the outbox, lowest lane first.

A row leaves the outbox only when the broker's PUBACK for it arrives. paho's
own message queue is memory only and is not trusted across connections: each
connection gets a fresh paho client, and rows in flight when a connection
drops go back to READY, so after a reconnect the alarm lane goes first.

A negative PUBACK holds back that row alone, never a lane or the connection:
- refused (reason >= 0x80, e.g. an ACL's 0x87 Not authorized): the row is
  retried after 2 s, doubling to 60 s, counted in `refused`;
- 0x10 "No matching subscribers" on the alarm lane: the broker dropped the
  alarm, nobody saw it. The row stays, is retried after 1 s doubling to 30 s
  (at once when another alarm gets a plain success), counts as not delivered
  (no "puback" hook), and raises the `platform` fault through `on_fault`,
  cleared by the next plain success on the alarm lane. On the event and bulk
  lanes 0x10 counts as delivered: restores, faults (this one included, so it
  cannot loop) and pictures nobody subscribes to are not worth a retry storm.
While held, a row stays IN_FLIGHT in the store (so `Outbox.take` passes it
by); it goes back to READY when its hold ends, or when the uplink stops.

TLS (`gateway.uplink.tls`) is configured once into an `ssl.SSLContext`; a TLS
failure is reported and retried as TLS, never as plaintext. How many picture bytes
may be on the wire ahead of an alarm is `gateway.uplink.link_rate`'s.

This module stays over 500 lines because `Uplink` is one thing: the one thread that
owns the connection, the outbox's rows in flight and paho's callbacks, with no lock
between them; splitting it would put locks where there are none.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.clock import mono_ns, utc_iso
from gateway.config import BrokerSettings
from gateway.events import FaultChange
from gateway.logs import OnChangeLog
from gateway.store import Lane, Outbox, Row
from gateway.uplink.link_rate import (
    BULK_AHEAD_S,
    BULK_BYTES_IN_FLIGHT,
    BULK_BYTES_UNMEASURED,
    LinkRate,
)
from gateway.uplink.protocol import Topics, encode
from gateway.uplink.tls import describe_connect_error, make_tls_context

log = logging.getLogger(__name__)

__all__ = ["BULK_AHEAD_S", "BULK_BYTES_IN_FLIGHT", "BULK_BYTES_UNMEASURED", "NO_PLATFORM",
           "PLATFORM_FAULT_ID", "REFUSED_BACKOFF_S", "UNSUBSCRIBED_BACKOFF_S",
           "LinkRate", "Uplink", "describe_connect_error", "make_tls_context"]

NO_MATCHING_SUBSCRIBERS = 0x10
"""PUBACK reason code: the broker has the message and no subscriber to give it to."""
REFUSED_BACKOFF_S = (2.0, 60.0)
"""A refused row is retried after the first, doubling up to the second, in seconds."""
UNSUBSCRIBED_BACKOFF_S = (1.0, 30.0)
"""An alarm nobody subscribed to is retried after the first, doubling up to the second."""
PLATFORM_FAULT_ID = "platform"
"""The point id of the fault raised while alarms find no subscriber."""
NO_PLATFORM = "no platform subscribed"
"""How that fault's reason begins."""


@dataclass(frozen=True)
class _Tries:
    """Negative PUBACKs in a row for one outbox row: why ('refused', 'unsubscribed'), how many."""

    why: str
    n: int


@dataclass
class _InFlight:
    row: Row
    sent_mono: float
    tries: _Tries | None = None


@dataclass
class _Held:
    """A row the broker answered negatively, waiting (IN_FLIGHT in the store) for its retry."""

    row: Row
    until: float
    """time.monotonic() when it goes back to READY."""
    tries: _Tries
    code: str
    """The PUBACK's reason code, in words."""


class Uplink:
    """Delivers outbox rows to the broker and keeps the gateway's presence there."""

    def __init__(self, settings: BrokerSettings, topics: Topics, outbox: Outbox, *,
                 status_doc: Callable[..., dict[str, Any]],
                 health_doc: Callable[[], dict[str, Any]] | None = None,
                 health_interval_s: float = 30.0,
                 on_command: Callable[[bytes], None] | None = None,
                 on_delivery: Callable[[str, list[Row]], None] | None = None,
                 on_fault: Callable[[FaultChange], None] | None = None) -> None:
        """`status_doc(state, reason=None)`: the status document for 'online'/'offline';
        `health_doc()`: the heartbeat document; `health_interval_s`: heartbeat
        period, in seconds; `on_fault(fault)`: the `platform` fault opens or clears
        (called in the uplink thread; it must not block)."""
        self.settings = settings
        self.topics = topics
        self.outbox = outbox
        self._status_doc = status_doc
        self._health_doc = health_doc
        self._health_interval = health_interval_s
        self._on_command_cb = on_command
        self._on_delivery = on_delivery
        self._on_fault = on_fault
        self._tls = make_tls_context(settings)
        self._where = f"{settings.host}:{settings.port}"
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the fields read by state()
        self._progress = threading.Condition()  # notified after PUBACKs are recorded
        # Owned by the uplink thread:
        self._client: mqtt.Client | None = None
        self._connected = False
        self._session_over = False
        self._connack: ReasonCode | None = None
        self._server_receive_max = 65535
        self._inflight: dict[int, _InFlight] = {}
        self.link_rate = LinkRate()
        self._acks: list[tuple[int, ReasonCode]] = []
        self._dirty = True
        self._held: dict[int, _Held] = {}
        """Rows answered negatively, by rowid, until their retry (kept across connections)."""
        self._tries: dict[int, _Tries] = {}
        """Negative answers of rows back in READY and not yet taken again, by rowid."""
        self._platform_fault: bool | None = None
        """Whether the `platform` fault is open; None: not known yet (since start)."""
        self._last_rx = 0.0
        self._loop_turns = 0
        """Turns of this thread's loops: each wait on the broker's socket, each connection
        attempt."""
        # Connect failures repeat every backoff: logged on change plus a summary.
        self._connect_log = OnChangeLog(log)
        self._refused_log = OnChangeLog(log)
        self._unsubscribed_log = OnChangeLog(log)
        self._watchers: list[Callable[[], None]] = []
        # Read by state():
        self._state: dict[str, Any] = {
            "broker": self._where, "tls": self._tls is not None, "connected": False,
            "since": None, "last_puback_at": None, "last_error": None, "connects": 0,
            "published": 0, "acked": 0, "refused": 0, "unsubscribed": 0, "tls_peer": None,
            "connect_failures": 0, "held": [],
        }

    # -- the engine's side ------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New rows were committed: look at the outbox now. Thread-safe, never blocks."""
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake or stopping

    def stop(self, timeout: float = 3.0) -> None:
        """Say 'offline' (graceful, retained), disconnect and end the thread."""
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout + 2.0)
            if self._thread.is_alive():
                log.error("uplink thread did not stop within %.0f s", timeout + 2.0)
            self._thread = None
        self._wake_r.close()
        self._wake_w.close()

    def wait_for_drained(self, timeout: float) -> bool:
        """Block until nothing waits in the outbox; False on timeout."""
        with self._progress:
            return self._progress.wait_for(lambda: self.outbox.stats().waiting == 0, timeout)

    def add_watcher(self, fn: Callable[[], None]) -> None:
        """Call `fn()` (in the uplink thread; it must not block) whenever the state that
        `state()` shows changes: connect, loss, PUBACKs, refusals."""
        self._watchers.append(fn)

    def _changed(self) -> None:
        for fn in self._watchers:
            try:
                fn()
            except Exception:
                log.exception("uplink: state watcher %r failed", fn)

    @property
    def loop_turns(self) -> int:
        """How many times the uplink thread's loop has turned (each wait on the broker's
        socket, at least every second while connected; each connection attempt): a
        watchdog sees progress in it. Any thread; read only."""
        return self._loop_turns

    def state(self) -> dict[str, Any]:
        """The connection and its counters: `refused` (rows the broker refused),
        `unsubscribed` (alarms it had no subscriber for), `held` (rows waiting for their
        retry: seq, topic, lane, reason, code, tries, retry_in_s)."""
        with self._lock:
            s = dict(self._state)
        now = time.monotonic()
        s["held"] = [{k: v for k, v in h.items() if k != "until"}
                     | {"retry_in_s": round(max(0.0, h["until"] - now), 1)} for h in s["held"]]
        s["in_flight"] = len(self._inflight)
        return s

    def _set(self, **fields: Any) -> None:
        with self._lock:
            self._state.update(fields)
        self._changed()

    def _connect_failed(self, msg: str, level: int = logging.WARNING) -> None:
        """A connection attempt failed: logged when the reason changes, summarised while
        it lasts."""
        with self._lock:
            self._state["connect_failures"] += 1
        self._set(last_error=msg)
        self._connect_log.problem(f"uplink: {msg}", level)

    # -- the connection loop ----------------------------------------------

    def _run(self) -> None:
        backoff = self.settings.reconnect_min_s
        while not self._stop.is_set():
            self._loop_turns += 1
            started = time.monotonic()
            try:
                self._connect_and_serve()
            except Exception:
                log.exception("uplink to broker %s: unexpected error; reconnecting", self._where)
            finally:
                self._end_session()
            if self._stop.is_set():
                break
            # A session that lasted gets a fresh backoff; a flapping one backs off.
            if time.monotonic() - started > 10 * self.settings.reconnect_max_s:
                backoff = self.settings.reconnect_min_s
            delay = backoff * random.uniform(0.8, 1.2)
            backoff = min(backoff * 2, self.settings.reconnect_max_s)
            self._sleep(delay)
        self._release_held(list(self._held))

    def _sleep(self, seconds: float) -> None:
        """Wait for the backoff, or for stop; commits meanwhile do not cut it short."""
        self._stop.wait(seconds)

    def _new_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                             protocol=mqtt.MQTTv5)
        client.connect_timeout = s.connect_timeout_s
        client.max_inflight_messages_set(s.window)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        will_props = Properties(PacketTypes.WILLMESSAGE)
        will_props.ContentType = "application/json"
        client.will_set(self.topics.status,
                        encode(self._status_doc("offline", reason="connection lost")), qos=1,
                        retain=True, properties=will_props)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # A bug in a callback must not kill the connection thread; paho logs it.
        client.suppress_exceptions = True
        return client

    def _connect_and_serve(self) -> None:
        client = self._new_client()
        self._client = client
        self.link_rate.new_connection()
        self._connected = False
        self._session_over = False
        self._connack = None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        # connect_async only records the parameters; reconnect() below makes the
        # (blocking, timeout-bounded) TCP connection and TLS handshake in this thread.
        client.connect_async(self.settings.host, self.settings.port,
                             keepalive=self.settings.keepalive_s, clean_start=True,
                             properties=props)
        try:
            client.reconnect()
        except Exception as exc:
            self._connect_failed(describe_connect_error(exc, self._where,
                                                        tls=self._tls is not None))
            return
        paho_sock = client.socket()
        if not isinstance(paho_sock, socket.socket):
            return
        sock: socket.socket = paho_sock
        # Alarms are small and must not wait for Nagle's algorithm to batch them behind
        # an unacknowledged segment (40 ms with delayed ACKs); paho leaves it on.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            log.debug("uplink: cannot set TCP_NODELAY: %s", exc)
        tls_sock = sock if isinstance(sock, ssl.SSLSocket) else None
        deadline = time.monotonic() + self.settings.connect_timeout_s
        self._last_rx = time.monotonic()
        next_health = time.monotonic() + 1.0
        while not self._stop.is_set() and not self._session_over:
            self._loop_turns += 1
            now = time.monotonic()
            if not self._connected and now > deadline:
                self._connect_failed(f"broker {self._where} accepted TCP but sent no CONNACK"
                                     " in time")
                return
            timeout = min(1.0, self.settings.keepalive_s / 4)
            if self._connected:
                if self._health_doc is not None:
                    timeout = min(timeout, max(0.0, next_health - now))
                if self._held:
                    first = min(h.until for h in self._held.values())
                    timeout = min(timeout, max(0.0, first - now))
            wlist = [sock] if client.want_write() else []
            try:
                readable, writable, _ = select.select([sock, self._wake_r], wlist, [], timeout)
            except (OSError, ValueError):
                return  # socket closed under us: paho already reported the disconnect
            if self._wake_r in readable:
                self._drain_wake()
                self._dirty = True
            if sock in readable:
                self._last_rx = time.monotonic()
                client.loop_read()
                # TLS may hold decrypted bytes that select() cannot see.
                if tls_sock is not None:
                    while tls_sock.pending() and not self._session_over \
                            and client.socket() is tls_sock:
                        client.loop_read()
            if writable and client.socket() is sock:
                client.loop_write()
            client.loop_misc()
            self._handle_acks()
            if self._session_over or client.socket() is None:
                return
            if self._connected:
                self._check_silence()
                self._release_due()
                self._publish_ready(client)
                if self._health_doc is not None and time.monotonic() >= next_health:
                    self._publish_health(client)
                    next_health = time.monotonic() + self._health_interval
        if self._stop.is_set() and self._connected:
            self._goodbye(client, sock)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _check_silence(self) -> None:
        """Declare the link dead when the broker has gone quiet or sits on a PUBACK.

        paho's keepalive alone takes up to two keepalive periods to notice a
        black-holed (half-open) link. paho sends PINGREQ once nothing has been
        received for a keepalive period, and a live broker answers at once; so
        nothing at all received for 1.5 x keepalive means the link is dead. A
        broker that answers pings but sits on a PUBACK for a minute is stuck:
        reconnecting makes it (or its replacement in a cluster) take the message
        again.
        """
        keepalive = self.settings.keepalive_s
        now = time.monotonic()
        silent = now - self._last_rx
        # loop_misc runs at least every keepalive/4, so the ping goes out within
        # that of the keepalive; allow its answer the rest of the half period.
        if silent > max(1.5 * keepalive, keepalive + 1.0):
            reason = f"silent for {silent:.1f} s (keepalive {keepalive} s)"
        elif self._inflight and now - min(f.sent_mono for f in self._inflight.values()) \
                > max(6.0 * keepalive, 60.0):
            oldest = now - min(f.sent_mono for f in self._inflight.values())
            reason = f"has not acknowledged a message for {oldest:.0f} s"
        else:
            return
        msg = (f"broker {self._where} {reason} with {len(self._inflight)} messages awaiting"
               " PUBACK; reconnecting")
        log.warning("uplink: %s", msg)
        self._set(last_error=msg)
        self._session_over = True

    def _end_session(self) -> None:
        client = self._client
        self._client = None
        if client is not None:
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        was_connected = self._connected
        self._connected = False
        # Whatever paho held for this connection is forgotten with it; the rows
        # are still on disk and go back to READY.
        if self._inflight:
            # A refused row keeps its count of refusals through the reconnect.
            self._tries.update({f.row.rowid: f.tries for f in self._inflight.values()
                                if f.tries is not None})
            try:
                self.outbox.release([f.row.rowid for f in self._inflight.values()])
            except Exception:
                log.exception("uplink: could not requeue in-flight rows (they return to"
                              " ready at the next start)")
            self._inflight.clear()
        self._acks.clear()
        if was_connected:
            self._set(connected=False, since=utc_iso(time.time_ns()))

    def _goodbye(self, client: mqtt.Client, sock: Any) -> None:
        """Publish 'offline' (a clean DISCONNECT suppresses the Will) and disconnect."""
        try:
            info = client.publish(self.topics.status,
                                  encode(self._status_doc("offline", reason="shutdown")),
                                  qos=1, retain=True, properties=_json_props())
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline \
                    and client.socket() is not None:
                wl = [sock] if client.want_write() else []
                r, w, _ = select.select([sock], wl, [], 0.1)
                if r:
                    client.loop_read()
                if w:
                    client.loop_write()
            client.disconnect()
            if client.want_write() and client.socket() is not None:
                client.loop_write()
        except Exception:
            log.debug("uplink: goodbye to %s failed", self._where, exc_info=True)

    # -- paho callbacks (run in this thread, inside loop_read/loop_misc) ---

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            self._connect_failed(f"broker {self._where} refused the connection: {reason_code};"
                                 " check broker.username/password, the client certificate and"
                                 " the broker's ACL", logging.ERROR)
            self._session_over = True
            return
        rmax = getattr(properties, "ReceiveMaximum", None) if properties else None
        self._server_receive_max = int(rmax) if rmax else 65535
        self._connected = True
        self._dirty = True
        sock = client.socket()
        peer = None
        if isinstance(sock, ssl.SSLSocket):
            cert = sock.getpeercert() or {}
            subject = {str(rdn[0][0]): str(rdn[0][1]) for rdn in cert.get("subject", ()) if rdn}
            peer = {"version": sock.version(), "cipher": (sock.cipher() or ("",))[0],
                    "subject": subject.get("commonName")}
        with self._lock:
            self._state.update(connected=True, since=utc_iso(time.time_ns()), last_error=None,
                               tls_peer=peer)
            self._state["connects"] += 1
        self._changed()
        self._connect_log.resolved(f"uplink: broker {self._where} reachable again")
        log.info("uplink: connected to broker %s%s (receive maximum %d)", self._where,
                 f" over {peer['version']}" if peer else "", self._server_receive_max)
        client.publish(self.topics.status, encode(self._status_doc("online")), qos=1,
                       retain=True, properties=_json_props())
        if self._on_command_cb is not None:
            client.subscribe(self.topics.cmd, qos=1)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        if self._stop.is_set() or self._session_over:
            self._session_over = True
            return
        if not self._connected:
            msg = f"broker {self._where} closed the connection before CONNACK ({reason_code})"
            tls = self.settings.tls
            if tls is not None and tls.cert is None:
                msg += ("; it may require a client certificate and none was sent: set"
                        " broker.tls.cert and broker.tls.key")
            elif tls is not None:
                msg += ("; it probably refused this gateway's client certificate: check"
                        " broker.tls.cert and broker.tls.key and that the platform's CA"
                        " signed them")
            else:
                msg += "; check the broker's log and that this port is its MQTT listener"
            self._connect_failed(msg)
            self._session_over = True
            return
        msg = f"lost connection to broker {self._where}: {reason_code}"
        log.warning("uplink: %s; %d messages were in flight and will be re-sent", msg,
                    len(self._inflight))
        self._set(last_error=msg)
        self._session_over = True

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._last_rx = time.monotonic()
        if msg.topic == self.topics.cmd and self._on_command_cb is not None:
            try:
                self._on_command_cb(bytes(msg.payload))
            except Exception:
                log.exception("uplink: command hand-off failed")
        else:
            log.warning("uplink: message on unexpected topic %s ignored", msg.topic)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int,
                    reason_code: ReasonCode, properties: Properties) -> None:
        self._acks.append((mid, reason_code))

    # -- outbox <-> broker ------------------------------------------------

    def _handle_acks(self) -> None:
        if not self._acks:
            return
        acks, self._acks = self._acks, []
        done: list[int] = []
        done_rows: list[Row] = []
        refused: list[tuple[_InFlight, ReasonCode]] = []
        unsubscribed: list[tuple[_InFlight, ReasonCode]] = []
        alarm_taken: Row | None = None
        """The last alarm-lane row that got a plain success (someone subscribed)."""
        timing: list[tuple[int, float]] = []
        for mid, rc in acks:
            flight = self._inflight.pop(mid, None)
            if flight is None:
                continue  # the status message, or a PUBACK from an abandoned attempt
            timing.append((len(flight.row.payload), flight.sent_mono))
            if rc.is_failure:
                refused.append((flight, rc))
            elif rc.value == NO_MATCHING_SUBSCRIBERS and flight.row.lane == Lane.ALARM:
                # The broker dropped it: an alarm nobody saw is not delivered.
                unsubscribed.append((flight, rc))
                alarm_taken = None
            else:
                # Elsewhere 0x10 counts as delivered: the broker has it.
                done.append(flight.row.rowid)
                done_rows.append(flight.row)
                if flight.row.lane == Lane.ALARM:
                    alarm_taken = flight.row
        self.link_rate.acked(time.monotonic(), timing)
        if done:
            # Under the condition's lock: whoever waits for "drained" sees the PUBACKs
            # recorded and their hooks (drill timelines, escalation) run, never between.
            with self._progress:
                self.outbox.ack(done)
                self._delivered("puback", done_rows)
                self._progress.notify_all()
            with self._lock:
                self._state["acked"] += len(done)
                self._state["last_puback_at"] = utc_iso(time.time_ns())
            self._changed()
            self._dirty = True
        if refused:
            self._refused(refused)
        if unsubscribed:
            self._unsubscribed(unsubscribed)
        if alarm_taken is not None:
            self._platform_back(alarm_taken)

    def _hold(self, flight: _InFlight, why: str, rc: ReasonCode) -> float:
        """Hold a row answered negatively until its retry; returns the hold-off in seconds."""
        row = flight.row
        n = flight.tries.n + 1 if flight.tries is not None and flight.tries.why == why else 1
        base, cap = REFUSED_BACKOFF_S if why == "refused" else UNSUBSCRIBED_BACKOFF_S
        delay = min(base * 2.0 ** (n - 1), cap)
        self._held[row.rowid] = _Held(row, time.monotonic() + delay, _Tries(why, n), str(rc))
        return delay

    def _refused(self, refused: list[tuple[_InFlight, ReasonCode]]) -> None:
        delays = [self._hold(flight, "refused", rc) for flight, rc in refused]
        flight, rc = refused[0]
        row = flight.row
        msg = (f"broker {self._where} refused {len(refused)} message(s), e.g. seq {row.seq}"
               f" on {self.topics.full(row.topic)}: {rc}; check the broker's ACL for this"
               f" gateway; retrying in {delays[0]:.0f} s (only those: the others go on)")
        self._refused_log.problem(f"uplink: broker {self._where} refuses messages on"
                                  f" {self.topics.full(row.topic)}: {rc}; check the broker's ACL"
                                  " for this gateway; they are kept and retried, up to every"
                                  f" {REFUSED_BACKOFF_S[1]:.0f} s", logging.ERROR)
        with self._lock:
            self._state["refused"] += len(refused)
            self._state["last_error"] = msg
        self._show_held()

    def _unsubscribed(self, rows: list[tuple[_InFlight, ReasonCode]]) -> None:
        for flight, rc in rows:
            self._hold(flight, "unsubscribed", rc)
        row = rows[-1][0].row
        topic = self.topics.full(row.topic)
        msg = (f"broker {self._where} has no subscriber for {topic}: it dropped alarm seq"
               f" {row.seq} (PUBACK 0x10); the alarm is kept and sent again, up to every"
               f" {UNSUBSCRIBED_BACKOFF_S[1]:.0f} s, until a platform takes it")
        self._unsubscribed_log.problem(f"uplink: {NO_PLATFORM}: broker {self._where} has no"
                                       f" subscriber for {topic}; alarms are kept and sent"
                                       " again until a platform takes one", logging.ERROR)
        with self._lock:
            self._state["unsubscribed"] += len(rows)
            self._state["last_error"] = msg
        self._show_held()
        if self._platform_fault is not True:
            self._platform_fault = True
            self._fault(True, (
                f"{NO_PLATFORM}: the broker {self._where} has no subscriber for {topic}"
                f" (PUBACK 0x10 No matching subscribers) and dropped alarm seq {row.seq};"
                " the gateway keeps its alarms and sends them again, up to every"
                f" {UNSUBSCRIBED_BACKOFF_S[1]:.0f} s, until a platform takes one; check that"
                " the platform's consumers are running and subscribe with a persistent session"
                " (clean start off, a session expiry) or a shared subscription that always"
                " has a member"),
                {"fault": "no_subscribers", "topic": topic, "for_seq": row.seq,
                 "for_event": row.event_id})

    def _platform_back(self, row: Row) -> None:
        """An alarm-lane row got a plain success: a platform is subscribed."""
        # Alarms held for want of a subscriber need not wait for their backoff.
        waiting = [rowid for rowid, h in self._held.items() if h.tries.why == "unsubscribed"]
        if waiting:
            self._release_held(waiting)
        if self._platform_fault is not False:
            # Also when not known (None): a fault open before a restart clears now.
            was_open = self._platform_fault is True
            self._platform_fault = False
            if was_open:
                self._unsubscribed_log.resolved(f"uplink: a platform subscribed to"
                                                f" {self.topics.full(row.topic)} again")
            self._fault(False, "", {"cleared": f"the broker delivered alarm seq {row.seq} to a"
                                               " subscriber"})

    def _fault(self, active: bool, reason: str, detail: dict[str, Any]) -> None:
        if self._on_fault is None:
            return
        try:
            self._on_fault(FaultChange(PLATFORM_FAULT_ID, "police platform",
                                       f"mqtt:{self._where}", active, reason, mono_ns(),
                                       detail=detail))
        except Exception:
            log.exception("uplink: fault hook failed")

    def _release_due(self) -> None:
        """Rows whose hold has ended go back to READY, to be taken in lane order."""
        if not self._held:
            return
        now = time.monotonic()
        due = [rowid for rowid, h in self._held.items() if h.until <= now]
        if due:
            self._release_held(due)

    def _release_held(self, rowids: list[int]) -> None:
        if not rowids:
            return
        for rowid in rowids:
            self._tries[rowid] = self._held.pop(rowid).tries
        try:
            self.outbox.release(rowids)
        except Exception:
            log.exception("uplink: could not requeue held rows (they return to ready at the"
                          " next start)")
        self._dirty = True
        self._show_held()

    def _show_held(self) -> None:
        held = [{"seq": h.row.seq, "topic": h.row.topic, "lane": h.row.lane.name.lower(),
                 "reason": h.tries.why, "code": h.code, "tries": h.tries.n, "until": h.until}
                for h in sorted(self._held.values(), key=lambda h: (h.row.lane, h.row.rowid))]
        self._set(held=held)

    def _window(self) -> int:
        return max(1, min(self.settings.window, self._server_receive_max - 1))

    def _publish_ready(self, client: mqtt.Client) -> None:
        if not self._dirty:
            return
        window = self._window()
        # Lower lanes may fill the window only up to a reserve kept for alarms.
        reserve = max(1, window // 4) if window > 1 else 0
        free = window - len(self._inflight)
        if free <= 0:
            self._dirty = False
            return
        # Alarms first, and out on the wire before the lower lanes are even looked at.
        alarms = self.outbox.take(free, max_lane=Lane.ALARM)
        exhausted = len(alarms) < free
        if alarms and not self._publish_rows(client, alarms):
            return
        free_low = window - reserve - len(self._inflight)
        if free_low > 0:
            events = self.outbox.take(free_low, max_lane=Lane.EVENT)
            free_bulk = free_low - len(events)
            bulk = self._take_bulk(free_bulk) if free_bulk > 0 else []
            exhausted = exhausted and len(events) < free_low and len(bulk) < free_bulk
            rest = events + bulk
            if rest and not self._publish_rows(client, rest):
                return
        # If the outbox gave us all we asked for there may be more: stay dirty.
        self._dirty = not exhausted

    def _publish_rows(self, client: mqtt.Client, rows: list[Row]) -> bool:
        """Publish rows taken from the outbox; False if the connection failed meanwhile."""
        now = time.monotonic()
        published = 0
        ok = True
        for i, row in enumerate(rows):
            props = Properties(PacketTypes.PUBLISH)
            if row.properties:
                for key, value in row.properties.items():
                    if key == "UserProperty":
                        props.UserProperty = [(str(p[0]), str(p[1])) for p in value]
                    else:
                        setattr(props, key, value)
            else:
                props.ContentType = "application/json"
                props.PayloadFormatIndicator = 1
            info = client.publish(self.topics.full(row.topic), row.payload, qos=1,
                                  properties=props)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # Not sent (connection dropped meanwhile): back to READY with the rest.
                self.outbox.release([r.rowid for r in rows[i:]])
                ok = False
                break
            self._inflight[info.mid] = _InFlight(row, now, self._tries.pop(row.rowid, None))
            published += 1
        if published:
            self._delivered("published", rows[:published])
        with self._lock:
            self._state["published"] += published
        return ok

    def _delivered(self, step: str, rows: list[Row]) -> None:
        if self._on_delivery is None:
            return
        try:
            self._on_delivery(step, rows)
        except Exception:
            log.exception("uplink: delivery hook failed")

    def _take_bulk(self, limit: int) -> list[Row]:
        """Bulk rows (snapshots) up to `limit`, while their bytes in flight stay under
        what the link carries in BULK_AHEAD_S (at most BULK_BYTES_IN_FLIGHT, at least one
        row). A TCP stream has no overtaking: an alarm published now waits behind every
        byte already handed to the socket, so snapshots are let onto it a little at a
        time. A PUBACK makes room for the next ones."""
        in_flight = sum(len(f.row.payload) for f in self._inflight.values()
                        if f.row.lane == Lane.BULK)
        cap = self.link_rate.bulk_cap()
        rows: list[Row] = []
        while len(rows) < limit and (in_flight == 0 or in_flight < cap):
            got = self.outbox.take(1)
            if not got:
                break
            rows.extend(got)
            if got[0].lane == Lane.BULK:
                in_flight += len(got[0].payload)
        return rows

    def _publish_health(self, client: mqtt.Client) -> None:
        assert self._health_doc is not None
        try:
            doc = self._health_doc()
        except Exception:
            log.exception("uplink: could not build the health document")
            return
        client.publish(self.topics.health, encode(doc), qos=0, properties=_json_props())


def _json_props() -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.PayloadFormatIndicator = 1
    return props

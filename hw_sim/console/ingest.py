"""Ingest workers: consume protocol v1 from the broker and write the console's record.

One `IngestWorker` is one MQTT 5 client with a persistent session (clean start off,
session expiry one hour) and a fixed client id. With a share group it subscribes to
`$share/GROUP/alarmgw/v1/+/+/{event,health,snapshot/#,cmd/result}`, so that several
workers split the messages; the retained `status` topic is not delivered through shared
subscriptions, so every worker also subscribes to it directly (the writes are the same
whichever worker makes them).

A message is acknowledged to the broker (PUBACK) only once its write has committed, so
a worker killed at any moment loses nothing. What the broker does with a dead worker's
messages is in docs/console.md: Mosquitto 2 keeps them, and keeps giving the dead member
its share of new ones, in its session until a client with the same id comes back.
`WorkerPool` therefore restarts a worker that dies with the same client id.

    python -m hw_sim.console.ingest --port 1883 --db console.db --group console --id ingest-1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from hw_sim.console.record import Record
from hw_sim.lifeline import die_with_parent

log = logging.getLogger(__name__)

TOPIC_ROOT = "alarmgw/v1/+/+"
#: How long a worker's session outlives it at the broker, in seconds.
SESSION_EXPIRY_S = 3600
#: Larger snapshot payloads are refused (a camera's JPEG is far smaller), in bytes.
MAX_PICTURE_BYTES = 8 * 1024 * 1024
#: Larger JSON documents are refused, in bytes.
MAX_DOC_BYTES = 256 * 1024
#: The line a worker process prints once it is subscribed (its readiness signal).
READY_LINE = "ingest: subscribed"


class IngestWorker:
    """One consumer writing into the record. `start()` returns once subscribed."""

    def __init__(self, host: str, port: int, record: Record, *, client_id: str,
                 share_group: str | None = None, tls_ca: Path | None = None,
                 tls_cert: Path | None = None, tls_key: Path | None = None) -> None:
        self.record = record
        self.client_id = client_id
        self.share_group = share_group
        self.host, self.port = host, port
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=mqtt.MQTTv5, manual_ack=True)
        if tls_ca is not None:
            self._client.tls_set(ca_certs=str(tls_ca),
                                 certfile=str(tls_cert) if tls_cert else None,
                                 keyfile=str(tls_key) if tls_key else None)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 2)

    def start(self, wait_s: float = 10.0) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(self.host, self.port, keepalive=10, clean_start=False,
                                   properties=props)
        self._client.loop_start()
        if not self._subscribed.wait(wait_s):
            self.stop()
            raise TimeoutError(f"console ingest {self.client_id}: not subscribed to"
                               f" {self.host}:{self.port} within {wait_s} s")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        # paho keeps its wake-up socket pair until garbage collection: close it now.
        self._client._reset_sockets()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None) -> None:
        if rc.is_failure:
            log.error("console ingest %s: the broker refused: %s", self.client_id, rc)
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opts = SubscribeOptions(qos=1)
        share = f"$share/{self.share_group}/" if self.share_group else ""
        topics = [(f"{share}{TOPIC_ROOT}/{s}", opts)
                  for s in ("event", "health", "snapshot/#", "cmd/result")]
        topics.append((f"{TOPIC_ROOT}/status", opts))
        client.subscribe(topics)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      rcs: list[ReasonCode], props: Properties | None) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed:
            log.error("console ingest %s: subscription refused: %s", self.client_id, failed)
            return
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.handle(msg.topic, bytes(msg.payload),
                        msg.properties.json() if msg.properties is not None else {},
                        redelivered=bool(msg.dup))
        except Exception:
            # Not acknowledged: the broker sends it again after the next reconnect.
            log.exception("console ingest %s: cannot record the message on %s; it stays"
                          " unacknowledged", self.client_id, msg.topic)
            return
        if msg.qos > 0:
            client.ack(msg.mid, msg.qos)

    def handle(self, topic: str, payload: bytes, props: dict[str, Any], *,
               redelivered: bool = False) -> None:
        """Record one message (raises only when the record cannot be written)."""
        parts = topic.split("/")
        if len(parts) < 5 or parts[0] != "alarmgw" or parts[1] != "v1":
            self.record.reject(topic, "not a protocol v1 topic")
            return
        gateway, kind = f"{parts[2]}/{parts[3]}", parts[4]
        if kind == "snapshot":
            self._snapshot(topic, parts, gateway, payload, props)
            return
        if len(payload) > MAX_DOC_BYTES:
            self.record.reject(topic, f"document of {len(payload)} bytes refused")
            return
        try:
            doc = json.loads(payload)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            self.record.reject(topic, f"not JSON: {exc}")
            return
        if kind == "event":
            if not isinstance(doc.get("id"), str) or not 0 < len(doc["id"]) <= 128 \
                    or not isinstance(doc.get("seq"), int) or not isinstance(doc.get("type"), str):
                self.record.reject(topic, "event without a string id, an integer seq and a type")
                return
            new = self.record.add_event(gateway, doc, self.client_id)
            self.record.count_delivery(self.client_id, redelivered=redelivered,
                                       duplicate=not new)
        elif kind == "status":
            self.record.set_status(gateway, doc)
        elif kind == "health":
            self.record.set_health(gateway, doc)
        elif kind == "cmd" and len(parts) > 5 and parts[5] == "result":
            self.record.add_result(doc)

    def _snapshot(self, topic: str, parts: list[str], gateway: str, payload: bytes,
                  props: dict[str, Any]) -> None:
        if len(parts) < 7 or len(payload) > MAX_PICTURE_BYTES:
            self.record.reject(topic, "snapshot without event id and camera, or too large")
            return
        event_id, camera = parts[5], parts[6]
        if len(parts) > 7 and parts[7] == "failed":
            try:
                doc = json.loads(payload)
                phase, shot = str(doc["phase"]), int(doc["shot"])
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                self.record.reject(topic, f"snapshot_failed record unreadable: {exc}")
                return
            self.record.add_picture(gateway, event_id, camera, phase, shot, failure=doc)
            return
        user = {str(k): str(v) for k, v in props.get("UserProperty", [])}
        try:
            phase, shot = user["phase"], int(user["shot"])
        except (KeyError, ValueError) as exc:
            self.record.reject(topic, f"snapshot without phase/shot properties: {exc}")
            return
        self.record.add_picture(gateway, event_id, camera, phase, shot, jpeg=payload,
                                user=user)


class WorkerPool:
    """N ingest worker processes on one share group; a worker that dies is started again
    with the same client id, so its session (and what the broker kept in it) is picked up."""

    def __init__(self, host: str, port: int, db: Path, *, workers: int, group: str,
                 id_prefix: str = "alarmgw-console-ingest") -> None:
        self.host, self.port, self.db, self.group = host, port, db, group
        self.ids = [f"{id_prefix}-{group}-{i + 1}" for i in range(workers)]
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self._watchers: list[threading.Thread] = []
        self._lock = threading.Condition()
        self._stopping = False
        self.restarts = 0

    def _spawn(self, client_id: str, wait_s: float = 20.0) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hw_sim.console.ingest", "--host", self.host, "--port",
             str(self.port), "--db", str(self.db), "--group", self.group, "--id", client_id],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=die_with_parent)  # noqa: PLW1509 (hw_sim.lifeline)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the worker's readiness line (or EOF if it died)
        if not line.startswith(READY_LINE):
            proc.kill()
            proc.wait()
            proc.stdout.close()
            raise RuntimeError(f"console ingest {client_id} did not start (exit"
                               f" {proc.returncode}); see its log above")
        return proc

    def start(self) -> WorkerPool:
        for cid in self.ids:
            self._procs[cid] = self._spawn(cid)
        for cid in self.ids:
            t = threading.Thread(target=self._watch, args=(cid,), name=f"pool-{cid}")
            t.start()
            self._watchers.append(t)
        return self

    def pid(self, index: int) -> int:
        with self._lock:
            return self._procs[self.ids[index]].pid

    def _watch(self, cid: str) -> None:
        while True:
            with self._lock:
                proc = self._procs[cid]
            assert proc.stdout is not None
            _drain(proc.stdout)
            proc.wait()
            proc.stdout.close()
            with self._lock:
                if self._stopping:
                    return
            log.warning("console ingest %s exited with %s; starting it again with the same"
                        " client id to take up its session", cid, proc.returncode)
            try:
                new = self._spawn(cid)
            except RuntimeError:
                log.exception("console ingest %s: restart failed", cid)
                return
            with self._lock:
                self._procs[cid] = new
                self.restarts += 1
                if self._stopping:
                    new.terminate()
                self._lock.notify_all()

    def wait_restarts(self, n: int, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self.restarts >= n, timeout)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            procs = list(self._procs.values())
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for t in self._watchers:
            t.join()
        self._watchers.clear()


def _drain(stream: IO[str]) -> None:
    for line in stream:
        print(line, end="", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hw_sim.console.ingest", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--db", type=Path, required=True, help="the console's record (SQLite)")
    ap.add_argument("--group", help="consume via $share/GROUP/...")
    ap.add_argument("--id", required=True, help="the client id: keep it across restarts")
    ap.add_argument("--ca", type=Path, help="CA file: connect with TLS")
    ap.add_argument("--cert", type=Path)
    ap.add_argument("--key", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with Record(args.db) as record:
        worker = IngestWorker(args.host, args.port, record, client_id=args.id,
                              share_group=args.group, tls_ca=args.ca, tls_cert=args.cert,
                              tls_key=args.key)
        worker.start()
        print(f"{READY_LINE} as {args.id}", flush=True)
        done.wait()
        worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

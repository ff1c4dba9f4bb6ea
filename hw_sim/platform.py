"""The reference platform console: what a police platform does with protocol v1.

It subscribes to gateways' topics (optionally through an MQTT 5 shared
subscription, as a scaled-out platform would), de-duplicates events by
`id` (delivery is at least once), orders them by `seq` per gateway, and
reports seq gaps that stay open. It prints every event as it arrives and
can write everything it received as JSON lines, for tests and for drills'
records.

    python -m hw_sim.platform --port 1883 [--share GROUP] [--jsonl FILE]

Snapshots (`snapshot/{event_id}/{camera}`, binary JPEG) are kept in memory
with their MQTT 5 user properties, de-duplicated by event, camera, phase and
shot, and saved as files under `--snapshot-dir` when given; a
`snapshot_failed` record (`.../failed`) is kept beside them.

    python -m hw_sim.platform --port 1883 --snapshot-dir snapshots/

With `--web HOST:PORT` it serves the duty officer's web console instead
(hw_sim/console, docs/console.md): live alarms with their pictures,
acknowledgement, drills, each gateway's presence and health. Loopback only
unless `--web-allow-remote` (which then requires a password).

    python -m hw_sim.platform --port 1883 --web 127.0.0.1:8080 --command-key KEYFILE

It keeps a persistent session (clean_start false, one hour expiry), so a
broker that keeps sessions queues events while the console is away.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger(__name__)

TOPIC_ROOT = "alarmgw/v1/+/+"


@dataclass
class Received:
    """One MQTT message as the console received it."""

    topic: str
    payload: bytes
    properties: dict[str, Any]
    arrived_mono: float
    arrived_wall: float


@dataclass
class Snapshot:
    """One JPEG from a gateway's camera, as the platform received it."""

    gateway: str
    """site/gateway."""
    event_id: str
    camera: str
    phase: str
    """'pre' (taken before the alarm) or 'post'."""
    shot: int
    jpeg: bytes
    content_type: str | None
    user: dict[str, str]
    """The MQTT 5 user properties."""
    arrived_mono: float
    path: Path | None = None
    """Where it was saved, with a snapshot directory."""


@dataclass
class GatewayRecord:
    """What the console knows of one gateway's event sequence."""

    seqs: set[int] = field(default_factory=set)

    def gaps(self) -> list[int]:
        if not self.seqs:
            return []
        lo, hi = min(self.seqs), max(self.seqs)
        return [s for s in range(lo, hi + 1) if s not in self.seqs]


class PlatformConsole:
    """Subscribe, de-duplicate, order, report. Thread-safe readers; waits on a Condition."""

    def __init__(self, host: str, port: int, *, share_group: str | None = None,
                 client_id: str = "alarmgw-platform-console", jsonl: Path | None = None,
                 out: TextIO | None = None, tls_ca: Path | None = None,
                 tls_cert: Path | None = None, tls_key: Path | None = None,
                 persistent: bool = True, command_key: bytes | None = None,
                 auto_ack_s: float | None = None, operator: str = "console",
                 snapshot_dir: Path | None = None,
                 answer: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """`share_group`: consume through `$share/GROUP/...`; `jsonl`: append every
        received message there; `out`: print a line per event there (None: silent);
        `command_key`: the gateways' command key, for signed commands; `auto_ack_s`:
        acknowledge every alarm this many seconds after it arrives (None: never);
        `answer`: with `auto_ack_s`, called with each new alarm or drill (on the MQTT
        thread, with the console's lock held); False leaves it unacknowledged, as an
        operator who does not answer would (None: every one is acknowledged);
        `snapshot_dir`: save every snapshot there as
        `{site}/{gateway}/{event_id}/{camera}-{phase}-{shot}.jpg`."""
        self.host = host
        self.port = port
        self.share_group = share_group
        self.jsonl = jsonl
        self.out = out
        self._cond = threading.Condition()
        self.events: list[dict[str, Any]] = []
        """Unique events in arrival order."""
        self.ids: set[str] = set()
        self.duplicates = 0
        self.reacks = 0
        """Acknowledgements sent again for alarms received again (auto-ack only)."""
        self.raw: list[Received] = []
        self.status: dict[str, dict[str, Any]] = {}
        self.health: list[dict[str, Any]] = []
        self.gateways: dict[str, GatewayRecord] = {}
        self.invalid: list[tuple[str, str]] = []
        self.results: dict[str, dict[str, Any]] = {}
        """Command results by command id."""
        self.acks_sent: dict[str, tuple[str, float]] = {}
        """event id -> (ack command id, monotonic time sent)."""
        self.answer = answer
        self.unanswered: list[str] = []
        """Ids of the alarms and drills `answer` left unacknowledged, in arrival order."""
        self.command_key = command_key
        self.auto_ack_s = auto_ack_s
        self.operator = operator
        self._timers: list[threading.Timer] = []
        self.snapshot_dir = snapshot_dir
        self.snapshots: list[Snapshot] = []
        """Unique snapshots in arrival order."""
        self.snapshot_failures: list[dict[str, Any]] = []
        """Unique `snapshot_failed` records in arrival order."""
        self._snapshot_keys: set[tuple[str, str, str, str, int, bool]] = set()
        self.connected = threading.Event()
        self._subscribed = threading.Event()
        self._jsonl_file: TextIO | None = None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=mqtt.MQTTv5)
        self._persistent = persistent
        if tls_ca is not None:
            self._client.tls_set(ca_certs=str(tls_ca),
                                 certfile=str(tls_cert) if tls_cert else None,
                                 keyfile=str(tls_key) if tls_key else None)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 2)

    # -- lifecycle --------------------------------------------------------

    def start(self, wait_s: float = 10.0) -> None:
        """Connect and subscribe; returns once subscribed (raises TimeoutError otherwise)."""
        if self.jsonl is not None:
            self._jsonl_file = self.jsonl.open("a", encoding="utf-8")
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if self._persistent else 0
        self._client.connect_async(self.host, self.port, keepalive=10,
                                   clean_start=not self._persistent, properties=props)
        self._client.loop_start()
        if not self._subscribed.wait(wait_s):
            self.stop()
            raise TimeoutError(f"platform console: not subscribed to {self.host}:{self.port}"
                               f" within {wait_s} s")

    def stop(self) -> None:
        for t in self._timers:
            t.cancel()
            t.join()
        self._timers.clear()
        self._client.disconnect()
        self._client.loop_stop()
        # paho keeps its wake-up socket pair until the client is garbage-collected;
        # close it now so a stopped console holds no sockets.
        self._client._reset_sockets()
        if self._jsonl_file is not None:
            self._jsonl_file.close()
            self._jsonl_file = None

    def __enter__(self) -> PlatformConsole:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- callbacks (paho's thread) ----------------------------------------

    def _topic(self, suffix: str) -> str:
        t = f"{TOPIC_ROOT}/{suffix}"
        return f"$share/{self.share_group}/{t}" if self.share_group else t

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None) -> None:
        if rc.is_failure:
            log.error("platform console: broker refused: %s", rc)
            return
        self.connected.set()
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opts = SubscribeOptions(qos=1)
        client.subscribe([(self._topic(s), opts) for s in
                          ("event", "status", "health", "snapshot/#", "cmd/result")])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      rcs: list[ReasonCode], props: Properties | None) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed:
            log.error("platform console: subscription refused: %s", failed)
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Properties | None) -> None:
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._receive(msg)
        except Exception:
            log.exception("platform console: cannot handle message on %s", msg.topic)

    def _receive(self, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties.json() if msg.properties is not None else {}
        rec = Received(msg.topic, bytes(msg.payload), props, time.monotonic(), time.time())
        parts = msg.topic.split("/")
        kind = parts[4] if len(parts) > 4 else ""
        line: str | None = None
        save: Snapshot | None = None
        with self._cond:
            self.raw.append(rec)
            if kind == "event":
                try:
                    doc = json.loads(rec.payload)
                    event_id = doc["id"]
                    seq = int(doc["seq"])
                except (ValueError, KeyError, TypeError) as exc:
                    self.invalid.append((msg.topic, f"{exc}"))
                    self._cond.notify_all()
                    return
                if event_id in self.ids:
                    self.duplicates += 1
                    # Re-sent after a restart: the first acknowledgement may never have
                    # reached the gateway (it was down), so acknowledge it again.
                    if self.auto_ack_s is not None and event_id in self.acks_sent \
                            and doc.get("type") in ("alarm", "drill"):
                        self.reacks += 1
                        self.ack(parts[2], parts[3], event_id)
                else:
                    self.ids.add(event_id)
                    self.events.append(doc)
                    gw = f"{parts[2]}/{parts[3]}"
                    self.gateways.setdefault(gw, GatewayRecord()).seqs.add(seq)
                    line = _format_event(doc, rec.arrived_wall)
                    if self.auto_ack_s is not None and doc.get("type") in ("alarm", "drill"):
                        if self.answer is None or self.answer(doc):
                            self._schedule_ack(parts[2], parts[3], event_id)
                        else:
                            self.unanswered.append(event_id)
            elif kind == "snapshot":
                save, line = self._snapshot(parts, rec)
            elif kind == "status":
                try:
                    self.status[f"{parts[2]}/{parts[3]}"] = json.loads(rec.payload)
                except ValueError as exc:
                    self.invalid.append((msg.topic, f"{exc}"))
            elif kind == "cmd" and len(parts) > 5 and parts[5] == "result":
                try:
                    res = json.loads(rec.payload)
                    self.results[str(res.get("id"))] = res
                    if res.get("op") == "ack" and res.get("ok"):
                        sent = self.acks_sent.get(res.get("result", {}).get("event_id", ""))
                        if sent is not None:
                            line = (f"{time.strftime('%H:%M:%S')}  ACKNOWLEDGED"
                                    f"   {parts[2]}/{parts[3]} seq {res['result'].get('seq')}"
                                    f" by {res['result'].get('operator')}: "
                                    + _lamp_text(res["result"])
                                    + f", round trip {(rec.arrived_mono - sent[1]) * 1000:.0f}"
                                    " ms")
                except (ValueError, AttributeError) as exc:
                    self.invalid.append((msg.topic, f"{exc}"))
            elif kind == "health":
                try:
                    self.health.append(json.loads(rec.payload))
                except ValueError as exc:
                    self.invalid.append((msg.topic, f"{exc}"))
            if save is not None and self.snapshot_dir is not None:
                save.path = (self.snapshot_dir / parts[2] / parts[3] / save.event_id
                             / f"{save.camera}-{save.phase}-{save.shot}.jpg")
            self._cond.notify_all()
        if save is not None and save.path is not None:
            save.path.parent.mkdir(parents=True, exist_ok=True)
            save.path.write_bytes(save.jpeg)
            line = f"{line} -> {save.path}"
        if self._jsonl_file is not None:
            self._jsonl_file.write(json.dumps({
                "topic": rec.topic, "arrived": rec.arrived_wall, "properties": props,
                "payload": _jsonable(rec.payload)}, ensure_ascii=False) + "\n")
            self._jsonl_file.flush()
        if line is not None and self.out is not None:
            print(line, file=self.out, flush=True)

    # -- commands -----------------------------------------------------------

    def send_command(self, site: str, gateway: str, op: str, args: dict[str, Any] | None = None,
                     *, cmd_id: str | None = None, issued_at: str | None = None,
                     sign_it: bool = True) -> str:
        """Publish a (signed) command to a gateway; returns its id. Results land in
        `self.results[id]`."""
        from gateway.uplink.commands import sign

        cid = cmd_id or f"c-{uuid.uuid4().hex[:16]}"
        doc: dict[str, Any] = {"v": 1, "id": cid, "op": op,
                               "issued_at": issued_at or _now_iso(), "args": args or {}}
        if sign_it:
            if self.command_key is None:
                raise ValueError("no command key: pass command_key= to sign commands")
            doc = sign(doc, self.command_key)
        payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        self._client.publish(f"alarmgw/v1/{site}/{gateway}/cmd", payload, qos=1)
        return cid

    def send_raw(self, site: str, gateway: str, payload: bytes) -> None:
        """Publish `payload` as it is on a gateway's cmd topic (malformed commands)."""
        self._client.publish(f"alarmgw/v1/{site}/{gateway}/cmd", payload, qos=1)

    def ack(self, site: str, gateway: str, event_id: str, note: str | None = None) -> str:
        args: dict[str, Any] = {"event_id": event_id, "operator": self.operator}
        if note:
            args["note"] = note
        cid = self.send_command(site, gateway, "ack", args)
        with self._cond:
            self.acks_sent[event_id] = (cid, time.monotonic())
        return cid

    def _schedule_ack(self, site: str, gateway: str, event_id: str) -> None:
        # Called with self._cond held, from paho's thread.
        delay = self.auto_ack_s or 0.0
        if delay <= 0:
            self.ack(site, gateway, event_id)  # the Condition's lock is reentrant
            return
        t = threading.Timer(delay, self.ack, args=(site, gateway, event_id))
        t.daemon = True
        self._timers = [x for x in self._timers if x.is_alive()]
        self._timers.append(t)
        t.start()

    def _snapshot(self, parts: list[str], rec: Received) -> tuple[Snapshot | None, str | None]:
        """Keep one snapshot or snapshot_failed record (called with the lock held)."""
        gw = f"{parts[2]}/{parts[3]}"
        if len(parts) < 7:
            self.invalid.append((rec.topic, "snapshot topic without event id and camera"))
            return None, None
        event_id, camera = parts[5], parts[6]
        failed = len(parts) > 7 and parts[7] == "failed"
        user = {str(k): str(v) for k, v in rec.properties.get("UserProperty", [])}
        if failed:
            try:
                doc = json.loads(rec.payload)
                phase, shot = str(doc["phase"]), int(doc["shot"])
            except (ValueError, KeyError, TypeError) as exc:
                self.invalid.append((rec.topic, f"{exc}"))
                return None, None
            key = (gw, event_id, camera, phase, shot, True)
            if key in self._snapshot_keys:
                return None, None
            self._snapshot_keys.add(key)
            self.snapshot_failures.append(doc)
            return None, (f"{time.strftime('%H:%M:%S')}  SNAPSHOT FAILED  {gw} event"
                          f" {event_id[:8]} {camera} {phase} {shot}: {doc.get('reason')}:"
                          f" {doc.get('error')}")
        try:
            phase, shot = user["phase"], int(user["shot"])
        except (KeyError, ValueError) as exc:
            self.invalid.append((rec.topic, f"snapshot without phase/shot properties: {exc}"))
            return None, None
        key = (gw, event_id, camera, phase, shot, False)
        if key in self._snapshot_keys:
            return None, None
        self._snapshot_keys.add(key)
        snap = Snapshot(gw, event_id, camera, phase, shot, rec.payload,
                        rec.properties.get("ContentType"), user, rec.arrived_mono)
        self.snapshots.append(snap)
        return snap, (f"{time.strftime('%H:%M:%S')}  SNAPSHOT        {gw} event {event_id[:8]}"
                      f" {camera} {phase} {shot}  {len(rec.payload) / 1024:.0f} KiB taken"
                      f" {user.get('taken_at', '?')}")

    # -- readers ----------------------------------------------------------

    def wait_for(self, predicate: Callable[[PlatformConsole], bool], timeout: float) -> bool:
        """Block until `predicate(self)` holds (checked on every message) or timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def events_of(self, etype: str | None = None, point: str | None = None
                  ) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events
                    if (etype is None or e.get("type") == etype)
                    and (point is None or e.get("point", {}).get("id") == point)]

    def ordered(self, gateway: str) -> list[dict[str, Any]]:
        """Unique events of `site/gateway` ordered by seq."""
        with self._cond:
            mine = [e for e in self.events if f"{e['site']}/{e['gateway']}" == gateway]
        return sorted(mine, key=lambda e: int(e["seq"]))

    def snapshots_of(self, event_id: str | None = None, camera: str | None = None
                     ) -> list[Snapshot]:
        with self._cond:
            return [s for s in self.snapshots
                    if (event_id is None or s.event_id == event_id)
                    and (camera is None or s.camera == camera)]

    def failures_of(self, event_id: str | None = None, camera: str | None = None
                    ) -> list[dict[str, Any]]:
        with self._cond:
            return [f for f in self.snapshot_failures
                    if (event_id is None or f.get("event_id") == event_id)
                    and (camera is None or f.get("camera") == camera)]

    def gaps(self) -> dict[str, list[int]]:
        with self._cond:
            return {gw: rec.gaps() for gw, rec in self.gateways.items() if rec.gaps()}


def _lamp_text(result: dict[str, Any]) -> str:
    lamp = result.get("lamp")
    if not lamp:
        return "no ack lamp configured"
    return f"ack lamp {lamp} {'ON' if result.get('lamp_on') else 'NOT confirmed on'}"


def _now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _jsonable(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return {"bytes": len(payload)}


def _format_event(doc: dict[str, Any], arrived_wall: float) -> str:
    point = doc.get("point", {})
    occurred = doc.get("occurred_at", "")
    try:
        t = datetime.strptime(occurred, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        latency = f"{(arrived_wall - t.timestamp()) * 1000:.0f} ms after it occurred"
    except ValueError:
        latency = ""
    clock = "" if doc.get("time_synced") else " (gateway clock NOT synced)"
    startup = " [active at gateway start]" if doc.get("detected_at_startup") else ""
    return (f"{time.strftime('%H:%M:%S')}  {str(doc.get('type', '?')).upper():<14}"
            f" {doc.get('site')}/{doc.get('gateway')} seq {doc.get('seq')}"
            f"  {point.get('id')} {point.get('name')} @ {point.get('location') or '-'}"
            f" ({doc.get('source')}){startup}  {latency}{clock}")


def _read_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hw_sim.platform", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--share", metavar="GROUP", help="consume via $share/GROUP/...")
    ap.add_argument("--jsonl", type=Path, help="append every received message to this file")
    ap.add_argument("--snapshot-dir", type=Path, help="save every snapshot (JPEG) under this"
                    " directory")
    ap.add_argument("--ca", type=Path, help="CA file: connect with TLS")
    ap.add_argument("--cert", type=Path)
    ap.add_argument("--key", type=Path)
    ap.add_argument("--command-key", type=Path, metavar="FILE",
                    help="the gateways' command key (hex), to sign commands and acks")
    ap.add_argument("--auto-ack", type=float, metavar="SECONDS",
                    help="acknowledge every alarm and drill this many seconds after it arrives")
    ap.add_argument("--operator", default="console", help="operator name in acks")
    web = ap.add_argument_group("web console (docs/console.md)")
    web.add_argument("--web", metavar="HOST:PORT", help="serve the duty officer's web console"
                     " (loopback only unless --web-allow-remote)")
    web.add_argument("--web-allow-remote", action="store_true", help="allow a non-loopback"
                     " address; requires a password")
    web.add_argument("--web-password-file", metavar="FILE", help="the console's password"
                     " (first line; or set ALARMGW_CONSOLE_PASSWORD)")
    web.add_argument("--web-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    web.add_argument("--web-key", type=Path, help="the certificate's private key (PEM)")
    web.add_argument("--db", type=Path, help="the console's record (SQLite; default: a"
                     " temporary file)")
    web.add_argument("--ingest-workers", type=int, default=0, metavar="N",
                     help="ingest as N worker processes on $share/GROUP (GROUP: --share,"
                     " default alarmgw-console); 0: in this process")
    sub = ap.add_subparsers(dest="action")
    send = sub.add_parser("send", help="send one command to a gateway and print its result")
    send.add_argument("site")
    send.add_argument("gateway")
    send.add_argument("op", choices=("ping", "ack", "drill", "snapshot", "output"))
    send.add_argument("args", nargs="*", metavar="NAME=VALUE",
                      help="arguments, e.g. event_id=... point=gate-panic on=true")
    send.add_argument("--unsigned", action="store_true", help="do not sign (to see a refusal)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    key = _read_key(args.command_key)
    if args.action == "send":
        return _send(args, key)
    if args.web:
        return _web(args, key)
    console = PlatformConsole(args.host, args.port, share_group=args.share, jsonl=args.jsonl,
                              out=sys.stdout, tls_ca=args.ca, tls_cert=args.cert,
                              tls_key=args.key, command_key=key, auto_ack_s=args.auto_ack,
                              operator=args.operator, snapshot_dir=args.snapshot_dir)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    console.start()
    print(f"platform console: subscribed to {TOPIC_ROOT}/# on {args.host}:{args.port}"
          + (f"; acknowledging alarms after {args.auto_ack} s" if args.auto_ack is not None
             else ""), flush=True)
    done.wait()
    console.stop()
    print(f"platform console: {len(console.events)} events, {console.duplicates} duplicates"
          f" dropped, open seq gaps: {console.gaps() or 'none'}")
    return 0


def _web(args: argparse.Namespace, key: bytes | None) -> int:
    """Serve the web console until SIGINT or SIGTERM."""
    import ssl

    from hw_sim.console.app import WebConsole
    from hw_sim.console.web import ConsoleRefused, read_password

    host, sep, port = str(args.web).rpartition(":")
    if not sep or not port.isdigit():
        print(f"--web {args.web!r}: expected HOST:PORT, e.g. 127.0.0.1:8080", file=sys.stderr)
        return 2
    host = host.strip("[]")
    ctx: ssl.SSLContext | None = None
    if args.web_cert is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.web_cert, args.web_key)
    tls = {"tls_ca": args.ca, "tls_cert": args.cert, "tls_key": args.key} if args.ca else None
    try:
        console = WebConsole(args.host, args.port, db=args.db, web_host=host,
                             web_port=int(port), allow_remote=args.web_allow_remote,
                             password=read_password(args.web_password_file),
                             command_key=key, workers=args.ingest_workers,
                             share_group=args.share, tls=tls, ssl_context=ctx)
    except ConsoleRefused as exc:
        print(f"platform console: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    url = console.start()
    try:
        print(f"platform console: the duty officer's console is at {url} (record {console.db};"
              f" broker {args.host}:{args.port}"
              + ("" if key else "; no --command-key: it cannot acknowledge") + ")", flush=True)
        done.wait()
    finally:
        console.stop()
    return 0


def _send(args: argparse.Namespace, key: bytes | None) -> int:
    cmd_args: dict[str, Any] = {}
    for item in args.args:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"argument {item!r} is not NAME=VALUE", file=sys.stderr)
            return 2
        parsed: Any = value
        if value in ("true", "false"):
            parsed = value == "true"
        else:
            try:
                parsed = float(value) if "." in value else int(value)
            except ValueError:
                parsed = value
        cmd_args[name] = parsed
    if args.op == "ack":
        cmd_args.setdefault("operator", args.operator)
    console = PlatformConsole(args.host, args.port, client_id=f"platform-send-{os.getpid()}",
                              persistent=False, tls_ca=args.ca, tls_cert=args.cert,
                              tls_key=args.key, command_key=key)
    console.start()
    try:
        cid = console.send_command(args.site, args.gateway, args.op, cmd_args,
                                   sign_it=not args.unsigned)
        if not console.wait_for(lambda c: cid in c.results, 15.0):
            print(f"no result for {cid} within 15 s: is the gateway online and subscribed?",
                  file=sys.stderr)
            return 1
        print(json.dumps(console.results[cid], ensure_ascii=False, indent=2))
        return 0 if console.results[cid].get("ok") else 1
    finally:
        console.stop()


if __name__ == "__main__":
    sys.exit(main())

"""The console's web server: one page, a live stream of changes, pictures, acknowledgements.

aiohttp serves everything from this package (no CDN, no build step). The page opens a
server-sent event stream (`/api/stream`): first the whole picture (recent cards and every
gateway), then what changed, as the server sees it in the record's `changes` table (it
looks every `poll_s`). Server-sent events rather than a WebSocket: the data flows one
way, the browser reconnects by itself, and the one thing an officer sends (an
acknowledgement) is a plain POST.

Secure by default:

- it listens on loopback only; another address needs `allow_remote` and a password
  (HTTP Basic, compared in constant time; put TLS in front of it, or give it a
  certificate), and a loopback server answers only requests whose Host is a loopback
  name (no DNS rebinding);
- a POST needs the `X-Alarmgw-Console` header and a JSON body, which a page of another
  origin cannot send without a CORS preflight this server never grants;
- a Content-Security-Policy allows only this server's own script, style and images;
  the page builds every element with textContent, never innerHTML.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import Any

import paho.mqtt.client as mqtt
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion

from hw_sim.console.record import ACK_TYPES, Record

log = logging.getLogger(__name__)

#: Custom header every POST must carry (a cross-origin page cannot add it without CORS).
POST_HEADER = "X-Alarmgw-Console"
#: How many recent events the page gets when it (re)connects.
INITIAL_CARDS = 500
#: The longest officer name an acknowledgement takes, in characters.
OPERATOR_CHARS = 64
#: Messages a slow page may have waiting before its stream is closed (it reconnects).
CLIENT_BACKLOG = 2000
#: A comment line on an idle stream this often keeps proxies from closing it, in seconds.
KEEPALIVE_S = 15.0
#: An idle HTTP connection (between requests) is closed after this, in seconds.
IDLE_CLOSE_S = 2.0

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
                               " img-src 'self'; connect-src 'self'; base-uri 'none';"
                               " form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class ConsoleRefused(ValueError):
    """A listen address or setting the console refuses (the message says why)."""


def check_bind(host: str, *, allow_remote: bool, password: str | None) -> bool:
    """Refuse a non-loopback `host` unless `allow_remote`, and then without a password.
    Returns whether `host` is loopback."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConsoleRefused(f"cannot resolve the listen address {host!r}: {exc}") from exc
    loopback = all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)
    if loopback:
        return True
    if not allow_remote:
        raise ConsoleRefused(f"{host} is not a loopback address: the console listens on"
                             " loopback only unless --web-allow-remote is given (and then a"
                             " password is required)")
    if not password:
        raise ConsoleRefused(f"listening on {host} needs a password: give --web-password-file"
                             " or ALARMGW_CONSOLE_PASSWORD")
    return False


class Commander:
    """Publishes signed commands to gateways (its own MQTT client, clean session)."""

    def __init__(self, host: str, port: int, key: bytes | None, **tls: Any) -> None:
        self.key = key
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"alarmgw-console-web-{uuid.uuid4().hex[:12]}",
                                   protocol=mqtt.MQTTv5)
        if tls.get("tls_ca") is not None:
            self._client.tls_set(ca_certs=str(tls["tls_ca"]),
                                 certfile=str(tls["tls_cert"]) if tls.get("tls_cert") else None,
                                 keyfile=str(tls["tls_key"]) if tls.get("tls_key") else None)
        self._connected = threading.Event()
        self._client.on_connect = lambda *a: self._connected.set()
        self._client.reconnect_delay_set(1, 2)
        self.host, self.port = host, port

    def start(self, wait_s: float = 10.0) -> None:
        self._client.connect_async(self.host, self.port, keepalive=10)
        self._client.loop_start()
        if not self._connected.wait(wait_s):
            self.stop()
            raise TimeoutError(f"console: cannot reach the broker {self.host}:{self.port}")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._client._reset_sockets()

    def ack(self, gateway: str, event_id: str, operator: str, cmd_id: str) -> None:
        from gateway.uplink.commands import sign

        if self.key is None:
            raise ConsoleRefused("the console has no command key (--command-key): it cannot"
                                 " sign an acknowledgement")
        site, gw = gateway.split("/", 1)
        from hw_sim.platform import _now_iso

        issued = _now_iso()
        doc = sign({"v": 1, "id": cmd_id, "op": "ack", "issued_at": issued,
                    "args": {"event_id": event_id, "operator": operator}}, self.key)
        self._client.publish(f"alarmgw/v1/{site}/{gw}/cmd",
                             json.dumps(doc, ensure_ascii=False).encode("utf-8"), qos=1)


@dataclass(eq=False)
class _Client:
    queue: asyncio.Queue[bytes | None]


def _sse(event: str, data: Any) -> bytes:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {text}\n\n".encode()


class ConsoleServer:
    """The web console on its own thread and event loop. `start()` returns its URL."""

    def __init__(self, record: Record, commander: Commander | None, *, host: str = "127.0.0.1",
                 port: int = 0, allow_remote: bool = False, password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, poll_s: float = 0.1) -> None:
        self.loopback = check_bind(host, allow_remote=allow_remote, password=password)
        self.record = record
        self.commander = commander
        self.host, self.port = host, port
        self.password = password
        self.ssl_context = ssl_context
        self.poll_s = poll_s
        self.url = ""
        self._static = {name: (resources.files("hw_sim.console") / "static" / name).read_bytes()
                        for name in _STATIC}
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        self._thread = threading.Thread(target=self._run, name="console-web")
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.url

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._teardown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None

    def __enter__(self) -> ConsoleServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            self._loop = None
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()
            self._loop = None

    async def _setup(self) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static_file)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_get("/api/state", self._state_json)
        app.router.add_get("/api/picture/{n:[0-9]{1,12}}", self._picture)
        app.router.add_post("/api/ack", self._ack)
        app.on_response_prepare.append(self._headers)
        # Idle connections close soon: a page needs only its event stream kept open.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0,
                                     keepalive_timeout=IDLE_CLOSE_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        addr = self._runner.addresses[0]
        self.port = int(addr[1])
        scheme = "https" if self.ssl_context else "http"
        shown = f"[{addr[0]}]" if ":" in str(addr[0]) else str(addr[0])
        self.url = f"{scheme}://{shown}:{self.port}/"
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _teardown(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
        for c in list(self._clients):
            c.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- security ----------------------------------------------------------------------------

    def _host_ok(self, host: str) -> bool:
        if not self.loopback:
            return True
        return host in {f"127.0.0.1:{self.port}", f"localhost:{self.port}",
                        f"[::1]:{self.port}"}

    def _password_ok(self, header: str | None) -> bool:
        if self.password is None:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            _, _, given = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(given.encode(), self.password.encode())

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self._host_ok(request.host):
            return web.Response(status=421, text="this console answers only to its loopback"
                                " address\n")
        if not self._password_ok(request.headers.get("Authorization")):
            return web.Response(status=401, text="password required\n",
                                headers={"WWW-Authenticate":
                                         'Basic realm="alarmgw duty console", charset="UTF-8"'})
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if request.headers.get(POST_HEADER) != "1" or request.content_type != \
                    "application/json" or (origin is not None and origin.split("://", 1)[-1]
                                           != request.host):
                return web.json_response({"ok": False, "error": "refused: not from the"
                                          " console page"}, status=403)
        resp: web.StreamResponse = await handler(request)
        return resp

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)

    # -- handlers ----------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._static["index.html"],
                            headers={"Content-Type": _STATIC["index.html"],
                                     "Cache-Control": "no-store"})

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC or name == "index.html":
            raise web.HTTPNotFound()
        return web.Response(body=self._static[name], headers={"Content-Type": _STATIC[name],
                                                               "Cache-Control": "no-cache"})

    async def _picture(self, request: web.Request) -> web.Response:
        data = self.record.picture(int(request.match_info["n"]))
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, headers={"Content-Type": "image/jpeg",
                                                "Cache-Control": "private, max-age=86400"})

    def _state(self) -> dict[str, Any]:
        return {"rev": self.record.rev(), "cards": self.record.recent_cards(INITIAL_CARDS),
                "gateways": self.record.gateways(), "rejects": self.record.rejects(),
                "now": time.time()}

    async def _state_json(self, request: web.Request) -> web.Response:
        return web.json_response(self._state(), dumps=lambda d: json.dumps(d, ensure_ascii=False))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
        await resp.prepare(request)
        client = _Client(asyncio.Queue(CLIENT_BACKLOG))
        self._clients.add(client)
        try:
            await resp.write(_sse("state", self._state()))
            while True:
                try:
                    item = await asyncio.wait_for(client.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if item is None:
                    break
                await resp.write(item)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self._clients.discard(client)
        return resp

    async def _poll(self) -> None:
        rev = self.record.rev()
        while True:
            await asyncio.sleep(self.poll_s)  # the record is shared by processes: look again
            try:
                rev, changed = self.record.changes_since(rev)
            except Exception:
                log.exception("console: cannot read the record")
                continue
            if not changed:
                continue
            update: dict[str, Any] = {"rev": rev, "now": time.time(), "cards": [],
                                      "gateways": []}
            for kind, key in sorted(changed):
                if kind == "event":
                    card = self.record.card(key)
                    if card is not None:
                        update["cards"].append(card)
                elif kind == "gateway":
                    gw = self.record.gateway(key)
                    if gw is not None:
                        update["gateways"].append(gw)
                elif kind == "rejects":
                    update["rejects"] = self.record.rejects()
            message = _sse("update", update)
            for c in list(self._clients):
                try:
                    c.queue.put_nowait(message)
                except asyncio.QueueFull:
                    # A page that does not read: end its stream, it reconnects and catches up.
                    log.warning("console: a page fell %d updates behind; closing its stream",
                                CLIENT_BACKLOG)
                    self._clients.discard(c)
                    while not c.queue.empty():
                        c.queue.get_nowait()
                    c.queue.put_nowait(None)

    async def _ack(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            event_id = str(body["event_id"])
            operator = str(body["operator"]).strip()
        except (ValueError, KeyError, TypeError):
            return web.json_response({"ok": False, "error": "expected {event_id, operator}"},
                                     status=400)
        if not 0 < len(operator) <= OPERATOR_CHARS or _CONTROL_CHARS.search(operator):
            return web.json_response({"ok": False, "error": f"the officer's name: 1 to"
                                      f" {OPERATOR_CHARS} characters"}, status=400)
        found = self.record.event(event_id)
        if found is None:
            return web.json_response({"ok": False, "error": "unknown event"}, status=404)
        gateway, doc = found
        if doc.get("type") not in ACK_TYPES:
            return web.json_response({"ok": False, "error": "this event is not acknowledged"},
                                     status=400)
        if self.commander is None or self.commander.key is None:
            return web.json_response({"ok": False, "error": "the console has no command key"
                                      " (--command-key): it cannot sign an acknowledgement"},
                                     status=503)
        cmd_id = f"c-{uuid.uuid4().hex[:16]}"
        self.record.add_ack(cmd_id, event_id, gateway, operator)
        self.commander.ack(gateway, event_id, operator, cmd_id)
        log.info("console: %s acknowledged %s (%s) as command %s", operator, event_id, gateway,
                 cmd_id)
        return web.json_response({"ok": True, "cmd_id": cmd_id})


def read_password(path: str | None) -> str | None:
    """The console's password from a file (first line) or ALARMGW_CONSOLE_PASSWORD."""
    if path:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip() or None
    return os.environ.get("ALARMGW_CONSOLE_PASSWORD") or None

"""The local control socket: how `alarmgw status`, `inputs`, `queue`... talk to the service.

A Unix stream socket under the runtime directory, mode 0660 (the service's
user and group only); nothing listens on the network. The protocol is one
JSON object per line each way: `{"cmd": "status"}` is answered by
`{"ok": true, "result": {...}}` or `{"ok": false, "error": "..."}`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import ControlError, ServiceNotRunningError

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
_MAX_REQUEST = 64 * 1024
_CLIENT_TIMEOUT_S = 10.0

Handler = Callable[[dict[str, Any]], Any]


class ControlServer:
    """Serves control requests on a Unix socket, one short-lived thread per client."""

    def __init__(self, path: Path, handler: Handler) -> None:
        """`handler(request)` returns the result (JSON-able) or raises to answer an error."""
        self.path = Path(path)
        self._handler = handler
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ControlError(f"{self.path} exists and is not a socket; remove it")
            try:
                request(self.path, {"cmd": "ping"}, timeout=1.0)
            except ServiceNotRunningError:
                self.path.unlink()  # left behind by a service that died
            else:
                raise ControlError(f"another alarmgw answers on {self.path}; stop it first")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o660)
            sock.listen(8)
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot create the control socket {self.path}: {exc.strerror};"
                               " check gateway.runtime_dir") from exc
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        with self._lock:
            clients = list(self._clients)
        for t in clients:
            t.join(_CLIENT_TIMEOUT_S)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _accept_loop(self) -> None:
        while not self._stopping:
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed by stop()
            t = threading.Thread(target=self._serve, args=(conn,), name="control-client",
                                 daemon=True)
            with self._lock:
                self._clients.add(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(_CLIENT_TIMEOUT_S)
                data = b""
                while b"\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                    if len(data) > _MAX_REQUEST:
                        _send(conn, {"ok": False, "error": "request too large"})
                        return
                line = data.split(b"\n", 1)[0]
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                        raise ValueError("expected a JSON object with a 'cmd' string")
                except ValueError as exc:
                    _send(conn, {"ok": False, "error": f"bad request: {exc}"})
                    return
                try:
                    result = self._handler(req)
                except (KeyError, ValueError, LookupError) as exc:
                    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                    _send(conn, {"ok": False, "error": str(msg)})
                    return
                except Exception as exc:
                    log.exception("control: %s failed", req.get("cmd"))
                    _send(conn, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
                    return
                _send(conn, {"ok": True, "result": result})
        except OSError as exc:
            log.debug("control client went away: %s", exc)
        finally:
            with self._lock:
                self._clients.discard(threading.current_thread())


def _send(conn: socket.socket, doc: dict[str, Any]) -> None:
    conn.sendall(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")


def request(path: Path, req: dict[str, Any], timeout: float = 10.0) -> Any:
    """Send one request to the service; return its result or raise ControlError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ServiceNotRunningError(path, "no such socket") from None
        except ConnectionRefusedError:
            raise ServiceNotRunningError(path, "connection refused") from None
        except PermissionError as exc:
            raise ControlError(f"permission denied on {path}: run as root or as a member of"
                               " the service's group (alarmgw)") from exc
        except OSError as exc:
            raise ServiceNotRunningError(path, exc.strerror or str(exc)) from exc
        sock.sendall(json.dumps(req, ensure_ascii=False).encode("utf-8") + b"\n")
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ControlError(f"the service closed {path} without answering")
            data += chunk
    except TimeoutError as exc:
        raise ControlError(f"the service did not answer on {path} within {timeout:.0f} s;"
                           " it may be stuck: see journalctl -u alarmgw") from exc
    finally:
        sock.close()
    reply = json.loads(data.split(b"\n", 1)[0])
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "unknown error")))
    return reply.get("result")

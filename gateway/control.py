"""The local control socket: how `alarmgw status`, `inputs`, `queue`... talk to the service.

A Unix stream socket under the runtime directory, mode 0660 (the service's
user and group only); nothing listens on the network. The protocol is one
JSON object per line each way: `{"cmd": "status"}` is answered by
`{"ok": true, "result": {...}}` or `{"ok": false, "error": "..."}`.

The socket is bound under a umask that leaves it no wider than 0660 from the moment
it exists (unix(7): a new socket file gets every permission the umask does not take
away; a chmod after bind() would leave it world-accessible until then, when the
service is started outside its unit with a loose umask). Then it is made exactly
0660 (the unit's UMask=0027 would give 0640, and the group could not connect).

At most `MAX_CLIENTS` clients are served at once, one thread each; a client beyond
that gets `{"ok": false, "error": "busy: N clients connected"}` at once, without a
thread, and is counted (`ControlServer.stats()`).
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
from gateway.logs import OnChangeLog

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
#: Clients served at once; one more is refused with a "busy" line.
MAX_CLIENTS = 8
_MAX_REQUEST = 64 * 1024
_CLIENT_TIMEOUT_S = 10.0
_SOCKET_MODE = 0o660
#: Added to the umask around bind(): no execute bits, nothing for others.
_BIND_UMASK = 0o117
_umask_lock = threading.Lock()
"""Serialises our own umask changes (two servers starting at once)."""

Handler = Callable[[dict[str, Any]], Any]


class ControlServer:
    """Serves control requests on a Unix socket, one short-lived thread per client, at most
    `max_clients` at once."""

    def __init__(self, path: Path, handler: Handler, *, max_clients: int = MAX_CLIENTS) -> None:
        """`handler(request)` returns the result (JSON-able) or raises to answer an error."""
        self.path = Path(path)
        self._handler = handler
        self.max_clients = max_clients
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        """Notified whenever a client comes or goes."""
        self.refused = 0
        """Clients turned away because `max_clients` were connected."""
        self._busy_log = OnChangeLog(log)
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
            _bind_private(sock, self.path)
            os.chmod(self.path, _SOCKET_MODE)  # widen 0640 (UMask=0027) to the group's rw
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

    def stats(self) -> dict[str, int]:
        """Clients connected now, the cap, and clients refused since start."""
        with self._lock:
            return {"clients": len(self._clients), "max_clients": self.max_clients,
                    "refused": self.refused}

    def wait_clients(self, count: int, timeout: float) -> bool:
        """Wait until exactly `count` clients are connected (tests, diagnostics)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._clients) == count, timeout)

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
                busy = len(self._clients)
                if busy >= self.max_clients:
                    self.refused += 1
                else:
                    self._clients.add(t)
                    self._changed.notify_all()
            if busy >= self.max_clients:
                self._refuse(conn, busy)
                continue
            self._busy_log.resolved("control socket: clients are served again")
            try:
                t.start()
            except RuntimeError as exc:  # no thread to be had: answer nothing, count nothing
                log.error("control: cannot start a thread for a client: %s", exc)
                with self._lock:
                    self._clients.discard(t)
                    self._changed.notify_all()
                conn.close()

    def _refuse(self, conn: socket.socket, busy: int) -> None:
        """Answer "busy" without a thread and without waiting on the client."""
        with conn:
            try:
                conn.setblocking(False)
                try:
                    conn.recv(_MAX_REQUEST)  # what the client sent already: read, not answered
                except BlockingIOError:
                    pass
                _send(conn, {"ok": False, "error": f"busy: {busy} clients connected; end other"
                             " alarmgw commands (inputs --watch) and try again"})
            except OSError as exc:
                log.debug("control: refused client went away: %s", exc)
        self._busy_log.problem(f"control socket: {busy} clients connected (the most served at"
                               " once): refusing more; see who holds it with"
                               f" `ss -xp | grep {self.path.name}`")

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
                self._changed.notify_all()


def _bind_private(sock: socket.socket, path: Path) -> None:
    """bind() `sock` to `path` under a umask that takes execute bits and everything for
    others away, so that the socket is never wider than 0660, then restore the umask.

    The umask is the process's: other threads run while this one binds (the control socket
    starts last, and moving it before the other parts would announce a service that cannot
    answer yet). The window is the one bind() call, and the mask only adds bits to the
    umask (read from /proc, so that it is never set to anything else), so a file another
    thread creates meanwhile can only come out stricter, never wider; and the service
    creates no directory once it runs (the state and runtime directories are made before
    any thread starts), which an execute bit taken away could break.
    """
    with _umask_lock:
        old = _current_umask()
        if old is None:
            old = os.umask(0o177)  # no /proc: for a moment owner-only, still usable
        os.umask(old | _BIND_UMASK)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)


def _current_umask() -> int | None:
    """The process's umask without changing it (Linux 4.7+), or None."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


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
        try:
            sock.sendall(json.dumps(req, ensure_ascii=False).encode("utf-8") + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused ("busy") and closed before the request went out: read the answer
        data = b""
        while b"\n" not in data:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
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

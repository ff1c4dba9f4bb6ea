"""The control socket: its mode from the moment it exists, and a cap on concurrent clients.

The socket must never be world-accessible, not even between bind() and a chmod(): a
service started outside its unit (umask 0, say) would otherwise leave a moment when any
local user may connect. And a client that connects and says nothing (or a handler that
takes long) must not let clients start threads without end: past the cap a client is
refused with one JSON error line, counted, and the service goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gw import REPO, InProcessGateway, write_config

from gateway.control import MAX_CLIENTS, ControlServer, request
from gateway.errors import ControlError
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

WAIT = 10.0

#: Run in a child process with umask 0: start a ControlServer and record the socket's mode
#: at every audit event from the moment the path exists (the first of them comes right after
#: bind(), before any chmod), then the umask it left behind.
_OBSERVER = textwrap.dedent("""
    import json, os, stat, sys
    from pathlib import Path
    from gateway.control import ControlServer

    os.umask(0)
    path = Path(sys.argv[1])
    seen = []
    busy = False

    def hook(event, args):
        global busy
        if busy:
            return
        busy = True
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            pass
        else:
            if stat.S_ISSOCK(mode):
                seen.append([event, stat.S_IMODE(mode)])
        finally:
            busy = False

    sys.addaudithook(hook)
    server = ControlServer(path, lambda req: "pong")
    server.start()
    after_start = stat.S_IMODE(os.lstat(path).st_mode)
    server.stop()
    umask_after = os.umask(0)
    print(json.dumps({"seen": seen, "after_start": after_start, "umask_after": umask_after}))
""")


def test_the_socket_is_never_wider_than_0660_even_under_umask_0(tmp_path: Path) -> None:
    path = tmp_path / "run" / "control.sock"
    res = subprocess.run([sys.executable, "-c", _OBSERVER, str(path)], capture_output=True,
                         text=True, cwd=REPO, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["seen"], "no audit event saw the socket: the observation did not happen"
    wider = [(event, oct(mode)) for event, mode in doc["seen"] if mode & ~0o660]
    assert not wider, f"the socket was wider than 0660 right after bind: {wider}"
    assert doc["after_start"] == 0o660  # the service's group may connect
    assert doc["umask_after"] == 0, "the process umask was not restored"


def test_the_socket_is_0660_under_the_units_umask(tmp_path: Path) -> None:
    """UMask=0027 (the unit's) would give 0640: the group could not connect."""
    old = os.umask(0o027)
    try:
        server = ControlServer(tmp_path / "control.sock", lambda req: "pong")
        server.start()
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(os.lstat(tmp_path / "control.sock").st_mode) == 0o660
        assert request(tmp_path / "control.sock", {"cmd": "ping"}) == "pong"
    finally:
        server.stop()


# -- the cap on concurrent clients ------------------------------------------------------------

class Holding:
    """A handler whose "hold" requests wait until released (a slow command)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.held = 0
        self.released = False

    def __call__(self, req: dict[str, Any]) -> Any:
        if req["cmd"] != "hold":
            return "pong"
        with self.cond:
            self.held += 1
            self.cond.notify_all()
            assert self.cond.wait_for(lambda: self.released, WAIT)
        return "held"

    def release(self) -> None:
        with self.cond:
            self.released = True
            self.cond.notify_all()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ControlServer, Holding]]:
    handler = Holding()
    server = ControlServer(tmp_path / "control.sock", handler)
    server.start()
    try:
        yield server, handler
    finally:
        handler.release()
        server.stop()


def idle_client(path: Path) -> socket.socket:
    """A client that connects and says nothing."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    return s


def test_the_client_past_the_cap_is_refused_politely_and_the_server_goes_on(
        served: tuple[ControlServer, Holding]) -> None:
    server, handler = served
    assert MAX_CLIENTS == 8
    half = MAX_CLIENTS // 2
    idle = [idle_client(server.path) for _ in range(half)]
    results: list[Any] = []
    holders = [threading.Thread(target=lambda: results.append(
        request(server.path, {"cmd": "hold"}, timeout=WAIT))) for _ in range(half)]
    try:
        for t in holders:
            t.start()
        with handler.cond:
            assert handler.cond.wait_for(lambda: handler.held == half, WAIT)
        # The idle clients connected before the holders: accepted first, they are in too.
        threads_before = threading.active_count()
        with pytest.raises(ControlError, match=rf"^busy: {MAX_CLIENTS} clients connected"):
            request(server.path, {"cmd": "ping"}, timeout=WAIT)
        # The same, read as the raw line a script on the socket would get.
        raw = idle_client(server.path)
        with raw:
            # The server answers "busy" and closes at once, without reading: the request
            # may meet a closed socket (EPIPE), and the answer still waits to be read.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                raw.sendall(b'{"cmd": "ping"}\n')
            line = raw.makefile("rb").readline()
        assert json.loads(line) == {"ok": False,
                                    "error": f"busy: {MAX_CLIENTS} clients connected; end other"
                                             " alarmgw commands (inputs --watch)"
                                             " and try again"}
        assert server.stats() == {"clients": MAX_CLIENTS, "max_clients": MAX_CLIENTS,
                                  "refused": 2}
        assert threading.active_count() == threads_before  # no thread for a refused client
    finally:
        handler.release()
        for t in holders:
            t.join(WAIT)
        for s in idle:
            s.close()
    assert results == ["held"] * half
    assert server.wait_clients(0, WAIT)
    assert request(server.path, {"cmd": "ping"}) == "pong"
    assert server.stats()["refused"] == 2


def test_a_busy_service_still_commits_alarms_and_answers_once_clients_leave(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port)
    with InProcessGateway(cfg) as gw:
        control = gw.service.control
        assert control is not None and gw.panel is not None
        idle = [idle_client(control.path) for _ in range(MAX_CLIENTS)]
        try:
            assert control.wait_clients(MAX_CLIENTS, WAIT)
            with pytest.raises(ControlError, match="busy: 8 clients connected"):
                request(control.path, {"cmd": "status"}, timeout=WAIT)
            gw.panel.press("gate-panic")
            assert console.wait_for(lambda c: len(c.events_of("alarm", "gate-panic")) == 1,
                                    WAIT)
        finally:
            for s in idle:
                s.close()
        assert control.wait_clients(0, WAIT)
        st = request(control.path, {"cmd": "status"}, timeout=WAIT)
        assert st["running"] is True
        assert control.stats()["refused"] == 1

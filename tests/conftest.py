"""Shared fixtures: a leak check around every test, a real Mosquitto broker and a test PKI.

``no_leaks`` (autouse) fails a test that leaves a thread, a child process or a socket behind:
the gateway runs for years unattended, and a leak per reconnect is an outage in a month.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gw import ARC_ACCOUNT, ARC_KEY, persistent_broker_conf, wait_broker_saved
from pki import Pki, make_pki

from hw_sim.arc import ArcReceiver
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

log = logging.getLogger(__name__)

#: How long the leak check waits for threads, children and sockets to go away, in seconds.
LEAK_GRACE = 5.0
#: How often the leak check looks again while it waits, in seconds.
LEAK_POLL = 0.02
#: Threads that belong to the test tooling, not to the code under test.
IGNORED_THREAD_PREFIXES = ("pytest_timeout",)
#: Daemon threads with these name prefixes are tooling too (hypothesis, if it starts any).
IGNORED_DAEMON_THREAD_PREFIXES = ("hypothesis",)


def _child_pids() -> set[int]:
    """Return the pids of this process's children, zombies included."""
    me = os.getpid()
    task_dir = Path(f"/proc/{me}/task")
    pids: set[int] = set()
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        tasks = []
    children_files = [t / "children" for t in tasks]
    if children_files and children_files[0].exists():
        for path in children_files:
            try:
                pids.update(int(p) for p in path.read_text().split())
            except OSError:
                pass  # the thread ended while we looked
        return pids
    # Kernels without CONFIG_PROC_CHILDREN: find processes whose parent is us.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited while we looked
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            pids.add(int(entry))
    return pids


def _socket_inodes() -> set[str]:
    """Return the ``socket:[inode]`` links of this process's open file descriptors."""
    found: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:"):
            found.add(target)
    return found


def _describe(pid: int) -> str:
    """Return ``pid``'s command line, or its state and name when it has none (a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if cmdline:
            return cmdline
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "<gone>"
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    state = stat[stat.rfind(")") + 2 :].split()[0]
    return f"<{'zombie, not reaped' if state == 'Z' else 'no cmdline'}: {comm}>"


def _ignored(thread: threading.Thread) -> bool:
    name = thread.name
    if name.startswith(IGNORED_THREAD_PREFIXES):
        return True
    return thread.daemon and name.startswith(IGNORED_DAEMON_THREAD_PREFIXES)


@dataclass
class _Snapshot:
    threads: set[threading.Thread]
    children: set[int]
    sockets: set[str]

    @classmethod
    def take(cls) -> _Snapshot:
        return cls(set(threading.enumerate()), _child_pids(), _socket_inodes())

    def leaks_since(self, before: _Snapshot) -> list[str]:
        """Describe what this snapshot holds that ``before`` did not; empty if nothing."""
        problems: list[str] = []
        threads = sorted(
            (t for t in self.threads - before.threads if t.is_alive() and not _ignored(t)),
            key=lambda t: t.name,
        )
        if threads:
            names = ", ".join(f"{t.name!r}{' (daemon)' if t.daemon else ''}" for t in threads)
            problems.append(f"{len(threads)} thread(s) still running: {names}")
        children = sorted(self.children - before.children)
        if children:
            procs = "; ".join(f"pid {pid}: {_describe(pid)}" for pid in children)
            problems.append(f"{len(children)} child process(es) not reaped: {procs}")
        sockets = self.sockets - before.sockets
        if sockets:
            problems.append(f"{len(sockets)} socket(s) still open")
        return problems


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves threads, child processes or sockets behind.

    Things that are merely slow to go (a thread finishing its join, a socket closed by a
    garbage-collected client) get up to :data:`LEAK_GRACE` seconds.
    """
    before = _Snapshot.take()
    yield
    problems = _Snapshot.take().leaks_since(before)
    if not problems:
        return
    # Unreachable clients still hold their sockets until the cycle collector runs.
    gc.collect()
    deadline = time.monotonic() + LEAK_GRACE
    while problems and time.monotonic() < deadline:
        time.sleep(LEAK_POLL)  # nothing signals "the last leak is gone": poll the state
        problems = _Snapshot.take().leaks_since(before)
    if problems:
        pytest.fail("test leaked resources:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running private Mosquitto on 127.0.0.1 (plain MQTT), stopped after the test."""
    with Mosquitto(tmp_path / "broker") as mosquitto:
        yield mosquitto


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with a broker certificate (localhost, 127.0.0.1) and a client one."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def console(broker: Mosquitto) -> Iterator[PlatformConsole]:
    """The reference platform console subscribed to the `broker` fixture."""
    c = PlatformConsole(broker.host, broker.port, persistent=False)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def persistent(tmp_path: Path) -> Iterator[tuple[Mosquitto, PlatformConsole]]:
    """A broker that keeps the platform's session through SIGKILL, and that platform."""
    broker = Mosquitto(tmp_path / "broker",
                       extra_conf=persistent_broker_conf(tmp_path / "broker-db"))
    broker.start()
    c = PlatformConsole(broker.host, broker.port)
    try:
        c.start()
        wait_broker_saved(tmp_path / "broker-db", time.time_ns())
        yield broker, c
    finally:
        c.stop()
        broker.stop()


@pytest.fixture
def arc() -> Iterator[ArcReceiver]:
    """An alarm-receiving centre (DC-09, pysiaalarm) on loopback that knows account
    ARC_ACCOUNT with key ARC_KEY (tests/gw.py)."""
    with ArcReceiver({ARC_ACCOUNT: ARC_KEY}) as receiver:
        yield receiver

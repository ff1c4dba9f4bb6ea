"""The Debian package, built by scripts/build-deb and installed into a clean Debian 12.

The build and lintian always run. The rest installs the package into a minimal Debian 12
root made by mmdebstrap from Debian's packages (a chroot: no systemd as PID 1, as in an
image build): `dpkg -i` and `apt-get -f install`, the program from its installed path,
the user, the directories and their modes, the unit; then an upgrade with 100 events
queued while the broker was down, which all reach the platform after it; a downgrade that
is refused while the store has a newer schema and works once it has not; `apt remove`,
which keeps config and queue, and `apt purge`, which says what it deletes and deletes it.
The gateway runs inside the root (`chroot --userspec=alarmgw`) on the simulator, against a
real Mosquitto on this machine's loopback, and is reached through its control socket.

The tests after the install share the root and go in file order (install, upgrade,
downgrade, remove); each one first brings the root to the state it starts from.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw import REPO, write_config

from gateway.control import request
from gateway.errors import ServiceNotRunningError
from gateway.store import SCHEMA_VERSION
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

BUILD = REPO / "scripts" / "build-deb"
VERSION = "0.1.0"
#: The mirror the clean root is made from (Debian's own by default).
MIRROR = os.environ.get("ALARMGW_DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: The PATH and locale inside the root.
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
              "DEBIAN_FRONTEND": "noninteractive"}
STORE = "var/lib/alarmgw/outbox.sqlite3"
SOCKET = "run/alarmgw/control.sock"
QUEUED = 100


# -- the build ----------------------------------------------------------------------------

def build(out: Path, revision: int) -> Path:
    res = subprocess.run(["bash", str(BUILD), "--no-lintian", "--fast", "--out", str(out),
                          "--revision", str(revision)],
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, f"build-deb: exit {res.returncode}\n{res.stderr}"
    deb = Path(res.stdout.strip().splitlines()[-1])
    assert deb.is_file(), res.stdout
    return deb


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The package of this tree, revision 1, and the same program as revision 2 (an
    upgrade), each built once for the whole session."""
    out = tmp_path_factory.mktemp("debs")
    return {1: build(out, 1), 2: build(out, 2)}


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), field], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


@pytest.mark.timeout(900)  # the first test builds both packages
@pytest.mark.slow
def test_lintian_finds_no_errors(debs: dict[int, Path]) -> None:
    lintian = shutil.which("lintian")
    assert lintian is not None, "lintian is missing: scripts/setup installs it (Debian lintian)"
    res = subprocess.run([lintian, "--fail-on", "error", str(debs[1])], capture_output=True,
                         text=True, timeout=300, check=False)
    errors = [ln for ln in res.stdout.splitlines() if ln.startswith("E:")]
    assert res.returncode == 0 and not errors, res.stdout + res.stderr


def test_package_says_what_it_needs(debs: dict[int, Path]) -> None:
    deb = debs[1]
    assert deb_field(deb, "Package") == "alarmgw"
    assert deb_field(deb, "Version") == f"{VERSION}-1"
    # "all" while nothing in the venv is compiled; else the build machine's architecture.
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True,
                             text=True, check=True, timeout=60).stdout
    compiled = re.search(r"\.so(\.[0-9.]+)?$", listing, re.M) is not None
    host = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert deb_field(deb, "Architecture") == (host if compiled else "all")
    depends = deb_field(deb, "Depends")
    assert re.search(r"python3 \(>= 3\.11\), python3 \(<< 3\.12\)", depends), depends
    assert "python3-lgpio" in deb_field(deb, "Recommends")
    assert "python3-picamera2" in deb_field(deb, "Recommends")
    assert "mosquitto-clients" in deb_field(deb, "Suggests")
    conffiles = subprocess.run(["dpkg-deb", "--info", str(deb), "conffiles"],
                               capture_output=True, text=True, check=True).stdout
    assert conffiles.split() == ["/etc/alarmgw/config.toml"]


def test_dependencies_come_from_pyproject(debs: dict[int, Path], tmp_path: Path) -> None:
    """Every runtime dependency pyproject.toml lists is in the venv, and nothing of the
    build directory is left in any file of it."""
    import tomllib

    subprocess.run(["dpkg-deb", "-x", str(debs[1]), str(tmp_path)], check=True, timeout=60)
    site = tmp_path / "opt/alarmgw/venv/lib/python3.11/site-packages"
    installed = {re.sub(r"[-_.]+", "-", p.name.split("-")[0]).lower()
                 for p in site.glob("*.dist-info")}
    wanted = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for req in wanted:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in installed, (req, sorted(installed))
    assert not list((tmp_path / "opt").rglob("__pycache__")), "bytecode is made by postinst"
    for f in (tmp_path / "opt/alarmgw/venv/bin").iterdir():
        if f.is_file() and not f.is_symlink():
            assert b"/tmp/" not in f.read_bytes(), f"{f.name} names a build directory"


# -- the clean Debian 12 root -------------------------------------------------------------

def _chroot_prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "installing into a chroot needs root (mmdebstrap, chroot, mount)"
    if shutil.which("mmdebstrap") is None:
        return "mmdebstrap is missing (Debian package mmdebstrap; scripts/setup installs it)"
    return None


needs_chroot = pytest.mark.skipif(_chroot_prerequisites() is not None,
                                  reason=str(_chroot_prerequisites()))
#: Making the root (mmdebstrap from Debian's mirror) is part of the first test's time.
ROOT_TIMEOUT = pytest.mark.timeout(900)


def chroot(root: Path, *argv: str, check: bool = True,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True,
                         env=CHROOT_ENV, timeout=timeout, check=False)
    if check:
        assert res.returncode == 0, (f"{' '.join(argv)}: exit {res.returncode}\n"
                                     f"{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A minimal Debian 12 (Essential packages, apt and systemd, as every Raspberry Pi OS
    has), with /proc mounted."""
    root = tmp_path_factory.mktemp("debian12") / "root"
    started = time.monotonic()
    res = subprocess.run(["mmdebstrap", "--variant=apt", "--include=systemd", "--quiet",
                          "--skip=cleanup/apt/lists", "bookworm", str(root), MIRROR],
                         capture_output=True, text=True, timeout=900, check=False)
    if res.returncode != 0:
        pytest.skip(f"mmdebstrap cannot make a Debian 12 root here (exit {res.returncode}):"
                    f" {res.stderr.strip()[-600:]}")
    print(f"mmdebstrap: {time.monotonic() - started:.1f} s")
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root / "proc")], check=False)


def version_installed(root: Path) -> str | None:
    res = chroot(root, "dpkg-query", "-W", "-f", "${Version} ${db:Status-Abbrev}", "alarmgw",
                 check=False)
    if res.returncode != 0:
        return None
    version, _, status = res.stdout.partition(" ")
    return version if status.strip() == "ii" else None


def dpkg_install(root: Path, deb: Path, *, check: bool = True
                 ) -> subprocess.CompletedProcess[str]:
    shutil.copy(deb, root / "tmp" / deb.name)
    return chroot(root, "dpkg", "-i", f"/tmp/{deb.name}", check=check)


def ensure_installed(root: Path, deb: Path) -> None:
    """The package of `deb` installed, with its dependencies."""
    want = deb_field(deb, "Version")
    if version_installed(root) == want:
        return
    dpkg_install(root, deb, check=False)
    chroot(root, "apt-get", "-f", "install", "-y")
    assert version_installed(root) == want


def entry(root: Path, db: str, name: str) -> list[str] | None:
    for line in (root / "etc" / db).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def owner(root: Path, rel: str) -> tuple[str, str, int]:
    """User name, group name and mode of a path in the root, by the root's databases."""
    st = (root / rel).stat()
    users = {int(f[2]): f[0] for f in (ln.split(":") for ln in
                                      (root / "etc/passwd").read_text().splitlines())}
    groups = {int(f[2]): f[0] for f in (ln.split(":") for ln in
                                       (root / "etc/group").read_text().splitlines())}
    return users[st.st_uid], groups[st.st_gid], stat.S_IMODE(st.st_mode)


def write_site_config(root: Path, tmp_path: Path, broker_port: int) -> None:
    """The technician's edit: a config of this site (here: the simulator's pins, the
    broker on this machine's loopback), in the conffile's place."""
    cfg = write_config(tmp_path / "cfg", broker_port=broker_port, debounce_ms=0)
    text = cfg.read_text().replace('state_dir = "state"', 'state_dir = "/var/lib/alarmgw"')
    text = text.replace('runtime_dir = "run"', 'runtime_dir = "/run/alarmgw"')
    assert "/var/lib/alarmgw" in text and "/run/alarmgw" in text
    (root / "etc/alarmgw/config.toml").write_text(text, encoding="utf-8")


@needs_chroot
@ROOT_TIMEOUT
@pytest.mark.slow
def test_install_into_a_clean_debian_12(clean_root: Path, debs: dict[int, Path],
                                        tmp_path: Path) -> None:
    root = clean_root
    assert version_installed(root) is None
    started = time.monotonic()
    first = dpkg_install(root, debs[1], check=False)
    # The clean root has no python3: dpkg leaves the package unconfigured, apt brings it.
    assert first.returncode != 0 and "python3" in first.stderr, first.stdout + first.stderr
    res = chroot(root, "apt-get", "-f", "install", "-y")
    print(f"dpkg -i + apt-get -f install: {time.monotonic() - started:.1f} s")
    assert version_installed(root) == f"{VERSION}-1"
    assert "not started: edit /etc/alarmgw/config.toml" in res.stdout, res.stdout

    # The program, from its installed path; every script starts from the venv's python.
    for program in ("/usr/bin/alarmgw", "/opt/alarmgw/venv/bin/alarmgw"):
        assert chroot(root, program, "--version").stdout.strip() == f"alarmgw {VERSION}"
    bindir = root / "opt/alarmgw/venv/bin"
    scripts = [f for f in sorted(bindir.iterdir())
               if f.is_file() and not f.is_symlink() and f.read_bytes()[:2] == b"#!"]
    assert {"alarmgw", "alarmgw-pi-smoke"} <= {f.name for f in scripts}
    for f in scripts:
        first_line = f.read_text(errors="replace").splitlines()[0]
        assert first_line == "#!/opt/alarmgw/venv/bin/python", f"{f.name}: {first_line}"
    assert os.readlink(root / "usr/bin/alarmgw-pi-smoke") == \
        "/opt/alarmgw/venv/bin/alarmgw-pi-smoke"
    smoke_help = chroot(root, "/usr/bin/alarmgw-pi-smoke", "--help")
    assert smoke_help.stdout.startswith("usage: alarmgw-pi-smoke")
    # postinst compiled the venv (the service itself may not write bytecode).
    assert list((root / "opt/alarmgw/venv/lib").rglob("__pycache__/*.pyc"))

    # The user, in the device groups that exist here (no gpio on Debian; on Raspberry Pi OS
    # there is one), and the drop-in that leaves the missing one out of the unit.
    user = entry(root, "passwd", "alarmgw")
    assert user is not None
    assert int(user[2]) < 1000 and user[5] == "/var/lib/alarmgw" and \
        user[6] == "/usr/sbin/nologin"
    for g in ("dialout", "video"):
        group = entry(root, "group", g)
        assert group is not None and "alarmgw" in group[3].split(","), group
    assert entry(root, "group", "gpio") is None
    dropin = root / "etc/systemd/system/alarmgw.service.d/10-groups.conf"
    assert "SupplementaryGroups=dialout video" in dropin.read_text()

    # Directories, owners and modes.
    assert owner(root, "etc/alarmgw") == ("root", "alarmgw", 0o750)
    assert owner(root, "etc/alarmgw/config.toml") == ("root", "alarmgw", 0o640)
    assert (root / "etc/alarmgw/config.toml").read_text() == \
        (REPO / "examples/config.toml").read_text()
    assert owner(root, "var/lib/alarmgw") == ("alarmgw", "alarmgw", 0o750)
    unit = root / "lib/systemd/system/alarmgw.service"
    assert unit.read_text() == (REPO / "systemd/alarmgw.service").read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/alarmgw.service"
    assert os.readlink(wants) == "/lib/systemd/system/alarmgw.service"
    assert (root / "opt/alarmgw/doc/operations.md").is_file()  # the unit's Documentation=

    # The example names certificates not installed yet: check-config says which.
    example = chroot(root, "alarmgw", "check-config", "/etc/alarmgw/config.toml", check=False)
    assert example.returncode == 2 and "broker.tls.ca" in example.stderr, example.stderr
    write_site_config(root, tmp_path, broker_port=1883)
    chroot(root, "alarmgw", "check-config", "/etc/alarmgw/config.toml")

    # The installed unit, with the root's systemd and the program it names.
    v = chroot(root, "systemd-analyze", "verify", "--man=no",
               "/lib/systemd/system/alarmgw.service", check=False)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "alarmgw.service" not in v.stderr, v.stderr


class ChrootGateway:
    """`alarmgw run` inside the root, as the alarmgw user, as its unit would start it."""

    def __init__(self, root: Path, log_path: Path) -> None:
        self.root = root
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ChrootGateway:
        # systemd's RuntimeDirectory= would make it.
        run = self.root / "run/alarmgw"
        run.mkdir(mode=0o750, exist_ok=True)
        st = (self.root / "var/lib/alarmgw").stat()
        os.chown(run, st.st_uid, st.st_gid)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["chroot", "--userspec=alarmgw:alarmgw", str(self.root),
                 "/opt/alarmgw/venv/bin/alarmgw", "--config", "/etc/alarmgw/config.toml",
                 "run"], stdout=log, stderr=subprocess.STDOUT,
                env={**CHROOT_ENV, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"})
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n"
                                     f"{self.log_path.read_text(errors='replace')}")
            try:
                self.control({"cmd": "ping"}, timeout=1.0)
                return self
            except ServiceNotRunningError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(self.log_path.read_text(errors="replace")) from None
                time.sleep(0.02)  # the socket is the service's only readiness signal

    def control(self, req: dict[str, object], timeout: float = 10.0) -> object:
        return request(self.root / SOCKET, req, timeout=timeout)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@needs_chroot
@ROOT_TIMEOUT
@pytest.mark.slow
def test_upgrade_keeps_and_delivers_100_queued_events(
        clean_root: Path, debs: dict[int, Path], tmp_path: Path,
        persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    root = clean_root
    broker, console = persistent
    ensure_installed(root, debs[1])
    write_site_config(root, tmp_path, broker.port)
    broker.kill()

    gw = ChrootGateway(root, tmp_path / "gateway.log").start()
    try:
        seqs = []
        for _ in range(QUEUED):
            res = gw.control({"cmd": "test-alarm", "point": "gate-panic", "drill": False})
            assert isinstance(res, dict)
            seqs.append(res["seq"])
        queue = gw.control({"cmd": "queue", "limit": 1})
        assert isinstance(queue, dict) and queue["stats"]["waiting"] >= QUEUED, queue
    finally:
        assert gw.stop() == 0, (tmp_path / "gateway.log").read_text(errors="replace")

    # Stop (above, as the old prerm would), replace, start.
    res = dpkg_install(root, debs[2])
    assert version_installed(root) == f"{VERSION}-2"
    assert "passes check-config" in res.stdout and "not running here" in res.stdout, res.stdout
    assert (root / STORE).is_file()

    broker.start()
    gw = ChrootGateway(root, tmp_path / "gateway-2.log").start()
    try:
        assert console.wait_for(
            lambda c: {e["seq"] for e in c.events_of("test")} >= set(seqs), 60), (
            f"got {len(console.events_of('test'))} of {QUEUED}; gaps {console.gaps()}")
    finally:
        assert gw.stop() == 0, (tmp_path / "gateway-2.log").read_text(errors="replace")
    tests = [e for e in console.events_of("test") if e["seq"] in set(seqs)]
    assert len({e["id"] for e in tests}) == QUEUED
    assert console.gaps() == {}


def set_store_schema(root: Path, version: int) -> None:
    """What a newer alarmgw with another store schema would have left (or undo it)."""
    path = root / STORE
    st = path.stat()
    db = sqlite3.connect(path)
    try:
        db.execute(f"PRAGMA user_version={version}")
        db.commit()
    finally:
        db.close()
    for f in path.parent.glob(path.name + "*"):
        os.chown(f, st.st_uid, st.st_gid)


@needs_chroot
@ROOT_TIMEOUT
@pytest.mark.slow
def test_downgrade_refused_while_the_store_is_newer_then_works(
        clean_root: Path, debs: dict[int, Path], tmp_path: Path) -> None:
    root = clean_root
    ensure_installed(root, debs[2])
    if not (root / STORE).is_file():
        pytest.skip("no store: the upgrade test before this one did not run")
    newer = SCHEMA_VERSION + 1
    set_store_schema(root, newer)
    res = dpkg_install(root, debs[1], check=False)
    assert res.returncode != 0
    assert "refusing to install alarmgw 0.1.0-1" in res.stderr, res.stderr
    assert f"schema version {newer}, written by a newer alarmgw" in res.stderr, res.stderr
    assert version_installed(root) == f"{VERSION}-2", "the refused downgrade changed the install"
    # The installed program says the same, and exits 2 (systemd does not restart on it).
    for argv in (("check-config",), ("run",)):
        cli = chroot(root, "alarmgw", "--config", "/etc/alarmgw/config.toml", *argv,
                     check=False, timeout=60)
        assert cli.returncode == 2, (argv, cli.stdout, cli.stderr)
        assert f"has schema version {newer}, written by a newer alarmgw" in cli.stderr, \
            cli.stderr
        assert "install the newer alarmgw again" in cli.stderr

    set_store_schema(root, SCHEMA_VERSION)
    dpkg_install(root, debs[1])
    assert version_installed(root) == f"{VERSION}-1"
    chroot(root, "alarmgw", "check-config", "/etc/alarmgw/config.toml")


@needs_chroot
@ROOT_TIMEOUT
@pytest.mark.slow
def test_remove_keeps_config_and_queue_purge_says_then_deletes(
        clean_root: Path, debs: dict[int, Path]) -> None:
    root = clean_root
    ensure_installed(root, debs[1])
    config = (root / "etc/alarmgw/config.toml").read_text()
    res = chroot(root, "apt-get", "remove", "-y", "alarmgw")
    assert "kept /etc/alarmgw" in res.stdout, res.stdout
    assert not (root / "opt/alarmgw").exists()
    assert not (root / "usr/bin/alarmgw").is_symlink()
    assert (root / "etc/alarmgw/config.toml").read_text() == config
    assert entry(root, "passwd", "alarmgw") is not None
    assert (root / "var/lib/alarmgw").is_dir(), "remove deleted the state"

    res = chroot(root, "apt-get", "purge", "-y", "alarmgw")
    said = res.stdout.find("purging: deleting /etc/alarmgw")
    assert said >= 0, res.stdout
    assert "/var/lib/alarmgw" in res.stdout[said:]
    assert not (root / "etc/alarmgw").exists()
    assert not (root / "var/lib/alarmgw").exists(), "the state is left after purge"
    assert entry(root, "passwd", "alarmgw") is None
    assert entry(root, "group", "alarmgw") is None
    assert not (root / "etc/systemd/system/alarmgw.service.d").exists()
    overrides = chroot(root, "dpkg-statoverride", "--list", check=False).stdout
    assert "alarmgw" not in overrides, overrides
    assert version_installed(root) is None

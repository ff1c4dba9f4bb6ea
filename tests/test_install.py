"""The unit file and the installer, checked with systemd's own tools.

`systemd-analyze verify` and `systemd-analyze security --offline` judge the
unit (exposure must stay at or under 2.0); `systemd/install.sh --root DIR`
lays a real install down in a directory (useradd --prefix, systemctl --root,
a real venv from Debian's python3 with the project installed in it) and the
tests look at what it left: user entries, venv, config mode and owner,
unit, and that an upgrade keeps a changed config and the state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gw import REPO

UNIT = REPO / "systemd" / "alarmgw.service"
INSTALL = REPO / "systemd" / "install.sh"
#: The highest exposure `systemd-analyze security` may give the unit.
MAX_EXPOSURE = 2.0
#: Debian's Python, which the installer builds the venv from (as on Raspberry Pi OS).
DEBIAN_PYTHON = Path("/usr/bin/python3")
#: pip arguments that install the project alone from the source tree, without the network.
OFFLINE_PIP = "--no-deps --no-build-isolation --no-index"

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed"
                                   " (Debian package systemd)")


def unit_with_exec(tmp_path: Path, unit: Path, executable: Path) -> Path:
    """A copy of `unit` whose ExecStart= runs `executable` (verify checks that it exists)."""
    text = unit.read_text()
    text, n = re.subn(r"^ExecStart=\S+", f"ExecStart={executable}", text, flags=re.M)
    assert n == 1, "the unit has no single ExecStart="
    copy = tmp_path / "alarmgw.service"
    copy.write_text(text)
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


# -- the unit ----------------------------------------------------------------------------------

def test_unit_says_what_the_service_needs() -> None:
    s = unit_settings(UNIT)
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["always"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["ExecStart"] == ["/opt/alarmgw/venv/bin/alarmgw --config /etc/alarmgw/config.toml"
                              " run"]
    assert s["User"] == ["alarmgw"]
    assert s["SupplementaryGroups"] == ["gpio dialout video"]
    for key in ("StateDirectory", "RuntimeDirectory", "ConfigurationDirectory"):
        assert s[key] == ["alarmgw"], key
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    assert s["DevicePolicy"] == ["closed"]
    allowed = " ".join(s["DeviceAllow"])
    for dev in ("gpiochip", "ttyUSB", "ttyAMA", "video4linux"):
        assert f"char-{dev} rw" in allowed, dev
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert s["CapabilityBoundingSet"] == [""]
    assert "@system-service" in s["SystemCallFilter"]
    # lgpio's pipes go to the runtime directory (tmpfs), not the read-only root.
    assert "LG_WD=/run/alarmgw" in s["Environment"]
    assert s["WorkingDirectory"] == ["/run/alarmgw"]
    # A config error (exit 2) is not retried every few seconds into the journal.
    assert s["RestartPreventExitStatus"] == ["2"]


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    unit = unit_with_exec(tmp_path, UNIT, Path("/bin/true"))
    res = analyze("verify", "--man=no", str(unit))
    assert res.returncode == 0, res.stderr
    assert "alarmgw.service" not in res.stderr, res.stderr  # not even a warning


@needs_analyze
def test_unit_security_exposure(tmp_path: Path) -> None:
    unit = unit_with_exec(tmp_path, UNIT, Path("/bin/true"))
    res = analyze("security", "--offline=true", f"--threshold={MAX_EXPOSURE * 10:.0f}",
                  "--json=short", str(unit))
    assert res.returncode == 0, f"exposure over {MAX_EXPOSURE}:\n{res.stdout}\n{res.stderr}"
    human = analyze("security", "--offline=true", str(unit))
    m = re.search(r"Overall exposure level for alarmgw\.service: (\d+\.\d)", human.stdout)
    assert m, human.stdout
    assert float(m.group(1)) <= MAX_EXPOSURE, human.stdout
    items = {i["name"]: i for i in json.loads(res.stdout)}
    # The settings the issue names are in effect, as systemd reads them.
    for name in ("NoNewPrivileges=", "ProtectSystem=", "ProtectHome=", "PrivateTmp=",
                 "RestrictAddressFamilies=~AF_PACKET", "CapabilityBoundingSet=~CAP_SYS_ADMIN",
                 "SystemCallFilter=~@privileged", "ProtectKernelModules=", "ProtectClock="):
        assert items[name]["set"] is True, (name, items[name])


def test_unit_fails_the_threshold_when_hardening_is_removed(tmp_path: Path) -> None:
    """The exposure check has teeth: the unit without its hardening scores far above 2.0."""
    if ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    lines = [ln for ln in UNIT.read_text().splitlines()
             if not ln.startswith(("Protect", "Private", "Restrict", "SystemCall", "Capability",
                                   "NoNewPriv", "DevicePolicy", "MemoryDeny", "LockPers"))]
    bare = tmp_path / "bare" / "alarmgw.service"
    bare.parent.mkdir()
    bare.write_text("\n".join(lines) + "\n")
    unit = unit_with_exec(tmp_path, bare, Path("/bin/true"))
    res = analyze("security", "--offline=true", f"--threshold={MAX_EXPOSURE * 10:.0f}",
                  str(unit))
    assert res.returncode != 0, res.stdout


# -- the installer -------------------------------------------------------------------------

def _installer_prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "the installer needs root (useradd --prefix, chown)"
    if shutil.which("useradd") is None and not Path("/usr/sbin/useradd").exists():
        return "useradd is missing (Debian package passwd)"
    if shutil.which("systemctl") is None:
        return "systemctl is missing (Debian package systemd)"
    if not DEBIAN_PYTHON.exists():
        return f"{DEBIAN_PYTHON} is missing (Debian package python3)"
    res = subprocess.run([str(DEBIAN_PYTHON), "-c", "import ensurepip, venv, setuptools, wheel"],
                         capture_output=True, check=False)
    if res.returncode != 0:
        return ("Debian's python3 cannot build the venv offline: install python3-venv"
                " python3-setuptools python3-wheel")
    return None


needs_installer = pytest.mark.skipif(_installer_prerequisites() is not None,
                                     reason=str(_installer_prerequisites()))


@dataclass
class Root:
    path: Path

    def __truediv__(self, rel: str) -> Path:
        return self.path / rel.lstrip("/")

    def passwd(self, name: str) -> list[str] | None:
        return _entry(self / "etc/passwd", name)

    def group(self, name: str) -> list[str] | None:
        return _entry(self / "etc/group", name)


def _entry(path: Path, name: str) -> list[str] | None:
    for line in path.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def install(root: Root, *args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["bash", str(INSTALL), "--root", str(root.path), *args],
                         capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "ALARMGW_PIP_ARGS": OFFLINE_PIP,
                              "ALARMGW_PYTHON": str(DEBIAN_PYTHON)})
    assert res.returncode == 0, f"install.sh {' '.join(args)}: exit {res.returncode}\n" \
                                f"{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Root]:
    """An empty system root with the groups of a Debian that is not a Pi: no gpio group."""
    r = Root(tmp_path / "root")
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (r / "etc/group").write_text("root:x:0:\ndialout:x:20:\nvideo:x:44:\n")
    yield r


@needs_installer
def test_install_lays_everything_down(root: Root, tmp_path: Path) -> None:
    res = install(root)
    # The system user, with a group of its own and the device groups that exist.
    user = root.passwd("alarmgw")
    assert user is not None, (root / "etc/passwd").read_text()
    uid, gid = int(user[2]), int(user[3])
    assert uid < 1000, "not a system user"
    assert user[5] == "/var/lib/alarmgw"
    assert user[6] == "/usr/sbin/nologin"
    group = root.group("alarmgw")
    assert group is not None and int(group[2]) == gid
    for g in ("dialout", "video"):
        entry = root.group(g)
        assert entry is not None and "alarmgw" in entry[3].split(","), entry
    assert root.group("gpio") is None  # not invented
    dropin = root / "etc/systemd/system/alarmgw.service.d/10-groups.conf"
    assert "SupplementaryGroups=dialout video" in dropin.read_text()

    # The venv: a release, the link to it, and a program that runs.
    venv = root / "opt/alarmgw/venv"
    assert venv.is_symlink()
    assert os.readlink(venv).startswith("releases/alarmgw-0.1.0-")
    program = venv / "bin/alarmgw"
    # Through the venv's interpreter: its first line names the installed path, /opt/alarmgw
    # (test_root_install_scripts_start_from_the_installed_path starts it from there).
    out = subprocess.run([str(venv / "bin/python"), str(program), "--version"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == "alarmgw 0.1.0"
    cfg_text = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg_text
    assert os.readlink(root / "usr/local/bin/alarmgw") == "/opt/alarmgw/venv/bin/alarmgw"
    # The unit's Documentation= points at the technician's guide.
    assert (root / "opt/alarmgw/doc/operations.md").read_text() == \
        (REPO / "docs/operations.md").read_text()

    # The config: the example, 0640, root:alarmgw.
    config = root / "etc/alarmgw/config.toml"
    st = config.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (0, gid)
    assert config.read_text() == (REPO / "examples/config.toml").read_text()
    etc = (root / "etc/alarmgw").stat()
    assert stat.S_IMODE(etc.st_mode) == 0o750 and etc.st_gid == gid
    state = (root / "var/lib/alarmgw").stat()
    assert (state.st_uid, state.st_gid, stat.S_IMODE(state.st_mode)) == (uid, gid, 0o750)

    # The unit, enabled; not started with the untouched example config.
    unit = root / "etc/systemd/system/alarmgw.service"
    assert unit.read_text() == UNIT.read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/alarmgw.service"
    assert os.readlink(wants) == "/etc/systemd/system/alarmgw.service"
    assert "not started: edit" in res.stdout
    assert "under --root, not run: systemctl daemon-reload" in res.stdout

    if ANALYZE is not None:
        # The unit as installed verifies with the program the installer laid down.
        copy = unit_with_exec(tmp_path, unit, program)
        v = analyze("verify", "--man=no", str(copy))
        assert v.returncode == 0, v.stderr


def at_installed_location(root: Root, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run `argv` with the root's /opt/alarmgw mounted at /opt/alarmgw (in a mount namespace
    of its own), so that the kernel starts each script through the path in its first line
    as the booted image would."""
    script = ('mount -t tmpfs alarmgw-test /opt && mkdir /opt/alarmgw'
              ' && mount --bind "$0/opt/alarmgw" /opt/alarmgw && exec "$@"')
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script, str(root.path), *argv],
                          capture_output=True, text=True, timeout=60, check=False)


@needs_installer
def test_root_install_scripts_start_from_the_installed_path(root: Root) -> None:
    install(root)
    release = os.readlink(root / "opt/alarmgw/venv")
    interpreter = f"/opt/alarmgw/{release}/bin/python"
    bindir = root / "opt/alarmgw/venv/bin"
    scripts = [f for f in sorted(bindir.iterdir())
               if f.is_file() and not f.is_symlink() and f.read_bytes()[:2] == b"#!"]
    assert any(f.name == "alarmgw" for f in scripts), [f.name for f in scripts]
    for f in scripts:
        first = f.read_text(errors="replace").splitlines()[0]
        assert first == f"#!{interpreter}", f"{f.name}: {first}"
    for f in sorted(bindir.iterdir()):
        if f.is_file() and not f.is_symlink():
            assert str(root.path) not in f.read_text(errors="replace"), f"{f} names the build root"
    assert str(root.path) not in (root / "opt/alarmgw/venv/pyvenv.cfg").read_text()

    probe = at_installed_location(root, "true")
    if probe.returncode != 0:
        pytest.skip(f"cannot mount the root's /opt/alarmgw at /opt/alarmgw here: {probe.stderr}")
    # The unit's ExecStart= and the link on PATH, started by the kernel from their first line.
    for program in ("/opt/alarmgw/venv/bin/alarmgw", os.readlink(root / "usr/local/bin/alarmgw")):
        res = at_installed_location(root, program, "--version")
        assert res.returncode == 0, f"{program}: exit {res.returncode}\n{res.stderr}"
        assert res.stdout.strip() == "alarmgw 0.1.0"


@needs_installer
def test_upgrade_keeps_a_changed_config_and_the_state(root: Root) -> None:
    install(root)
    config = root / "etc/alarmgw/config.toml"
    changed = config.read_text().replace('id = "gw-01"', 'id = "gw-07"')
    assert changed != config.read_text()
    config.write_text(changed)
    os.chmod(config, 0o640)
    store = root / "var/lib/alarmgw/outbox.sqlite3"
    store.write_bytes(b"events waiting for the platform")
    first = os.readlink(root / "opt/alarmgw/venv")

    res = install(root, "--upgrade")
    assert config.read_text() == changed
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert store.read_bytes() == b"events waiting for the platform"
    assert f"keeping {config} as it is" in res.stdout
    example = root / "etc/alarmgw/config.toml.example"
    assert example.read_text() == (REPO / "examples/config.toml").read_text()
    second = os.readlink(root / "opt/alarmgw/venv")
    assert second != first, "the upgrade did not switch to a new release"
    releases = sorted(p.name for p in (root / "opt/alarmgw/releases").iterdir())
    assert releases == sorted([first.removeprefix("releases/"), second.removeprefix("releases/")])
    users = [ln for ln in (root / "etc/passwd").read_text().splitlines()
             if ln.startswith("alarmgw:")]
    assert len(users) == 1, f"the user was created twice: {users}"


@needs_installer
def test_upgrade_needs_an_install(root: Root) -> None:
    res = subprocess.run(["bash", str(INSTALL), "--root", str(root.path), "--upgrade"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1
    assert "not installed" in res.stderr


@needs_installer
def test_uninstall_keeps_data_unless_purged(root: Root) -> None:
    install(root)
    store = root / "var/lib/alarmgw/outbox.sqlite3"
    store.write_bytes(b"waiting")
    install(root, "--uninstall")
    assert not (root / "opt/alarmgw").exists()
    assert not (root / "etc/systemd/system/alarmgw.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/alarmgw.service").is_symlink()
    assert not (root / "usr/local/bin/alarmgw").is_symlink()
    assert (root / "etc/alarmgw/config.toml").exists()
    assert store.read_bytes() == b"waiting"
    assert root.passwd("alarmgw") is not None

    install(root, "--uninstall", "--purge")
    assert not (root / "etc/alarmgw").exists()
    assert not (root / "var/lib/alarmgw").exists()
    assert root.passwd("alarmgw") is None
    assert root.group("alarmgw") is None
    dialout = root.group("dialout")
    assert dialout is not None and "alarmgw" not in dialout[3]

"""Whether the gateway's directories (gateway.state_dir, gateway.runtime_dir) can be used.

A directory the service cannot create or write is a configuration error: `alarmgw run`
checks both before it starts the service, so that it exits 2 (which systemd's unit does
not restart on, RestartPreventExitStatus=2) instead of failing again every 5 s, and
`alarmgw check-config` checks them first, leaving nothing behind.

The check is only true for the user who runs it: check-config asks systemd which user
the service runs as (the unit's User=) and, when that is someone else, says it cannot
tell rather than guess from permission bits.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.config import Config
from gateway.errors import ConfigError

Verdict = Literal["ok", "problem", "cannot_tell"]


@dataclass(frozen=True)
class DirectoryCheck:
    """What was found about one directory key."""

    key: str
    """The config key, e.g. "gateway.state_dir"."""
    path: str
    verdict: Verdict
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def directories(cfg: Config) -> list[tuple[str, Path]]:
    """The directories the service creates and writes, by config key."""
    return [("gateway.state_dir", cfg.gateway.state_dir),
            ("gateway.runtime_dir", cfg.gateway.runtime_dir)]


def user_name(uid: int | None = None) -> str:
    uid = os.getuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def probe(path: Path, *, keep: bool) -> str | None:
    """Create `path` (and its missing parents) if needed, then create and remove a file in
    it, as this user. Returns what went wrong, or None. `keep=False` removes again the
    directories it created."""
    created: list[Path] = []
    try:
        missing: list[Path] = []
        p = path
        while not p.is_dir():
            if p.exists() or p.is_symlink():
                return f"{p} is not a directory"
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except OSError as exc:
                return f"cannot create {d}: {exc.strerror or exc}"
            created.append(d)
        try:
            fd, scratch = tempfile.mkstemp(prefix=".alarmgw-check-", dir=path)
        except OSError as exc:
            return f"cannot write in {path}: {exc.strerror or exc}"
        os.close(fd)
        os.unlink(scratch)
        return None
    except OSError as exc:
        return f"cannot look at {path}: {exc.strerror or exc}"
    finally:
        if not keep:
            for d in reversed(created):
                try:
                    d.rmdir()
                except OSError:
                    pass


def store_problem(cfg: Config, key: str) -> str | None:
    """For gateway.state_dir: why the store in it cannot be opened by this alarmgw (a file
    of a newer schema, left by a downgrade), or None. Restarting cannot fix that."""
    if key != "gateway.state_dir":
        return None
    from gateway.service.paths import store_path
    from gateway.store.schema import file_version, version_problem

    path = store_path(cfg)
    version = file_version(path)
    return None if version is None else version_problem(path, version)


def _describe_existing(path: Path) -> str:
    """Owner, group and mode of an existing directory, or that it does not exist yet."""
    try:
        st = path.stat()
    except OSError:
        return f"{path} does not exist yet"
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return (f"{path} exists, {user_name(st.st_uid)}:{group}"
            f" mode {stat.S_IMODE(st.st_mode):04o}")


def check(cfg: Config, service_user: str | None) -> list[DirectoryCheck]:
    """Check each directory as this user, when this user is the service's.

    `service_user`: the user the service runs as (the systemd unit's User=; "" for
    root), or None when no unit says so (then whoever runs `alarmgw run` is the
    service's user: this one)."""
    me = user_name()
    same = service_user is None or service_user == me or (service_user == "" and
                                                          os.getuid() == 0)
    results: list[DirectoryCheck] = []
    for key, path in directories(cfg):
        if not same:
            results.append(DirectoryCheck(
                key, str(path), "cannot_tell",
                f"cannot tell whether user {service_user or 'root'} (the service's, the"
                f" unit's User=) can create and write it: this check runs as {me};"
                f" {_describe_existing(path)}; check as the service's user:"
                f" sudo -u {service_user or 'root'} alarmgw check-config"))
            continue
        problem = probe(path, keep=False) or store_problem(cfg, key)
        if problem is None:
            results.append(DirectoryCheck(key, str(path), "ok",
                                          f"can be created and written by {me}"))
        else:
            results.append(DirectoryCheck(
                key, str(path), "problem",
                f"{path} cannot be used by {me}, who runs the service: {problem}"))
    return results


def first_problem(cfg: Config, results: list[DirectoryCheck]) -> ConfigError | None:
    """The first problem found, as the ConfigError it is."""
    for r in results:
        if r.verdict == "problem":
            return ConfigError(cfg.path, r.key, r.detail)
    return None


def prepare(cfg: Config) -> None:
    """For `alarmgw run`: create the directories and check that this user can write them;
    raise ConfigError naming the key when it cannot."""
    me = user_name()
    for key, path in directories(cfg):
        problem = probe(path, keep=True)
        schema = store_problem(cfg, key)
        if schema is not None:
            raise ConfigError(cfg.path, key, schema)
        if problem is not None:
            raise ConfigError(cfg.path, key, f"{path} cannot be used by {me}, who runs the"
                              f" service: {problem}; give a directory this user may create"
                              " and write (under systemd: StateDirectory= and"
                              " RuntimeDirectory= make /var/lib/alarmgw and /run/alarmgw so)")

"""What every config section is read with: a TOML table that ticks off the keys it reads.

`TomlTable` wraps one table of the document together with its dotted name
("inputs[2]", "broker.tls"), so that every refusal names the file and the key.
A key that no section knows is an error, reported as itself with the closest
known key ("broker.hots: unknown key; did you mean host?"): a mistyped key that
is silently ignored is a button that silently does not work.

Next to it, the rules several sections share: the patterns of ids, the limit on
names and locations that people read, user names with passwords, and the
permissions of files that hold keys.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from gateway.errors import ConfigError

# Names that end up in MQTT topics: no wildcards, separators or '$'.
TOPIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Ids of inputs, outputs, cameras, buses and modules: they name events and topics.
POINT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# Names and locations of inputs, outputs, modules and cameras go into the SMS texts of an
# escalation (70 characters a segment in UCS-2, the encoding of Chinese text) and onto the
# duty officers' screens at the platform. 100 characters hold any real room or device name
# with room to spare; more is a paste gone wrong, and would cost an SMS many segments.
MAX_LABEL_CHARS = 100

#: The system user the service runs as (systemd/alarmgw.service, systemd/install.sh).
SERVICE_USER = "alarmgw"

_SPELLING_HINT = "unknown key (check the spelling against examples/config.toml)"

T = TypeVar("T")


def suggest(word: str, known: Collection[str]) -> str:
    """'; did you mean X?' for the known word closest to `word`, or '' if none is close."""
    close = difflib.get_close_matches(word, sorted(set(known) - {word}), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def unknown_key(key: str, known: Collection[str]) -> str:
    """The problem text of an unknown key, with the closest known key when there is one."""
    hint = suggest(key, known)
    return f"unknown key{hint}" if hint else _SPELLING_HINT


class TomlTable:
    """A TOML table being read: every key read is ticked off; leftovers are errors.

    A section calls `expect` with every key the table may hold before it reads any, so
    that a typo is reported as itself rather than as the required key it was meant to be.
    """

    def __init__(self, path: Path, prefix: str, data: Mapping[str, Any]) -> None:
        self.path = path
        self.prefix = prefix
        self.data = data
        self.seen: set[str] = set()
        self.known: frozenset[str] | None = None
        """The keys given to `expect`; None until it is called."""

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), problem)

    def raw(self, name: str, required: bool) -> Any:
        """The value of `name` as TOML gave it (None when absent), ticked off as read."""
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise self.error(name, "missing (required)")
            return None
        return self.data[name]

    def text(self, name: str, default: str | None = None, *, pattern: re.Pattern[str] | None = None,
            required: bool = False) -> str:
        value = self.raw(name, required and default is None)
        if value is None:
            if default is None:
                raise self.error(name, "missing (required)")
            return default
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, not {type_name(value)}")
        if not value.strip():
            raise self.error(name, "must not be empty")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(name, f"{value!r} is not allowed: use letters, digits, '-', '_'"
                             f" (pattern {pattern.pattern})")
        return value

    def opt_str(self, name: str) -> str | None:
        if name not in self.data:
            self.seen.add(name)
            return None
        return self.text(name)

    def label(self, name: str, default: str) -> str:
        """A name or location that people read: text of at most `MAX_LABEL_CHARS`."""
        value = self.text(name, default)
        if len(value) > MAX_LABEL_CHARS:
            raise self.error(name, f"is {len(value)} characters long; use at most"
                             f" {MAX_LABEL_CHARS}: it goes into SMS texts and onto the duty"
                             " officers' screens")
        return value

    def integer(self, name: str, default: int | None, *, min: int, max: int) -> int:
        value = self.raw(name, default is None)
        if value is None:
            assert default is not None
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, not {type_name(value)}")
        if not min <= value <= max:
            raise self.error(name, f"{value} is out of range ({min} to {max})")
        return value

    def number(self, name: str, default: float | None, *, min: float, max: float) -> float:
        value = self.raw(name, default is None)
        if value is None:
            assert default is not None
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"must be a number, not {type_name(value)}")
        if not min <= value <= max:
            raise self.error(name, f"{value} is out of range ({min} to {max})")
        return float(value)

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, not {type_name(value)}")
        return value

    def choice(self, name: str, choices: tuple[T, ...], default: T | None = None) -> T:
        value = self.raw(name, default is None)
        if value is None:
            assert default is not None
            return default
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise self.error(name, f"{value!r} is not one of {allowed}")
        return cast(T, value)

    def path_(self, name: str, default: Path | None = None) -> Path:
        if name not in self.data and default is not None:
            self.seen.add(name)
            return default
        value = self.text(name)
        p = Path(value)
        if not p.is_absolute():
            # Relative to the config file, made absolute without following symlinks: a
            # serial port given as a stable link (run/ttyRS485, /dev/serial/by-id/...)
            # must stay that link, not the /dev/pts/N or ttyUSB0 it points to today.
            p = Path(os.path.normpath(self.path.parent.absolute() / p))
        return p

    def opt_path(self, name: str) -> Path | None:
        if name not in self.data:
            self.seen.add(name)
            return None
        return self.path_(name)

    def table(self, name: str, *, required: bool = False) -> TomlTable | None:
        value = self.raw(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table ([{self.key(name)}]), not {type_name(value)}")
        return TomlTable(self.path, self.key(name), value)

    def array_of_tables(self, name: str) -> list[TomlTable]:
        value = self.raw(name, False)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(name, f"must be an array of tables ([[{self.key(name)}]])")
        return [TomlTable(self.path, f"{self.key(name)}[{i}]", v) for i, v in enumerate(value)]

    def expect(self, *keys: str, related: Collection[str] = ()) -> None:
        """Refuse unknown keys up front, so a typo is reported as itself rather than as
        the missing key it was meant to be. `related`: keys of the table's other forms (a
        GPIO input's `modbus`), offered as suggestions but not accepted here."""
        self.known = frozenset(keys)
        unknown = sorted(set(self.data) - self.known)
        if unknown:
            raise self.error(unknown[0], unknown_key(unknown[0], self.known | set(related)))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            known = self.known if self.known is not None else self.seen
            raise self.error(unknown[0], unknown_key(unknown[0], known))


def type_name(value: object) -> str:
    """How a TOML value's type reads in a message: 'a string', 'an integer', ..."""
    return {
        str: "a string", int: "an integer", float: "a number", bool: "a boolean",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)


def empty_table(path: Path, prefix: str) -> TomlTable:
    """An absent optional table, read like an empty one: every key takes its default."""
    return TomlTable(path, prefix, {})


def credentials(t: TomlTable) -> tuple[str | None, str | None]:
    """username with password or password_file (read here, never logged)."""
    username = t.opt_str("username")
    password = t.opt_str("password")
    password_file = t.opt_path("password_file")
    if password is not None and password_file is not None:
        raise t.error("password_file", "give password or password_file, not both")
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise t.error("password_file", f"cannot read {password_file}: {exc.strerror}"
                          ) from exc
    if password is not None and username is None:
        raise t.error("username", "missing: a password needs a username")
    return username, password


def unprotected_key_file(path: Path) -> str | None:
    """What is wrong with the permissions of key file `path`, or None when only its owner
    may use it (or it cannot be looked at: reading it then says why).

    The rule is ssh's for private keys: no permission bit for group or others (0600 or
    0400). It is checked whoever runs the check, not only for files the caller owns as ssh
    does, so that `sudo alarmgw check-config` refuses what the service would.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except (OSError, ValueError):
        return None
    if not mode & 0o077:
        return None
    return (f"UNPROTECTED PRIVATE KEY FILE: {path} has mode {mode:04o}, so users other than"
            " its owner can read it; a key file must be readable by its owner only: chmod 600"
            f" {path}, and it must be owned by the service user (chown {SERVICE_USER} {path})")

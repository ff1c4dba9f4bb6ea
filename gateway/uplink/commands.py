"""Platform commands (protocol v1): parse, authenticate, check freshness, refuse replays.

A command arrives on `alarmgw/v1/{site}/{gateway}/cmd` as one JSON object:

    {"v": 1, "id": "c-0001", "op": "ack", "issued_at": "2026-11-28T15:37:04.123Z",
     "args": {"event_id": "...", "operator": "张警官"}, "sig": "<64 hex digits>"}

`sig` is HMAC-SHA256, keyed with this gateway's command key, over the
canonical form of the object without `sig`: JSON with keys sorted, no
whitespace, UTF-8, non-ASCII characters as themselves (`canonical()`).
The key is per gateway, so a command signed for one gateway never verifies
on another.

Everything here is pure validation; nothing changes until a command has
passed every check. A refused command gets a result with a reason code:

    malformed     not JSON, not an object, a field missing or of the wrong type, too big
    unsigned      no `sig` while signatures are required
    bad_signature `sig` does not verify with this gateway's key
    stale         `issued_at` more than max_age_s behind or max_future_s ahead of our clock
    replayed      an `id` already seen
    unknown_op    an `op` this gateway does not know
    bad_args      the op's arguments are wrong
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.errors import GatewayError

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 16 * 1024
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def _str(max_len: int) -> dict[str, Any]:
    return {"type": str, "max": max_len}


# op -> {arg: (spec, required)}
OPS: dict[str, dict[str, tuple[dict[str, Any], bool]]] = {
    "ping": {},
    "ack": {"event_id": (_str(64), True), "operator": (_str(64), True),
            "note": (_str(500), False)},
    "drill": {"point": (_str(64), True), "operator": (_str(64), False)},
    "snapshot": {"camera": (_str(64), True)},
    "output": {"output": (_str(64), True), "on": ({"type": bool}, True),
               "duration_s": ({"type": (int, float), "min": 0, "max": 86400}, False)},
    # An inspection window (巡检): `points` or `all` (neither: every panic and tamper
    # input), for `minutes` (default 30), opened by `operator`.
    "inspect_start": {"points": ({"type": list, "items": _str(64), "max_items": 256}, False),
                      "all": ({"type": bool}, False),
                      "minutes": ({"type": int, "min": 1, "max": 240}, False),
                      "operator": (_str(64), True)},
    "inspect_stop": {"operator": (_str(64), False)},
}


@dataclass(frozen=True)
class Command:
    """A command that passed every check."""

    id: str
    op: str
    issued_at: str
    args: dict[str, Any]
    signed: bool


class Refusal(GatewayError, ValueError):
    """Why a command was refused; `id` and `op` are filled in when they could be read."""

    def __init__(self, code: str, reason: str, id: str | None = None,
                 op: str | None = None) -> None:
        self.code = code
        self.reason = reason
        self.id = id
        self.op = op
        super().__init__(f"{code}: {reason}")


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes a command's signature covers: `obj` without `sig`, canonical JSON."""
    body = {k: v for k, v in obj.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sign(obj: dict[str, Any], key: bytes) -> dict[str, Any]:
    """Return `obj` with its `sig` (for the platform side and tests)."""
    signed = dict(obj)
    signed["sig"] = hmac.new(key, canonical(obj), hashlib.sha256).hexdigest()
    return signed


def parse_time(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time; ValueError if it is not one."""
    if not _TIME.fullmatch(text):
        raise ValueError(f"not an RFC 3339 time: {text[:40]!r}")
    t = text.replace("Z", "+00:00")
    # datetime takes at most 6 fractional digits.
    t = re.sub(r"(\.\d{6})\d+", r"\1", t)
    return datetime.fromisoformat(t).astimezone(UTC).timestamp()


@dataclass
class CommandChecker:
    """Authenticates and de-duplicates commands for one gateway."""

    key: bytes | None
    """HMAC key; None only when signatures are explicitly not required."""
    require_signature: bool = True
    max_age_s: float = 40.0
    max_future_s: float = 20.0
    remember: int = 4096
    """How many command ids to remember against replays."""
    persist: Callable[[str], None] | None = None
    """Called with each id remembered, to keep it across restarts (may raise)."""
    _seen: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def preload(self, ids: Iterable[str]) -> None:
        """Remember ids seen before this process started (oldest first)."""
        for cid in ids:
            self._seen[cid] = 0.0
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)

    def check(self, payload: bytes, *, now: float | None = None,
              clock_synced: bool = True) -> Command:
        """Return the command in `payload` or raise `Refusal`.

        `clock_synced`: when our own clock is not synced (a Pi without RTC before
        NTP), freshness cannot be judged; the command is then checked by
        signature and replay only.
        """
        if len(payload) > MAX_COMMAND_BYTES:
            raise Refusal("malformed", f"command of {len(payload)} bytes is over the"
                          f" {MAX_COMMAND_BYTES}-byte limit")
        try:
            obj = json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise Refusal("malformed", f"not UTF-8 JSON: {str(exc)[:100]}") from exc
        if not isinstance(obj, dict):
            raise Refusal("malformed", f"expected a JSON object, got {type(obj).__name__}")
        cid = obj.get("id")
        op = obj.get("op")
        rid = cid if isinstance(cid, str) and _ID.fullmatch(cid) else None
        rop = op if isinstance(op, str) and len(op) <= 32 else None

        def refuse(code: str, reason: str) -> Refusal:
            return Refusal(code, reason, rid, rop)

        v = obj.get("v")
        # `True == 1` in Python: a JSON boolean (or 1.0) must not pass for the integer 1.
        if type(v) is not int or v != 1:
            raise refuse("malformed", "field 'v' must be the integer 1 (protocol version)")
        if rid is None:
            raise refuse("malformed", "field 'id' must be a string of letters, digits and"
                         " _.:- up to 128 characters")
        if rop is None:
            raise refuse("malformed", "field 'op' must be a string")
        issued_at = obj.get("issued_at")
        if not isinstance(issued_at, str):
            raise refuse("malformed", "field 'issued_at' must be an RFC 3339 time string")
        args = obj.get("args", {})
        if not isinstance(args, dict):
            raise refuse("malformed", "field 'args' must be an object")
        unknown = sorted(set(obj) - {"v", "id", "op", "issued_at", "args", "sig"})
        if unknown:
            raise refuse("malformed", f"unknown field {unknown[0]!r}")
        sig = obj.get("sig")
        signed = False
        if sig is not None:
            if not isinstance(sig, str) or not re.fullmatch(r"[0-9a-f]{64}", sig):
                raise refuse("malformed", "field 'sig' must be 64 lowercase hex digits")
            if self.key is None:
                raise refuse("bad_signature", "this gateway has no command key to verify with")
            try:
                body = canonical(obj)
            except ValueError as exc:
                raise refuse("malformed", f"cannot canonicalise: {exc}") from exc
            expected = hmac.new(self.key, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, sig):
                raise refuse("bad_signature", "signature does not verify with this gateway's"
                             " command key")
            signed = True
        elif self.require_signature:
            raise refuse("unsigned", "commands must be signed (field 'sig')")
        try:
            issued = parse_time(issued_at)
        except ValueError as exc:
            raise refuse("malformed", f"field 'issued_at': {exc}") from exc
        now = time.time() if now is None else now
        if clock_synced:
            if issued < now - self.max_age_s:
                raise refuse("stale", f"issued {now - issued:.0f} s ago; commands older than"
                             f" {self.max_age_s:.0f} s are refused")
            if issued > now + self.max_future_s:
                raise refuse("stale", f"issued {issued - now:.0f} s in the future; more than"
                             f" {self.max_future_s:.0f} s ahead is refused (check the"
                             " platform's and the gateway's clocks)")
        if rid in self._seen:
            raise refuse("replayed", f"command id {rid!r} was already received")
        if rop not in OPS:
            self._remember(rid)
            raise refuse("unknown_op", f"unknown op {rop!r} (known: {', '.join(sorted(OPS))})")
        checked = _check_args(rop, args)
        if checked is not None:
            self._remember(rid)
            raise refuse("bad_args", checked)
        self._remember(rid)
        return Command(id=rid, op=rop, issued_at=issued_at, args=args, signed=signed)

    def _remember(self, cid: str) -> None:
        self._seen[cid] = time.monotonic()
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        if self.persist is not None:
            try:
                self.persist(cid)
            except Exception as exc:
                # Remembered in memory all the same: only a restart would forget it.
                log.error("commands: could not keep command id %r across restarts: %s",
                          cid, exc)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_args(op: str, args: dict[str, Any]) -> str | None:
    spec = OPS[op]
    unknown = sorted(set(args) - set(spec))
    if unknown:
        allowed = ", ".join(sorted(spec)) or "none"
        return f"{op}: unknown argument {unknown[0]!r} (allowed: {allowed})"
    for name, (rule, required) in spec.items():
        if name not in args:
            if required:
                return f"{op}: argument {name!r} is required"
            continue
        value = args[name]
        kind = rule["type"]
        if isinstance(value, bool) and kind is not bool:
            return f"{op}: argument {name!r} must not be a boolean"
        if not isinstance(value, kind):
            return f"{op}: argument {name!r} has the wrong type ({type(value).__name__})"
        if isinstance(value, list):
            if not value or len(value) > rule["max_items"]:
                return (f"{op}: argument {name!r} must list 1 to {rule['max_items']}"
                        " entries")
            item = rule["items"]
            for entry in value:
                if not isinstance(entry, item["type"]) or not entry.strip() \
                        or len(entry) > item["max"]:
                    return (f"{op}: argument {name!r}: every entry must be a string of 1 to"
                            f" {item['max']} characters")
            continue
        if isinstance(value, str) and (not value.strip() or len(value) > rule["max"]):
            return f"{op}: argument {name!r} must be 1 to {rule['max']} characters"
        if isinstance(value, int | float) and not isinstance(value, bool) and "min" in rule \
                and not rule["min"] <= value <= rule["max"]:
            return f"{op}: argument {name!r} must be from {rule['min']} to {rule['max']}"
    return None

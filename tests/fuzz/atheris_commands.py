"""Coverage-guided fuzzing (atheris) of the platform command parser: only Refusal may escape.

Optional, outside pytest and CI: atheris ships wheels for x86_64 Linux only.

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/atheris_commands.py -max_total_time=120

Each input is either raw bytes handed to the parser as an MQTT payload, or (first byte odd)
a command-shaped JSON object built from the input and signed with the gateway's key, so that
the fuzzer gets past the signature to the time, id, op and argument checks.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import atheris

with atheris.instrument_imports():
    from gateway.uplink.commands import CommandChecker, Refusal, sign

KEY = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
NOW = 1_795_000_000.0
FIELDS = ["v", "id", "op", "issued_at", "args", "sig", "x"]
OPS = ["ack", "snapshot", "drill", "ping", "output", "bogus", ""]


def value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    kind = fdp.ConsumeIntInRange(0, 8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(8)
    if kind == 3:
        return fdp.ConsumeRegularFloat()
    if kind in (4, 5):
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    if kind == 6:
        return "2026-11-18T" + fdp.ConsumeUnicodeNoSurrogates(16)  # time-like
    if kind == 7:
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {fdp.ConsumeUnicodeNoSurrogates(8): value(fdp, depth + 1)
            for _ in range(fdp.ConsumeIntInRange(0, 3))}


def command(fdp: atheris.FuzzedDataProvider) -> bytes:
    # A fresh, well-formed command (NOW is 2026-11-18T11:06:40Z) with some fields changed.
    issued = fdp.PickValueInList(["2026-11-18T11:06:40.000Z", "2026-11-18T11:06:30Z",
                                  "2026-11-18T19:06:40+08:00", "2026-11-18T11:06:40.123456789Z",
                                  "2026-11-18t11:06:40z", "2026-11-18T11:05:00Z"])
    obj: dict[str, Any] = {"v": 1, "id": "c-1", "op": fdp.PickValueInList(OPS),
                           "issued_at": issued, "args": {}}
    if fdp.ConsumeBool():
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            obj[fdp.PickValueInList(FIELDS)] = value(fdp)
    if isinstance(obj.get("args"), dict) and fdp.ConsumeBool():
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            obj["args"][fdp.PickValueInList(["event_id", "camera", "output", "state", "point",
                                             "operator", "note", "seconds", "x"])] = value(fdp)
    if fdp.ConsumeBool():
        try:
            obj = sign(obj, KEY)
        except ValueError:
            pass  # not canonical JSON (inf, nan): sent unsigned, refused as such
    return json.dumps(obj, ensure_ascii=fdp.ConsumeBool()).encode()


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    structured = fdp.ConsumeIntInRange(0, 1) == 1
    payload = command(fdp) if structured else fdp.ConsumeBytes(fdp.remaining_bytes())
    checker = CommandChecker(KEY, require_signature=fdp.ConsumeBool() if structured else True)
    try:
        checker.check(payload, now=NOW)
    except Refusal:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

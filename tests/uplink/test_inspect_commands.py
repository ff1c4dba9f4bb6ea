"""`inspect_start` and `inspect_stop` are checked like every command: signature, freshness,
replays, and their arguments (a list of point ids, minutes from 1 to 240)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from gateway.uplink.commands import CommandChecker, Refusal, sign

KEY = bytes(range(32))


def command(args: dict[str, Any], *, cid: str = "c-1", op: str = "inspect_start",
            key: bytes = KEY) -> bytes:
    t = time.time()
    issued = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"
    return json.dumps(sign({"v": 1, "id": cid, "op": op, "issued_at": issued,
                            "args": args}, key)).encode()


def refusal(checker: CommandChecker, payload: bytes) -> Refusal:
    with pytest.raises(Refusal) as info:
        checker.check(payload)
    return info.value


def test_good_inspect_commands_pass() -> None:
    checker = CommandChecker(KEY)
    cmd = checker.check(command({"points": ["gate-panic", "box-tamper"], "minutes": 240,
                                 "operator": "李警官"}))
    assert (cmd.op, cmd.args["points"]) == ("inspect_start", ["gate-panic", "box-tamper"])
    assert checker.check(command({"operator": "李警官"}, cid="c-2")).args == {
        "operator": "李警官"}
    assert checker.check(command({}, cid="c-3", op="inspect_stop")).op == "inspect_stop"


@pytest.mark.parametrize(("args", "words"), [
    ({"points": "gate-panic", "operator": "x"}, "wrong type"),
    ({"points": [], "operator": "x"}, "1 to 256 entries"),
    ({"points": ["gate-panic", 7], "operator": "x"}, "every entry"),
    ({"points": [""], "operator": "x"}, "every entry"),
    ({"minutes": 241, "operator": "x"}, "from 1 to 240"),
    ({"minutes": 0, "operator": "x"}, "from 1 to 240"),
    ({"minutes": 30.5, "operator": "x"}, "wrong type"),
    ({"minutes": True, "operator": "x"}, "boolean"),
    ({"points": ["gate-panic"]}, "'operator' is required"),
    ({"operator": "x", "sounder": True}, "unknown argument 'sounder'"),
])
def test_bad_arguments_are_refused(args: dict[str, Any], words: str) -> None:
    r = refusal(CommandChecker(KEY), command(args))
    assert r.code == "bad_args" and words in r.reason, r.reason


def test_forged_and_replayed_inspect_start_are_refused() -> None:
    checker = CommandChecker(KEY)
    forged = command({"operator": "mallory"}, cid="c-9", key=bytes(32))
    assert refusal(checker, forged).code == "bad_signature"
    good = command({"operator": "李警官"}, cid="c-9")  # a forgery does not use up an id
    checker.check(good)
    assert refusal(checker, good).code == "replayed"

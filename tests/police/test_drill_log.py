"""The drill log keeps in memory only the drills it still needs: the store keeps the rest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gw import DEFAULT_INPUTS, InProcessGateway, write_config

from gateway.police.drills import DrillLog
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

KEY = bytes(range(32))
SITE, GWID = "test-school", "gw-test"
WAIT = 20.0
#: How many drills the log under test keeps in memory at most.
KEEP = 4


@pytest.fixture
def gateway(tmp_path: Path, broker: Mosquitto) -> Iterator[tuple[InProcessGateway,
                                                                 PlatformConsole]]:
    """A camera linked to gate-panic (one picture per drill), signed commands, and a police
    console that acknowledges every drill at once."""
    key_file = tmp_path / "k"
    key_file.write_text(KEY.hex())
    key_file.chmod(0o600)
    cam = {"id": "gate-cam", "name": "南门摄像机", "driver": "sim", "username": "admin",
           "password": "sim-pass", "width": 160, "height": 90, "timeout_s": 2.0, "shots": 1,
           "interval_s": 0.1}
    inputs = [dict(i, cameras=["gate-cam"]) if i["id"] == "gate-panic" else i
              for i in DEFAULT_INPUTS]
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0, cameras=[cam],
                       inputs=inputs)
    with cfg.open("a") as f:
        f.write(f'\n[commands]\nkey_file = "{key_file}"\n')
    with PlatformConsole(broker.host, broker.port, persistent=False, command_key=KEY,
                         auto_ack_s=0.0) as console, InProcessGateway(cfg) as gw:
        assert console.wait_for(
            lambda c: c.status.get(f"{SITE}/{GWID}", {}).get("state") == "online", WAIT)
        yield gw, console


def drill(gw: InProcessGateway) -> str:
    res = gw.service.handle_control({"cmd": "test-alarm", "point": "gate-panic",
                                     "drill": True})
    return str(res["id"])


def done(c: PlatformConsole, event_id: str) -> bool:
    """The platform has the drill's picture and the gateway's answer to its ack."""
    return any(s.event_id == event_id for s in c.snapshots) and any(
        r.get("op") == "ack" and r.get("result", {}).get("event_id") == event_id
        for r in c.results.values())


def records(gw: InProcessGateway) -> dict[str, dict[str, Any]]:
    return {d["event_id"]: d for d in gw.service.handle_control({"cmd": "drills"})}


def tracked(log: DrillLog) -> int:
    """How many drills the log holds in memory."""
    return len(log._recent)


def test_many_drills_keep_the_memory_bounded_and_recent_drills_complete(
        gateway: tuple[InProcessGateway, PlatformConsole]) -> None:
    gw, console = gateway
    log = gw.service.drills
    assert log is not None
    log.keep = KEEP
    # One after another: each drill is finished (its picture is in) before the next.
    one_by_one = []
    for _ in range(3 * KEEP):
        one_by_one.append(eid := drill(gw))
        assert console.wait_for(lambda c, eid=eid: done(c, eid), WAIT)
        assert gw.service.uplink is not None and gw.service.uplink.wait_for_drained(WAIT)
        assert tracked(log) <= KEEP
    # A burst: more drills in progress at once than the log keeps.
    burst = [drill(gw) for _ in range(3 * KEEP)]
    assert tracked(log) <= KEEP
    assert console.wait_for(lambda c: all(done(c, eid) for eid in burst), WAIT)
    assert gw.service.uplink is not None and gw.service.uplink.wait_for_drained(WAIT)
    assert tracked(log) <= KEEP
    kept = records(gw)
    # Every drill's timeline is complete (the store has it); the pictures of every drill
    # the log kept are counted: all of the ones run one by one, the latest of the burst.
    for eid in one_by_one + burst[-KEEP:]:
        d = kept[eid]
        assert d["complete"] is True, sorted(d["timeline"])
        assert d["snapshots"] is not None and d["snapshots"]["count"] == 1, d
    assert all(kept[eid]["complete"] for eid in burst)

"""What a real Mosquitto's negative or empty PUBACKs do to the queue.

- A message the broker refuses (an ACL: 0x87 Not authorized) is held back and retried with
  its own backoff; nothing else waits for it, least of all an alarm committed meanwhile.
- An alarm nobody is subscribed to (0x10 No matching subscribers: the broker drops it) is
  not delivered: it stays in the outbox and is retried, the gateway raises the `platform`
  fault, and escalation counts it as undelivered until a platform takes it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gw import DEFAULT_INPUTS, InProcessGateway, escalation_config, write_config

from gateway.engine import Committed
from gateway.uplink.mqtt import Uplink
from hw_sim.broker import Mosquitto
from hw_sim.modem import SimModem
from hw_sim.platform import PlatformConsole

#: Generous bound for what takes milliseconds on loopback, in seconds.
WAIT = 15.0
#: An alarm reaches the platform within this long on a loaded CI machine, in seconds.
ALARM_LATENCY_S = 5.0
GW_USER = "gw-test"

#: The gateway may publish anything of its own but snapshots; anonymous clients (the
#: platform console) may do anything. Mosquitto checks `deny` lines before the grants.
ACL = f"""\
topic readwrite #

user {GW_USER}
topic deny alarmgw/v1/+/+/snapshot/#
topic readwrite alarmgw/#
"""


class Seen:
    """What the gateway did, gathered from its threads: commits (engine thread) and uplink
    state changes (uplink thread), with a condition to wait on either."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.committed: list[Committed] = []
        self.refusals: list[float] = []
        """time.monotonic() of each increase of the uplink's `refused` counter."""
        self._refused = 0
        self.uplink: Uplink | None = None

    def attach(self, gw: InProcessGateway) -> None:
        assert gw.service.uplink is not None
        self.uplink = gw.service.uplink
        gw.service.add_listener(self._on_commit)
        self.uplink.add_watcher(self._on_uplink)

    def _on_commit(self, c: Committed) -> None:
        with self.cond:
            self.committed.append(c)
            self.cond.notify_all()

    def _on_uplink(self) -> None:
        assert self.uplink is not None
        refused = int(self.uplink.state()["refused"])
        with self.cond:
            if refused > self._refused:
                self.refusals.extend([time.monotonic()] * (refused - self._refused))
                self._refused = refused
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def of(self, etype: str, point: str) -> list[Committed]:
        with self.cond:
            return [c for c in self.committed if c.type == etype and c.point_id == point]


def acl_broker(tmp_path: Path) -> Mosquitto:
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return Mosquitto(tmp_path / "broker", extra_conf=f"acl_file {acl}")


def waiting(gw: InProcessGateway, lane: str) -> int:
    s = gw.service.outbox.stats().lanes[lane]
    return s.ready + s.in_flight


def arrival_delay(console: PlatformConsole, event_id: str, since: float) -> float | None:
    """Seconds from `since` (time.monotonic()) to the event's first arrival, or None."""
    with console._cond:
        for rec in console.raw:
            if rec.topic.endswith("/event") and event_id.encode() in rec.payload:
                return rec.arrived_mono - since
    return None


def test_a_refused_picture_is_held_alone_and_a_later_alarm_goes_at_once(tmp_path: Path) -> None:
    cam = {"id": "gate-cam", "name": "南门摄像机", "driver": "sim", "username": "admin",
           "password": "sim-pass", "width": 160, "height": 90, "timeout_s": 1.0,
           "shots": 1, "pre_frames": 0}
    inputs = [dict(i, cameras=["gate-cam"]) if i["id"] == "gate-panic" else i
              for i in DEFAULT_INPUTS]
    seen = Seen()
    with acl_broker(tmp_path) as broker:
        cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                           inputs=inputs, cameras=[cam], broker={"username": GW_USER})
        with PlatformConsole(broker.host, broker.port, persistent=False) as console, \
                InProcessGateway(cfg) as gw:
            assert gw.panel is not None and gw.service.uplink is not None
            seen.attach(gw)
            gw.panel.press("gate-panic")
            assert console.wait_for(lambda c: len(c.events_of("alarm", "gate-panic")) == 1,
                                    WAIT)
            # Its one picture is refused by the ACL, again and again: three refusals mean
            # two hold-offs have passed and a third (today's 8 s) has begun.
            assert seen.wait(lambda: len(seen.refusals) >= 3, 30.0), seen.refusals
            pressed = time.monotonic()
            gw.panel.press("office-panic")
            assert seen.wait(lambda: len(seen.of("alarm", "office-panic")) == 1)
            second = seen.of("alarm", "office-panic")[0]
            arrived = console.wait_for(
                lambda c: arrival_delay(c, second.event_id, pressed) is not None,
                ALARM_LATENCY_S)
            if not arrived:  # how long it did take, for the failure message
                console.wait_for(
                    lambda c: arrival_delay(c, second.event_id, pressed) is not None, 90.0)
            delay = arrival_delay(console, second.event_id, pressed)
            assert arrived, (f"the second alarm waited behind a refused picture: it arrived"
                             f" {delay} s after the press")
            # The event lane is not held either: the restore follows at once.
            gw.panel.release("office-panic")
            assert console.wait_for(lambda c: len(c.events_of("restore", "office-panic")) == 1,
                                    ALARM_LATENCY_S)
            # Both PUBACKs recorded (the console may see a message before the gateway sees
            # its PUBACK).
            assert seen.wait(lambda: waiting(gw, "alarm") == 0 and waiting(gw, "event") == 0)
            # The refused picture is still held, not given up and not reset by the
            # successes around it; it stays on disk and is counted.
            state = gw.service.uplink.state()
            held = [h for h in state["held"] if h["topic"].startswith("snapshot/")]
            assert held and held[0]["reason"] == "refused" and held[0]["tries"] >= 3
            assert held[0]["retry_in_s"] > 0
            assert waiting(gw, "bulk") >= 1
            assert state["refused"] >= 3
            assert "refused" in state["last_error"] and "ACL" in state["last_error"]
            refusals = list(seen.refusals)
        assert console.snapshots == []
    # Retried with a backoff that grows (2 s, then 4 s): lower bounds only, a loaded
    # machine makes the gaps longer, never shorter.
    gaps = [b - a for a, b in itertools.pairwise(refusals)]
    assert gaps[0] >= 1.5 and gaps[1] >= 3.0, gaps
    print(f"second alarm delay: {delay:.3f} s; refusal gaps: {[round(g, 2) for g in gaps]}")


def fast_config(tmp_path: Path, port: int) -> Path:
    return write_config(tmp_path / "gw", broker_port=port, debounce_ms=0,
                        broker={"keepalive_s": 5})


def test_an_alarm_nobody_subscribed_to_is_kept_until_a_platform_subscribes(
        tmp_path: Path, broker: Mosquitto) -> None:
    seen = Seen()
    with InProcessGateway(fast_config(tmp_path, broker.port)) as gw:
        assert gw.panel is not None and gw.service.uplink is not None
        seen.attach(gw)
        gw.panel.press("gate-panic")
        assert seen.wait(lambda: len(seen.of("alarm", "gate-panic")) == 1)
        alarm = seen.of("alarm", "gate-panic")[0]
        # The broker answers 0x10 (nobody subscribed) and drops the alarm: the gateway
        # must keep it and say why.
        assert seen.wait(lambda: bool(seen.of("fault", "platform")) or waiting(gw, "alarm") == 0)
        assert waiting(gw, "alarm") == 1, "the alarm nobody received was deleted"
        assert seen.of("fault", "platform"), "no `platform` fault raised"
        status = gw.service.status()
        (fault,) = [f for f in status["faults"] if f["device"] == "platform"]
        assert fault["reason"].startswith("no platform subscribed")
        assert [f["device"] for f in gw.service.health_doc()["faults"]] == ["platform"]
        (row,) = [r for r in gw.service.outbox.waiting(10) if r["lane"] == "alarm"]
        assert row["seq"] == alarm.seq and row["event_id"] == alarm.event_id
        # Retried, with a backoff: still there after another 0x10.
        uplink = gw.service.uplink
        assert seen.wait(lambda: uplink.state()["unsubscribed"] >= 2, 10.0)
        assert waiting(gw, "alarm") == 1
        # The `fault` itself travels in the event lane, where 0x10 counts as delivered:
        # it is not retried, and it raises nothing more.
        assert [h["lane"] for h in uplink.state()["held"]] == ["alarm"]
        assert len(seen.of("fault", "platform")) == 1
        # Then the platform subscribes: the same alarm arrives, and the fault clears.
        with PlatformConsole(broker.host, broker.port, persistent=False) as console:
            assert console.wait_for(lambda c: len(c.events_of("alarm", "gate-panic")) == 1,
                                    40.0)
            assert console.wait_for(
                lambda c: len(c.events_of("fault_cleared", "platform")) == 1, WAIT)
            assert uplink.wait_for_drained(WAIT)
            got = console.events_of("alarm", "gate-panic")[0]
            assert (got["id"], got["seq"]) == (alarm.event_id, alarm.seq)
            assert gw.service.status()["faults"] == []
            assert len(seen.of("fault", "platform")) == 1
            assert not uplink.state()["held"]


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[SimModem]:
    with SimModem(tmp_path / "modem") as m:
        yield m


def test_an_alarm_nobody_subscribed_to_escalates_as_undelivered(
        tmp_path: Path, broker: Mosquitto, modem: SimModem) -> None:
    cfg = escalation_config(tmp_path, broker.port, modem.port, ack_timeout_s=600.0,
                            uplink_down_s=1.0)
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None and gw.service.uplink is not None
        gw.panel.press("gate-panic")
        # The broker took it (PUBACK 0x10) but nobody can see it: the uplink_down timer
        # runs on, and the duty phone gets the SMS.
        (sms,) = modem.wait_for_messages(1, timeout=WAIT)
        assert "报警网关与平台断开" in sms.text
        esc = gw.service.escalation
        assert esc is not None
        (pending,) = esc.pending()
        assert pending["escalated"] and not pending["delivered"]
        with PlatformConsole(broker.host, broker.port, persistent=False) as console:
            assert console.wait_for(lambda c: len(c.events_of("alarm", "gate-panic")) == 1,
                                    40.0)
            assert gw.service.uplink.wait_for_drained(WAIT)
            (pending,) = esc.pending()
            assert pending["delivered"]

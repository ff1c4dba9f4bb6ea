"""Snapshots linked to alarms, end to end: simulated cameras -> outbox -> Mosquitto -> platform.

The gateway runs on the simulator with `driver = "sim"` cameras: hw_sim HTTP snapshot servers
with digest auth that the service starts on loopback and reaches through its real HTTP driver.
Pictures are checked where the police see them, at the reference platform console.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fakebroker import FakeBroker, Publish
from gw import DEFAULT_INPUTS, InProcessGateway, write_config
from modbus_cfg import device, modbus_input, rtu_bus, write_modbus_config
from PIL import Image

from gateway.clock import mono_ns
from gateway.snapshots import CameraUnit, SnapshotLane
from gateway.uplink.mqtt import BULK_BYTES_IN_FLIGHT
from gateway.uplink.protocol import load_schema
from hw_sim.broker import Mosquitto
from hw_sim.camera import SimCamera
from hw_sim.platform import PlatformConsole, Snapshot

#: Upper bound for anything that takes milliseconds on loopback, in seconds.
WAIT = 15.0
GW = "test-school/gw-test"
FORMAT_CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER


def validate(doc: object, schema: str) -> None:
    jsonschema.validate(doc, load_schema(schema), format_checker=FORMAT_CHECKER)


def camera(cam_id: str, **kw: Any) -> dict[str, Any]:
    """A simulated camera's config table: fast cadences for tests."""
    return {"id": cam_id, "name": f"{cam_id} camera", "driver": "sim", "username": "admin",
            "password": "sim-pass", "width": 320, "height": 180, "timeout_s": 1.0,
            "interval_s": 0.1, **kw}


def inputs_with(cameras: list[str], point: str = "gate-panic") -> list[dict[str, Any]]:
    return [dict(i, cameras=cameras) if i["id"] == point else i for i in DEFAULT_INPUTS]


def lane(gw: InProcessGateway) -> SnapshotLane:
    assert gw.service.cameras is not None
    return gw.service.cameras


def unit(gw: InProcessGateway, cam_id: str) -> CameraUnit:
    return lane(gw).units[cam_id]


def sim(gw: InProcessGateway, cam_id: str) -> SimCamera:
    s: SimCamera = lane(gw).sims[cam_id]
    return s


def press(gw: InProcessGateway, point: str = "gate-panic") -> None:
    assert gw.panel is not None
    gw.panel.press(point)


def check_jpeg(snap: Snapshot, size: tuple[int, int] = (320, 180)) -> None:
    """A whole, decodable JPEG of the camera's size, sent as image/jpeg."""
    assert snap.content_type == "image/jpeg"
    with Image.open(io.BytesIO(snap.jpeg)) as img:
        assert img.format == "JPEG"
        assert img.size == size
        img.load()  # decodes every byte: a truncated JPEG raises here


def index_of(console: PlatformConsole, predicate: Any) -> int:
    return next(i for i, r in enumerate(console.raw) if predicate(r))


@pytest.fixture
def two_cameras(tmp_path: Path, broker: Mosquitto) -> Iterator[tuple[InProcessGateway,
                                                                      PlatformConsole]]:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                       inputs=inputs_with(["gate-cam", "yard-cam"]),
                       cameras=[camera("gate-cam", pre_frames=2, pre_interval_s=0.1, shots=3),
                                camera("yard-cam", shots=2)])
    with PlatformConsole(broker.host, broker.port, persistent=False,
                         snapshot_dir=tmp_path / "platform") as console, \
            InProcessGateway(cfg) as gw:
        yield gw, console


def test_a_press_brings_the_alarm_then_every_linked_cameras_pictures(
        two_cameras: tuple[InProcessGateway, PlatformConsole], tmp_path: Path) -> None:
    gw, console = two_cameras
    # The pre-alarm ring holds two pictures before the press.
    assert unit(gw, "gate-cam").wait_for(lambda u: u.ring_size() == 2, WAIT)
    press(gw)
    assert console.wait_for(lambda c: len(c.snapshots) == 2 + 3 + 2, WAIT), \
        f"{len(console.snapshots)} snapshots, failures {console.snapshot_failures}"
    (alarm,) = console.events_of("alarm", "gate-panic")
    validate(alarm, "event")
    assert alarm["snapshots"] == [
        {"camera": "gate-cam", "name": "gate-cam camera", "pre": 2, "post": 3},
        {"camera": "yard-cam", "name": "yard-cam camera", "pre": 0, "post": 2}]

    gate = console.snapshots_of(alarm["id"], "gate-cam")
    yard = console.snapshots_of(alarm["id"], "yard-cam")
    assert sorted((s.phase, s.shot) for s in gate) == [
        ("post", 1), ("post", 2), ("post", 3), ("pre", 1), ("pre", 2)]
    assert sorted((s.phase, s.shot) for s in yard) == [("post", 1), ("post", 2)]
    for snap in gate + yard:
        check_jpeg(snap)
        assert snap.user["event_id"] == alarm["id"]
        assert snap.user["camera"] == snap.camera
        assert snap.user["time_synced"] == "true"
        taken = int(snap.user["mono_ns"])
        # Pre-alarm pictures were taken before the press, the others after it.
        assert (taken < alarm["mono_ns"]) == (snap.phase == "pre"), snap.user
        assert snap.path is not None and snap.path.read_bytes() == snap.jpeg
        assert snap.path.is_relative_to(tmp_path / "platform" / "test-school" / "gw-test")
    # Every picture is a different frame.
    assert len({s.jpeg for s in gate + yard}) == 7
    # Pre pictures are numbered oldest first; post shots are taken in order.
    pre = sorted((s for s in gate if s.phase == "pre"), key=lambda s: s.shot)
    assert int(pre[0].user["mono_ns"]) < int(pre[1].user["mono_ns"])
    post = sorted((s for s in gate if s.phase == "post"), key=lambda s: s.shot)
    assert [int(s.user["mono_ns"]) for s in post] == sorted(int(s.user["mono_ns"]) for s in post)
    # The alarm reached the platform before any of its pictures.
    alarm_at = index_of(console, lambda r: r.topic.endswith("/event"))
    assert all(index_of(console, lambda r, s=s: r.topic.endswith(f"/{s.camera}")
                        and r.payload == s.jpeg) > alarm_at for s in gate + yard)
    topic = console.raw[index_of(console, lambda r: "/snapshot/" in r.topic)].topic
    assert topic.startswith(f"alarmgw/v1/test-school/gw-test/snapshot/{alarm['id']}/")
    assert console.snapshot_failures == []
    assert console.events_of("fault") == []


def test_a_drill_takes_pictures_too(two_cameras: tuple[InProcessGateway, PlatformConsole]
                                    ) -> None:
    gw, console = two_cameras
    res = gw.service.handle_control({"cmd": "test-alarm", "point": "gate-panic", "drill": True})
    assert console.wait_for(lambda c: len(c.snapshots_of(res["id"], "yard-cam")) == 2, WAIT)
    (drill,) = console.events_of("drill")
    assert [s["camera"] for s in drill["snapshots"]] == ["gate-cam", "yard-cam"]


def test_a_restore_and_an_unlinked_input_take_no_pictures(
        two_cameras: tuple[InProcessGateway, PlatformConsole]) -> None:
    gw, console = two_cameras
    press(gw, "office-panic")  # linked to no camera
    assert gw.panel is not None
    gw.panel.release("office-panic")
    gw.service.handle_control({"cmd": "test-alarm", "point": "box-tamper"})
    assert console.wait_for(lambda c: len(c.events) == 3, WAIT)
    assert all(e["snapshots"] == [] for e in console.events)
    assert lane(gw).status()[0]["bursts"] == lane(gw).status()[1]["bursts"] == 0



def test_a_modbus_buttons_linked_camera_takes_pictures_too(tmp_path: Path,
                                                           broker: Mosquitto) -> None:
    cfg = write_modbus_config(
        tmp_path / "gw", broker_port=broker.port, buses=[rtu_bus()],
        devices=[device("io3", 3)],
        inputs=[modbus_input("hall-panic", "io3", 2, cameras=["gate-cam"]),
                modbus_input("stair-panic", "io3", 3)],
        cameras=[camera("gate-cam", shots=2)])
    with PlatformConsole(broker.host, broker.port, persistent=False) as console, \
            InProcessGateway(cfg) as gw:
        sim_modbus = gw.service.modbus_sim
        assert sim_modbus is not None
        sim_modbus.press("stair-panic")  # linked to no camera
        sim_modbus.press("hall-panic")
        assert console.wait_for(lambda c: len(c.snapshots) == 2, WAIT), \
            f"{len(console.snapshots)} snapshots, failures {console.snapshot_failures}"
    (alarm,) = console.events_of("alarm", "hall-panic")
    assert alarm["snapshots"] == [{"camera": "gate-cam", "name": "gate-cam camera", "pre": 0,
                                   "post": 2}]
    assert sorted((s.phase, s.shot) for s in console.snapshots_of(alarm["id"])) == [
        ("post", 1), ("post", 2)]
    (plain,) = console.events_of("alarm", "stair-panic")
    assert plain["snapshots"] == []

# -- a bad camera never delays the alarm, and never the other cameras ------------------------

BAD_MODES = [
    # (how the camera misbehaves, the reason the platform is told)
    ("slow", "timeout"),
    ("down", "refused"),
    ("401", "unauthorized"),
    ("500", "http_error"),
    ("html", "not_jpeg"),
    ("truncated", "truncated"),
    ("cut", "truncated"),
    ("endless", "too_large"),
]


@pytest.mark.parametrize(("mode", "reason"), BAD_MODES, ids=[m for m, _ in BAD_MODES])
def test_a_bad_camera_is_reported_failed_and_a_fault_while_the_others_deliver(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole, mode: str,
        reason: str) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                       inputs=inputs_with(["bad-cam", "good-cam"]),
                       cameras=[camera("bad-cam", shots=2, max_bytes=256 * 1024),
                                camera("good-cam", shots=2)])
    with InProcessGateway(cfg) as gw:
        bad = sim(gw, "bad-cam")
        # Its start-up probe saw a working camera: the failure comes with the alarm.
        assert unit(gw, "bad-cam").wait_for(lambda u: u.health.captures >= 1, WAIT)
        if mode == "slow":
            bad.set_latency(5.0)  # five times its timeout_s
        else:
            bad.set_mode(mode)
        press(gw)
        assert console.wait_for(lambda c: bool(c.events_of("alarm")), WAIT)
        alarm_seen_ns = mono_ns()
        assert console.wait_for(lambda c: len(c.failures_of(camera="bad-cam")) == 2
                                and len(c.snapshots_of(camera="good-cam")) == 2, WAIT), \
            (console.snapshot_failures, [s.camera for s in console.snapshots])
        assert console.wait_for(lambda c: bool(c.events_of("fault", "bad-cam")), WAIT)
        if mode == "slow":
            # The alarm was at the platform while the slow camera was still being waited for.
            assert bad.wait_for(lambda c: c.requests >= 3, WAIT)
            first = min(f["mono_ns"] for f in console.failures_of(camera="bad-cam"))
            assert first > alarm_seen_ns
        status = {c["id"]: c for c in gw.service.status()["cameras"]}

    (alarm,) = console.events_of("alarm")
    assert console.snapshots_of(camera="bad-cam") == []
    failures = console.failures_of(alarm["id"], "bad-cam")
    assert sorted(f["shot"] for f in failures) == [1, 2]
    for f in failures:
        validate(f, "snapshot_failed")
        assert (f["phase"], f["reason"]) == ("post", reason)
        assert f["error"]
        assert "sim-pass" not in f["error"]
    raw = next(r for r in console.raw if r.topic.endswith("/bad-cam/failed"))
    assert raw.topic == f"alarmgw/v1/test-school/gw-test/snapshot/{alarm['id']}/bad-cam/failed"
    assert raw.properties["ContentType"] == "application/json"
    for snap in console.snapshots_of(alarm["id"], "good-cam"):
        check_jpeg(snap)
    (fault,) = console.events_of("fault", "bad-cam")
    validate(fault, "event")
    assert fault["point"]["kind"] == "device"
    assert fault["source"] == "sim:bad-cam"
    assert fault["detail"]["fault"] == "video_loss"
    assert fault["detail"]["error"] == reason
    assert "video loss" in fault["detail"]["reason"]
    assert status["bad-cam"]["state"] == "faulty"
    assert status["bad-cam"]["last_reason"] == reason
    assert status["good-cam"]["state"] == "ok"
    assert console.events_of("fault", "good-cam") == []


def test_an_endless_body_is_cut_at_max_bytes(tmp_path: Path, broker: Mosquitto,
                                             console: PlatformConsole) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                       inputs=inputs_with(["cam"]),
                       cameras=[camera("cam", shots=1, max_bytes=100 * 1024)])
    with InProcessGateway(cfg) as gw:
        cam = sim(gw, "cam")
        cam.set_mode("endless")
        press(gw)
        assert console.wait_for(lambda c: bool(c.failures_of(camera="cam")), WAIT)
        (failure,) = console.failures_of(camera="cam")
        assert failure["reason"] == "too_large"
        assert "max_bytes (102400)" in failure["error"]
        # The camera was cut off: it managed to send little more than the limit and the
        # socket buffers, not an endless stream.
        assert cam.wait_for(lambda c: c.in_flight == 0, WAIT)
        assert cam.endless_bytes < 100 * 1024 + 16 * 1024 * 1024


# -- supervision ----------------------------------------------------------------------------

def test_a_camera_that_stops_giving_pictures_is_a_fault_until_it_recovers(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port,
                       cameras=[camera("cam", probe_interval_s=0.2, fault_after=2)])
    with InProcessGateway(cfg) as gw:
        cam = sim(gw, "cam")
        u = unit(gw, "cam")
        assert u.wait_for(lambda u: u.health.captures >= 1, WAIT)
        seq_before = gw.service.outbox.stats().next_seq
        cam.set_mode("500")
        assert console.wait_for(lambda c: bool(c.events_of("fault", "cam")), WAIT)
        faults = gw.service.status()["faults"]
        assert [f["device"] for f in faults] == ["cam"]
        cam.set_mode("ok")
        assert console.wait_for(lambda c: bool(c.events_of("fault_cleared", "cam")), WAIT)
        assert gw.service.status()["faults"] == []
        # Probing wrote nothing but the two fault events: no pictures, no records.
        assert gw.service.outbox.stats().next_seq == seq_before + 2
        assert u.counters.stored == u.counters.failed_records == 0
        assert u.health.captures >= 4
    fault = console.events_of("fault", "cam")[0]
    assert fault["detail"]["error"] == "http_error"
    assert fault["detail"]["failures"] == 2
    assert [e["type"] for e in console.events] == ["fault", "fault_cleared"]


def test_a_camera_down_at_start_is_a_fault_without_any_alarm(
        tmp_path: Path, broker: Mosquitto, console: PlatformConsole) -> None:
    cfg = write_config(tmp_path / "gw", broker_port=broker.port,
                       cameras=[{"id": "cam", "driver": "http", "timeout_s": 0.5,
                                 "url": "http://127.0.0.1:9/snapshot.jpg",
                                 "probe_interval_s": 0.2}])
    with InProcessGateway(cfg) as gw:
        assert console.wait_for(lambda c: bool(c.events_of("fault", "cam")), WAIT)
        status = gw.service.status()["cameras"][0]
    fault = console.events_of("fault", "cam")[0]
    assert fault["source"] == "http://127.0.0.1:9/snapshot.jpg"
    assert fault["detail"]["error"] == "refused"
    assert "127.0.0.1:9 refused the connection" in fault["detail"]["reason"]
    assert status["state"] == "faulty"
    assert status["where"] == "http://127.0.0.1:9/snapshot.jpg"


# -- outages and the byte budget --------------------------------------------------------------

def test_snapshots_wait_on_disk_through_an_outage_and_follow_their_alarm_in_order(
        tmp_path: Path, persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    broker, console = persistent
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                       inputs=inputs_with(["cam"]),
                       cameras=[camera("cam", pre_frames=2, pre_interval_s=0.1, shots=3)])
    with InProcessGateway(cfg) as gw:
        u = unit(gw, "cam")
        assert u.wait_for(lambda u: u.ring_size() == 2, WAIT)
        assert console.wait_for(lambda c: GW in c.status, WAIT)
        broker.kill()
        press(gw)
        assert u.wait_for(lambda u: u.counters.stored == 5, WAIT)
        lanes = gw.service.outbox.stats().lanes
        assert lanes["alarm"].ready + lanes["alarm"].in_flight == 1
        assert lanes["bulk"].ready + lanes["bulk"].in_flight == 5
        assert console.snapshots == []
        broker.start()
        assert console.wait_for(lambda c: len(c.snapshots) == 5, 30)
        assert gw.service.uplink is not None and gw.service.uplink.wait_for_drained(WAIT)
    (alarm,) = console.events_of("alarm")
    order = [("event", None) if r.topic.endswith("/event") else
             (r.properties and dict(r.properties.get("UserProperty", []))["phase"],
              int(dict(r.properties["UserProperty"])["shot"]))
             for r in console.raw if r.topic.endswith(("/event", "/cam"))]
    assert order == [("event", None), ("pre", 1), ("pre", 2), ("post", 1), ("post", 2),
                     ("post", 3)]
    assert all(s.event_id == alarm["id"] for s in console.snapshots)


def test_when_the_budget_is_full_the_oldest_snapshots_go_and_no_alarm_does(
        tmp_path: Path, persistent: tuple[Mosquitto, PlatformConsole]) -> None:
    broker, console = persistent
    budget = 64 * 1024
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                       inputs=inputs_with(["cam"]), store={"max_bytes": budget},
                       cameras=[camera("cam", shots=3)])
    presses = 6
    with InProcessGateway(cfg) as gw:
        assert gw.panel is not None
        assert console.wait_for(lambda c: GW in c.status, WAIT)
        u = unit(gw, "cam")
        broker.kill()
        for i in range(presses):
            gw.panel.press("gate-panic")
            gw.panel.release("gate-panic")
            # One alarm's shots at a time, so the store's order is the alarms' order.
            assert u.wait_for(lambda u, i=i: u.counters.stored == 3 * (i + 1), WAIT)
        stats = gw.service.outbox.stats()
        picture = len(sim(gw, "cam").picture())
        assert 3 * presses * picture > budget, "the test must overflow the budget"
        assert stats.evicted_total > 0
        assert stats.bytes_total <= budget
        broker.start()
        assert console.wait_for(lambda c: len(c.events) == 2 * presses, 30), console.gaps()
        assert gw.service.uplink is not None and gw.service.uplink.wait_for_drained(WAIT)
    # Every alarm and restore arrived, gapless; only snapshots gave way.
    assert [e["seq"] for e in console.ordered(GW)] == list(range(1, 2 * presses + 1))
    alarms = [e["id"] for e in console.ordered(GW) if e["type"] == "alarm"]
    arrived = {(s.event_id, s.shot) for s in console.snapshots}
    stored = [(a, shot) for a in alarms for shot in (1, 2, 3)]
    assert len(arrived) + stats.evicted_total == len(stored)
    # What went is the oldest: the pictures that arrived are the newest ones.
    assert arrived == set(stored[len(stored) - len(arrived):])
    assert (alarms[-1], 3) in arrived and (alarms[0], 1) not in arrived


def test_failed_records_and_events_are_json_with_the_schema(
        two_cameras: tuple[InProcessGateway, PlatformConsole]) -> None:
    """The schema that docs/protocol/README.md promises matches the record the gateway sends."""
    gw, console = two_cameras
    sim(gw, "yard-cam").set_mode("html")
    press(gw)
    assert console.wait_for(lambda c: len(c.failures_of(camera="yard-cam")) == 2, WAIT)
    raw = next(r for r in console.raw if r.topic.endswith("/failed"))
    doc = json.loads(raw.payload)
    validate(doc, "snapshot_failed")
    assert {k: v for k, v in raw.properties["UserProperty"]}["camera"] == "yard-cam"


def test_snapshots_go_onto_the_wire_a_little_at_a_time_so_an_alarm_never_queues_behind_them(
        tmp_path: Path) -> None:
    """TCP has no overtaking: an alarm published after megabytes of pictures handed to the
    socket would wait for all of them on a slow uplink. The uplink keeps at most
    BULK_BYTES_IN_FLIGHT of pictures unacknowledged (less on a slow link: LinkRate), so
    the alarm goes out at once."""
    picture = 100 * 1024

    def policy(p: Publish) -> int | None:
        return None if "/snapshot/" in p.topic else 0  # pictures are never acknowledged

    with FakeBroker(policy) as fb:
        cfg = write_config(tmp_path / "gw", broker_port=fb.port, debounce_ms=0,
                           broker={"keepalive_s": 30})
        gw = InProcessGateway(cfg)
        gw.service.outbox.open()
        for i in range(20):
            gw.service.outbox.put_bulk(f"snapshot/backlog/cam{i}", b"\xff\xd8" + b"j" * picture)
        gw.service.outbox.close()
        with gw:
            assert fb.wait_for(lambda f: any("/snapshot/" in p.topic for p in f.publishes), WAIT)
            press(gw)
            assert fb.wait_for(lambda f: any(p.topic.endswith("/event") for p in f.publishes),
                               WAIT)
            lanes = gw.service.outbox.stats().lanes
    sent = {p.topic for p in fb.publishes if "/snapshot/" in p.topic}
    # At most what the byte bound lets through (before the link's rate is measured,
    # less: one picture), never the whole backlog; the rest waits on disk.
    assert 1 <= len(sent) <= -(-BULK_BYTES_IN_FLIGHT // (picture + 2))
    assert lanes["bulk"].ready >= 20 - -(-BULK_BYTES_IN_FLIGHT // (picture + 2))

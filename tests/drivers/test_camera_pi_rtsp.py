"""The Pi camera driver (picamera2) and the RTSP driver (ffmpeg).

picamera2 stands on libcamera's bindings, which exist only on a Raspberry Pi: here the driver is
checked against a stand-in for that one boundary (the `picamera2` and `libcamera` modules), which
records what the driver asks of the camera and answers with a real JPEG. The RTSP driver runs
the real ffmpeg when it is installed, on the simulated camera's HTTP URL (ffmpeg reads a JPEG
over HTTP with digest auth as it reads a stream); the tests that need ffmpeg skip without it.
"""

from __future__ import annotations

import io
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

import pytest
from PIL import Image

from gateway.config import CameraSettings
from gateway.drivers.cameras import rtsp
from gateway.drivers.cameras.picamera import PiCamera, unavailable_reason
from gateway.drivers.cameras.rtsp import RtspCamera, ffmpeg_path
from gateway.errors import CameraError
from hw_sim.camera import SimCamera

SECRET = "rtsp-Pa55-0a1b"


def settings(**kw: Any) -> CameraSettings:
    base = CameraSettings(id="cam", name="cam", location="", driver="picamera", url=None,
                          username=None, password=None, timeout_s=2.0, max_bytes=2 * 1024 * 1024,
                          shots=3, interval_s=1.0, pre_frames=0, pre_interval_s=2.0,
                          probe_interval_s=300.0, fault_after=2, width=1280, height=720,
                          camera_num=0)
    return replace(base, **kw)


# -- picamera2, at its boundary ------------------------------------------------------------

class FakeJob:
    def __init__(self, done: bool) -> None:
        self.done = done


class FakePicamera2:
    """Stands in for picamera2.Picamera2: records calls, writes a real JPEG per capture."""

    instances: ClassVar[list[FakePicamera2]] = []
    stall = False
    """When True, a capture's job never completes (a stuck sensor)."""

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.calls: list[str] = []
        self.options: dict[str, Any] = {}
        self.config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        FakePicamera2.instances.append(self)

    def create_still_configuration(self, main: dict[str, Any] | None = None,
                                   **kw: Any) -> dict[str, Any]:
        self.calls.append("create_still_configuration")
        return {"use_case": "still", "main": main or {}, **kw}

    def configure(self, config: dict[str, Any]) -> None:
        self.calls.append("configure")
        self.config = config

    def start(self) -> None:
        self.calls.append("start")
        self.started = True

    def switch_mode(self, *a: Any, **kw: Any) -> None:
        self.calls.append("switch_mode")

    def capture_file(self, output: io.BytesIO, name: str = "main", format: str | None = None,
                     wait: bool | None = None) -> FakeJob:
        self.calls.append(f"capture_file format={format} wait={wait}")
        assert self.started and self.config is not None
        if FakePicamera2.stall:
            return FakeJob(False)
        Image.new("RGB", self.config["main"]["size"], (0, 90, 0)).save(
            output, "JPEG", quality=self.options.get("quality", 75))
        return FakeJob(True)

    def wait(self, job: FakeJob, timeout: float | None = None) -> dict[str, Any]:
        if not job.done:
            raise TimeoutError
        return {}

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True


@pytest.fixture
def fake_pi(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakePicamera2]]:
    FakePicamera2.instances = []
    FakePicamera2.stall = False
    picamera2 = types.ModuleType("picamera2")
    picamera2.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", picamera2)
    monkeypatch.setitem(sys.modules, "libcamera", types.ModuleType("libcamera"))
    yield FakePicamera2


def test_off_a_pi_the_driver_says_what_to_install() -> None:
    reason = unavailable_reason()
    assert reason is not None, "this test machine is not a Pi"
    assert "python3-picamera2" in reason
    with pytest.raises(CameraError) as info:
        PiCamera(settings()).capture()
    assert info.value.reason == "unavailable"


def test_the_camera_stays_in_its_still_configuration_between_captures(
        fake_pi: type[FakePicamera2]) -> None:
    cam = PiCamera(settings())
    pictures = [cam.capture() for _ in range(3)]
    (pi,) = fake_pi.instances
    # Configured and started once; every capture takes the running still stream.
    assert pi.calls == ["create_still_configuration", "configure", "start"] + [
        "capture_file format=jpeg wait=False"] * 3
    assert pi.config is not None and pi.config["main"] == {"size": (1280, 720)}
    assert pi.options["quality"] == 85
    assert [(p.width, p.height) for p in pictures] == [(1280, 720)] * 3
    assert cam.opens == 1
    cam.close()
    assert pi.closed


def test_a_stuck_capture_times_out_and_the_camera_is_reopened(
        fake_pi: type[FakePicamera2]) -> None:
    cam = PiCamera(settings(timeout_s=0.2))
    cam.capture()
    fake_pi.stall = True
    with pytest.raises(CameraError) as info:
        cam.capture()
    assert info.value.reason == "timeout"
    assert fake_pi.instances[0].closed
    fake_pi.stall = False
    assert cam.capture().width == 1280
    assert cam.opens == 2


def test_a_picture_larger_than_max_bytes_is_refused(fake_pi: type[FakePicamera2]) -> None:
    with pytest.raises(CameraError) as info:
        PiCamera(settings(max_bytes=1024)).capture()
    assert info.value.reason == "too_large"


# -- rtsp through ffmpeg -------------------------------------------------------------------

needs_ffmpeg = pytest.mark.skipif(ffmpeg_path() is None, reason="ffmpeg is not installed")


@pytest.fixture
def stream() -> Iterator[SimCamera]:
    with SimCamera("stream-cam", username="admin", password=SECRET) as cam:
        yield cam


def rtsp_settings(url: str, **kw: Any) -> CameraSettings:
    fields: dict[str, Any] = {"driver": "rtsp", "url": url, "username": "admin",
                              "password": SECRET, "timeout_s": 5.0, **kw}
    return settings(**fields)


def test_without_ffmpeg_the_rtsp_driver_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtsp.shutil, "which", lambda name: None)
    with pytest.raises(CameraError) as info:
        RtspCamera(rtsp_settings("rtsp://127.0.0.1:9/s")).capture()
    assert info.value.reason == "unavailable"
    assert "apt install ffmpeg" in info.value.message


@needs_ffmpeg
def test_ffmpeg_gives_one_whole_jpeg(stream: SimCamera) -> None:
    pic = RtspCamera(rtsp_settings(stream.url)).capture()
    assert (pic.width, pic.height) == (640, 360)
    with Image.open(io.BytesIO(pic.jpeg)) as img:
        img.load()


@needs_ffmpeg
def test_ffmpeg_errors_are_reasons_and_never_show_the_password(stream: SimCamera) -> None:
    with pytest.raises(CameraError) as info:
        RtspCamera(rtsp_settings(stream.url, password="wrong-" + SECRET)).capture()
    assert info.value.reason == "unauthorized"
    assert SECRET not in str(info.value)
    with pytest.raises(CameraError) as info:
        RtspCamera(rtsp_settings("rtsp://127.0.0.1:9/stream")).capture()
    assert info.value.reason == "refused"
    assert SECRET not in str(info.value) and "admin:***@" in str(info.value)


@needs_ffmpeg
def test_a_stuck_stream_is_killed_at_the_timeout_and_close_ends_it_at_once(
        stream: SimCamera) -> None:
    stream.set_mode("timeout")
    with pytest.raises(CameraError) as info:
        RtspCamera(rtsp_settings(stream.url, timeout_s=0.5)).capture()
    assert info.value.reason == "timeout"
    cam = RtspCamera(rtsp_settings(stream.url, timeout_s=60.0))
    errors: list[CameraError] = []

    def capture() -> None:
        try:
            cam.capture()
        except CameraError as exc:
            errors.append(exc)

    t = threading.Thread(target=capture)
    t.start()
    assert stream.wait_for(lambda c: c.in_flight == 2, 10.0)
    cam.close()
    t.join(10.0)
    assert not t.is_alive()
    assert [e.reason for e in errors] == ["stopped"]

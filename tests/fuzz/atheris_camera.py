"""Coverage-guided fuzzing (atheris) of what a camera sends: only CameraError may escape.

Optional, outside pytest and CI: atheris ships wheels for x86_64 Linux only.

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/atheris_camera.py -max_total_time=120

Each input feeds, in turn:

- the digest challenge parser and the Authorization header built from what it parsed
  (which must be a header http.client accepts);
- the JPEG check (a `CameraImageError`, or the size of a JPEG);
- the real HTTP driver against a loopback socket (tests/rawcam.py) that answers one to
  three requests with bytes from the input and then closes or resets: sockets,
  http.client, digest and basic auth, the body cap and the JPEG check, as in service.

The time bound (a camera that stalls or trickles) is the hypothesis fuzzer's job
(tests/drivers/test_fuzz_camera.py): here every answer ends, so the fuzzer runs fast.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for rawcam

with atheris.instrument_imports():
    import http.client

    from rawcam import Answer, RawCamera

    from gateway.config import CameraSettings
    from gateway.drivers.cameras import (
        HttpCamera,
        Picture,
        check_jpeg,
        digest_authorization,
        parse_challenges,
    )
    from gateway.errors import CameraError, CameraImageError

PASSWORD = "fuzz-Pa55-word"
BASE = CameraSettings(id="fuzz-cam", name="Fuzz camera", location="", driver="http",
                      url="http://127.0.0.1:1/", username="admin", password=PASSWORD,
                      timeout_s=2.0, max_bytes=64 * 1024, shots=1, interval_s=1.0,
                      pre_frames=0, pre_interval_s=2.0, probe_interval_s=300.0,
                      fault_after=2, width=0, height=0, camera_num=0)


def challenge(text: str) -> None:
    for chal in parse_challenges([text]):
        header = digest_authorization("admin", PASSWORD, method="GET", uri="/snapshot.jpg",
                                      params=chal.params, nc=1, cnonce="0a4f113b")
        conn = http.client.HTTPConnection("127.0.0.1", 1)
        conn.putrequest("GET", "/snapshot.jpg", skip_host=True)
        try:
            conn.putheader("Authorization", header)
        except ValueError as exc:
            raise AssertionError(f"Authorization built from {text!r} is not a valid header:"
                                 f" {header!r}") from exc
        conn.close()


def jpeg(data: bytes) -> None:
    try:
        width, height = check_jpeg(data, "fuzz-cam")
    except CameraImageError:
        return
    assert width > 0 and height > 0


def capture(answers: list[Answer], login: bool) -> None:
    with RawCamera(answers) as server:
        settings = replace(BASE, url=server.url) if login else \
            replace(BASE, url=server.url, username=None, password=None)
        cam = HttpCamera(settings)
        try:
            pic = cam.capture()
        except CameraError as exc:
            assert exc.camera == "fuzz-cam" and exc.reason != "stopped", exc
            assert PASSWORD not in str(exc)
            return
        finally:
            cam.close()
    assert isinstance(pic, Picture)
    assert check_jpeg(pic.jpeg, "fuzz-cam") == (pic.width, pic.height)
    assert len(pic.jpeg) <= settings.max_bytes


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    target = fdp.ConsumeIntInRange(0, 3)
    if target == 0:
        challenge(fdp.ConsumeUnicode(fdp.remaining_bytes()).encode("latin-1", "replace")
                  .decode("latin-1"))
    elif target == 1:
        jpeg(b"\xff\xd8" + fdp.ConsumeBytes(fdp.remaining_bytes()))
    else:
        login = fdp.ConsumeBool()
        answers = []
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            size = fdp.ConsumeIntInRange(0, 4096)
            answers.append(Answer((fdp.ConsumeBytes(size),),
                                  "reset" if fdp.ConsumeBool() else "close"))
        capture(answers, login)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

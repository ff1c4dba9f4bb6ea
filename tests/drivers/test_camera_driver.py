"""The HTTP camera driver against hw_sim's snapshot server, and the JPEG check it relies on.

Every way a real IP camera fails to give a picture becomes a CameraError whose `reason` the
platform reads and whose message a technician reads; nothing is ever read whole into memory.
"""

from __future__ import annotations

import io
import ssl
import threading
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from PIL import Image
from pki import Pki
from rawcam import Answer, RawCamera, capture_within

from gateway.config import CameraSettings
from gateway.drivers.cameras import (
    HttpCamera,
    check_jpeg,
    digest_authorization,
    jpeg_dimensions,
    parse_challenges,
)
from gateway.errors import CameraError
from hw_sim.camera import SimCamera, render_jpeg

#: Upper bound for anything that takes milliseconds on loopback, in seconds.
WAIT = 10.0
PASSWORD = "s3cr3t-cam-Pa55"


def settings(url: str | None, **kw: Any) -> CameraSettings:
    base = CameraSettings(id="cam", name="Gate camera", location="", driver="http", url=url,
                          username="admin", password=PASSWORD, timeout_s=1.0,
                          max_bytes=2 * 1024 * 1024, shots=3, interval_s=1.0, pre_frames=0,
                          pre_interval_s=2.0, probe_interval_s=300.0, fault_after=2, width=0,
                          height=0, camera_num=0)
    return replace(base, **kw)


@pytest.fixture
def sim() -> Iterator[SimCamera]:
    with SimCamera("gate-cam", username="admin", password=PASSWORD) as cam:
        yield cam


def capture_error(cam: HttpCamera) -> CameraError:
    with pytest.raises(CameraError) as info:
        cam.capture()
    assert PASSWORD not in str(info.value)
    return info.value


# -- pictures ------------------------------------------------------------------------------

def test_digest_login_gives_a_whole_jpeg_and_later_captures_need_one_request(
        sim: SimCamera) -> None:
    cam = HttpCamera(settings(sim.url))
    first = cam.capture()
    assert (first.width, first.height) == (640, 360)
    with Image.open(io.BytesIO(first.jpeg)) as img:
        img.load()
        assert img.size == (640, 360)
    assert (sim.requests, sim.unauthorized) == (2, 1)  # the challenge, then the picture
    second = cam.capture()
    third = cam.capture()
    # The remembered challenge answers at once: one request per picture from now on.
    assert (sim.requests, sim.unauthorized) == (4, 1)
    assert len({first.jpeg, second.jpeg, third.jpeg}) == 3
    assert first.taken_mono_ns < second.taken_mono_ns < third.taken_mono_ns


def test_basic_auth_is_sent_only_after_the_camera_asks_for_it() -> None:
    with SimCamera("basic-cam", username="admin", password=PASSWORD, auth="basic") as sim:
        cam = HttpCamera(settings(sim.url))
        cam.capture()
        assert sim.unauthorized == 1  # the first request carried no credentials
        cam.capture()
        assert (sim.requests, sim.unauthorized) == (3, 1)


def test_a_camera_without_login() -> None:
    with SimCamera("open-cam", username=None) as sim:
        pic = HttpCamera(settings(sim.url, username=None, password=None)).capture()
        assert pic.width == 640
        assert sim.requests == 1


def test_a_new_nonce_is_taken_up_without_failing(sim: SimCamera) -> None:
    cam = HttpCamera(settings(sim.url))
    cam.capture()
    sim.forget_logins()  # the camera rebooted: it no longer knows the remembered nonce
    cam.capture()
    assert sim.pictures == 2


def test_wrong_password_is_unauthorized_and_names_the_user(sim: SimCamera) -> None:
    err = capture_error(HttpCamera(settings(sim.url, password="wrong")))
    assert err.reason == "unauthorized"
    assert "refused user 'admin' (HTTP 401)" in err.message
    assert "password_file" in err.message


def test_a_login_without_credentials_in_the_config_says_what_to_set(sim: SimCamera) -> None:
    err = capture_error(HttpCamera(settings(sim.url, username=None, password=None)))
    assert err.reason == "unauthorized"
    assert "asks for a login (HTTP 401, offers Digest)" in err.message
    assert "set username and password_file for camera cam" in err.message


# -- every way a camera fails ---------------------------------------------------------------

FAILURES = [
    # (mode, reason, words the technician reads)
    ("401", "unauthorized", "HTTP 401"),
    ("500", "http_error", "HTTP 500"),
    ("timeout", "timeout", "did not answer within 1 s"),
    ("truncated", "truncated", "without the end-of-image marker"),
    ("cut", "truncated", "closed the connection after"),
    ("html", "not_jpeg", "text/html, an HTML page"),
    ("endless", "too_large", "sent more than max_bytes (2097152)"),
    ("down", "refused", "refused the connection"),
]


@pytest.mark.parametrize(("mode", "reason", "words"), FAILURES, ids=[f[0] for f in FAILURES])
def test_each_failure_has_its_reason_and_a_message(sim: SimCamera, mode: str, reason: str,
                                                    words: str) -> None:
    cam = HttpCamera(settings(sim.url))
    cam.capture()  # logged in and working before it breaks
    sim.set_mode(mode)
    err = capture_error(cam)
    assert err.reason == reason
    assert words in err.message
    assert err.camera == "cam"
    if mode != "down":
        assert sim.url in err.message
    sim.set_mode("ok")
    assert cam.capture().width == 640  # and it works again when the camera does


def test_an_html_login_page_is_quoted_so_the_technician_recognises_it(sim: SimCamera) -> None:
    sim.set_mode("html")
    err = capture_error(HttpCamera(settings(sim.url)))
    assert "<title>Web Login</title>" in err.message


def test_a_slow_camera_is_given_up_at_the_timeout_while_it_still_works(sim: SimCamera) -> None:
    sim.set_latency(30.0)
    err = capture_error(HttpCamera(settings(sim.url, timeout_s=0.3)))
    assert err.reason == "timeout"
    # The capture returned while the camera was still making its picture.
    assert sim.in_flight == 1
    assert sim.pictures == 0


def test_a_picture_announced_larger_than_max_bytes_is_refused_unread(sim: SimCamera) -> None:
    cam = HttpCamera(settings(sim.url, max_bytes=4096))
    tracemalloc.start()
    try:
        err = capture_error(cam)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.reason == "too_large"
    assert "more than max_bytes (4096); nothing was read" in err.message
    assert peak < 256 * 1024


def test_an_endless_body_is_cut_at_max_bytes_and_never_held_whole(sim: SimCamera) -> None:
    limit = 1024 * 1024
    sim.set_mode("endless")
    cam = HttpCamera(settings(sim.url, max_bytes=limit))
    tracemalloc.start()
    try:
        err = capture_error(cam)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.reason == "too_large"
    # At most the limit and one read chunk are held, whatever the camera sends.
    assert peak < limit + limit // 4 + 256 * 1024, peak
    # The camera sees the connection go: it is not left streaming into a dead socket.
    assert sim.wait_for(lambda c: c.in_flight == 0, WAIT)


def test_close_ends_a_capture_in_flight_at_once(sim: SimCamera) -> None:
    sim.set_mode("timeout")
    cam = HttpCamera(settings(sim.url, timeout_s=60.0))
    errors: list[CameraError] = []

    def capture() -> None:
        try:
            cam.capture()
        except CameraError as exc:
            errors.append(exc)

    t = threading.Thread(target=capture)
    t.start()
    assert sim.wait_for(lambda c: c.in_flight == 1, WAIT)
    cam.close()
    t.join(WAIT)
    assert not t.is_alive()
    assert [e.reason for e in errors] == ["stopped"]
    assert capture_error(cam).reason == "stopped"  # a closed camera stays closed


def test_a_redirect_and_a_wrong_path_name_the_problem(sim: SimCamera) -> None:
    err = capture_error(HttpCamera(settings(f"http://127.0.0.1:{sim.port}/nope")))
    assert err.reason == "http_error"
    assert "404" in err.message and "snapshot path or preset" in err.message


# -- the JPEG check -----------------------------------------------------------------------

def pillow_jpeg(size: tuple[int, int], **save: Any) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, "JPEG", **save)
    return buf.getvalue()


@pytest.mark.parametrize("save", [{}, {"progressive": True}, {"optimize": True},
                                  {"exif": b"Exif\x00\x00" + b"\x00" * 64}],
                         ids=["baseline", "progressive", "optimized", "exif"])
def test_dimensions_come_from_the_frame_header(save: dict[str, Any]) -> None:
    data = pillow_jpeg((1920, 1080), **save)
    assert jpeg_dimensions(data) == (1920, 1080)
    assert check_jpeg(data, "cam") == (1920, 1080)


def test_padding_after_the_end_marker_is_accepted() -> None:
    assert check_jpeg(pillow_jpeg((64, 48)) + b"\r\n", "cam") == (64, 48)


def test_every_cut_of_a_jpeg_is_refused() -> None:
    data = render_jpeg("cut-test", 160, 120, 1)
    for end in range(0, len(data) - 1, 97):
        with pytest.raises(CameraError) as info:
            check_jpeg(data[:end], "cam")
        assert info.value.reason in ("not_jpeg", "truncated")
    with pytest.raises(CameraError) as info:
        check_jpeg(data[:-2], "cam")
    assert info.value.reason == "truncated"


@pytest.mark.parametrize(("data", "words"), [
    (b"", "empty answer"),
    (b"<html><body>Login</body></html>", "an HTML page"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "binary data starting 89 50 4e 47"),
    (b"\xff\xd8\xff\xd9", "no usable frame header"),
])
def test_what_is_not_a_jpeg_is_described(data: bytes, words: str) -> None:
    with pytest.raises(CameraError) as info:
        check_jpeg(data, "cam")
    assert words in info.value.message


# -- digest auth ----------------------------------------------------------------------------

def test_digest_response_matches_rfc_2617() -> None:
    header = digest_authorization(
        "Mufasa", "Circle Of Life", method="GET", uri="/dir/index.html",
        params={"realm": "testrealm@host.com", "qop": "auth,auth-int",
                "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                "opaque": "5ccc069c403ebaf9f0171e9517f40e41"},
        nc=1, cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "qop=auth," in header and "nc=00000001" in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_challenges_are_parsed_per_header() -> None:
    found = parse_challenges(['Digest realm="cam", qop="auth", nonce="abc"',
                              'Basic realm="cam"', "Negotiate xyz"])
    assert [(c.scheme, c.params.get("nonce")) for c in found] == [("digest", "abc"),
                                                                  ("basic", None)]


@pytest.mark.parametrize("value", ['Digest realm=, nonce="abc"', "Digest realm=", 'Digest ="x"',
                                   'Digest nonce="abc", =, x, realm="', "Digest ,,,"])
def test_a_malformed_challenge_keeps_its_good_fields_and_never_raises(value: str) -> None:
    (chal,) = parse_challenges([value])
    assert chal.scheme == "digest"
    if "abc" in value:
        assert chal.params["nonce"] == "abc"
    assert "" not in chal.params


def test_an_empty_digest_field_is_a_login_error_not_a_crash() -> None:
    """`realm=` with nothing after it made urllib's parser raise IndexError out of capture()."""
    with RawCamera([Answer((b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=,"
                            b' nonce="n1", qop="auth"\r\nContent-Length: 0\r\n\r\n',))]) as server:
        err = capture_error(HttpCamera(settings(server.url)))
    assert err.reason == "unauthorized"
    assert "refused user 'admin'" in err.message
    # The good fields of the challenge were used to answer it.
    assert b'nonce="n1"' in server.requests[1]
    assert b'realm=""' in server.requests[1]


# -- the timeout holds for the whole answer, not for each read ------------------------------

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
ENDLESS_HEADS = {
    # Each read gets a byte well within the timeout: a timeout per read never fires.
    "status-line-trickle": Answer((b"HTTP/1.1 200 O",), "trickle", b"K"),
    "header-trickle": Answer((OK_HEAD + b"X-Slow: ",), "trickle", b"z"),
    "100-continue-without-end": Answer((), "flood", b"HTTP/1.1 100 Continue\r\n\r\n" * 20),
    "chunk-trailer-without-end": Answer((OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
                                         b"4\r\n\xff\xd8\xff\xd9\r\n0\r\n",), "flood",
                                        b"X-Trailer: t\r\n" * 50),
    "chunk-size-trickle": Answer((OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n",), "trickle",
                                 b"0"),
}


@pytest.mark.parametrize("name", list(ENDLESS_HEADS))
def test_a_camera_that_keeps_talking_without_a_picture_times_out_on_time(name: str) -> None:
    with RawCamera([ENDLESS_HEADS[name]]) as server:
        cam = HttpCamera(settings(server.url, timeout_s=0.5))
        outcome = capture_within(cam, server)
    assert isinstance(outcome, CameraError), outcome
    assert outcome.reason == "timeout"
    assert "within 0.5 s" in outcome.message


def test_an_https_camera_that_trickles_its_headers_times_out_on_time(
        pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_cert))  # trust the test CA
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki.server_cert, pki.server_key)
    with RawCamera([ENDLESS_HEADS["header-trickle"]], tls=tls) as server:
        cam = HttpCamera(settings(server.url, timeout_s=0.5))
        outcome = capture_within(cam, server)
    assert isinstance(outcome, CameraError), outcome
    assert outcome.reason == "timeout"
    # And a well-behaved HTTPS camera still gives its picture through the same socket class.
    jpeg = render_jpeg("tls", 64, 48, 1)
    answer = Answer((OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg,))
    with RawCamera([answer], tls=tls) as server:
        pic = HttpCamera(settings(server.url, username=None, password=None)).capture()
    assert (pic.width, pic.height) == (64, 48)

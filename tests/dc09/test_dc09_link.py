"""Dc09Link against the ARC simulator (pysiaalarm behind it), over TCP and UDP: alarms
arrive, NAKs resynchronise the clock, and every broken answer ends as an outcome, never as
an exception or a hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from gateway.dc09.frames import Identity, frame_body, key_from_text
from gateway.dc09.link import Dc09Link, Outcome
from hw_sim.arc import ArcReceiver

KEY = "0123456789ABCDEF0123456789ABCDEF"
TRANSPORTS = ["tcp", "udp"]
ALARM = "#1234|1120 01 015"
#: Short, so that the timeout cases stay quick; loopback answers in a millisecond.
ACK_S = 0.4


@pytest.fixture
def arc() -> Iterator[ArcReceiver]:
    with ArcReceiver({"1234": None, "ABCD": KEY}) as receiver:
        yield receiver


def link_to(arc: ArcReceiver, transport: str, ident: Identity | None = None,
            ack_timeout_s: float = ACK_S) -> Dc09Link:
    return Dc09Link("127.0.0.1", arc.port, transport,  # type: ignore[arg-type]
                    ident or Identity("1234", "1", "2"), ack_timeout_s=ack_timeout_s,
                    connect_timeout_s=1.0)


@pytest.fixture(params=TRANSPORTS)
def link(request: pytest.FixtureRequest, arc: ArcReceiver) -> Iterator[Dc09Link]:
    lk = link_to(arc, request.param)
    yield lk
    lk.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "aes256"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_alarm_arrives_with_account_and_zone(arc: ArcReceiver, transport: str,
                                                encrypted: bool) -> None:
    ident = (Identity("ABCD", None, "1", key_from_text(KEY)) if encrypted
             else Identity("1234", "1", "2"))
    lk = link_to(arc, transport, ident)
    try:
        out = lk.send("ADM-CID", f"#{ident.account}|1120 01 015", 17)
        assert out.kind == "ack", out
        assert out.rtt_s is not None and out.rtt_s == lk.last_rtt_s
        event = arc.wait_for(lambda e: e["sequence"] == "0017", 2)
        assert (event["account"], event["code"], event["event_type"], event["ri"],
                event["partition"], event["encrypted"], event["message_type"]) == (
            ident.account, "PA", "120", "015", "01", encrypted, "ADM-CID")
        assert abs((event["timestamp"] - datetime.now(UTC)).total_seconds()) < 3
        assert lk.send("NULL", "", 0).kind == "ack"  # supervision
        assert lk.counters["sent"] == 2 and lk.counters["ack"] == 2
    finally:
        lk.close()


def test_nak_mode_resynchronises_the_offset_from_the_receiver_s_clock(
        arc: ArcReceiver, link: Dc09Link) -> None:
    arc.mode = "nak"
    ours = lambda: time.time() - 100.0  # noqa: E731 -- our clock 100 s behind
    out = link.send("ADM-CID", ALARM, 1, wall=ours)
    assert out.kind == "nak" and "resynchronised" in out.detail
    assert 98.0 < link.offset_s < 102.0  # the NAK's timestamp has whole seconds
    arc.mode = "normal"
    assert link.send("ADM-CID", ALARM, 2, wall=ours).kind == "ack"
    event = arc.wait_for(lambda e: e["sequence"] == "0002", 2)
    assert abs((event["timestamp"] - datetime.now(UTC)).total_seconds()) < 3


def test_a_receiver_clock_ahead_naks_for_real_then_acks_after_the_resync(
        arc: ArcReceiver, link: Dc09Link) -> None:
    arc.clock_offset_s = 300.0
    out = link.send("ADM-CID", ALARM, 1)
    assert out.kind == "nak", out
    assert arc.counts.error_timestamp == 1  # pysiaalarm's own timestamp check said no
    assert 298.0 < link.offset_s < 302.0
    assert link.send("ADM-CID", ALARM, 2).kind == "ack"
    event = arc.wait_for(lambda e: e["sequence"] == "0002", 2)
    ahead = (event["timestamp"] - datetime.now(UTC)).total_seconds()
    assert 297.0 < ahead < 303.0


def test_duh_for_a_code_the_receiver_does_not_know(arc: ArcReceiver, link: Dc09Link) -> None:
    out = link.send("ADM-CID", "#1234|1607 01 001", 3)
    assert out.kind == "duh" and "0003" in out.detail
    assert link.send("SIA-DCS", "#1234|Nri1/AC", 4).kind == "duh"  # pysiaalarm's own DUH
    arc.duh_unmapped_cid = False  # pysiaalarm alone ACKs 607 as "YN"
    assert link.send("ADM-CID", "#1234|1607 01 001", 5).kind == "ack"
    assert arc.wait_for(lambda e: e["sequence"] == "0005", 2)["code"] == "YN"
    assert link.counters["duh"] == 2


def test_a_silent_receiver_times_out_within_the_ack_timeout(
        arc: ArcReceiver, link: Dc09Link) -> None:
    arc.mode = "silent"
    start = time.monotonic()
    out = link.send("ADM-CID", ALARM, 6)
    took = time.monotonic() - start
    assert out.kind == "timeout" and out.rtt_s is None
    assert ACK_S - 0.05 < took < ACK_S + 0.5
    arc.wait_for(lambda e: e["sequence"] == "0006", 2)  # it got there: only the ACK is lost


@pytest.mark.parametrize(("mode", "counter"), [
    ("garbage", "malformed"), ("bad_crc", "crc"), ("truncated", "truncated")])
def test_broken_answers_are_counted_and_end_in_a_timeout(
        arc: ArcReceiver, link: Dc09Link, mode: str, counter: str) -> None:
    arc.mode = mode  # type: ignore[assignment]
    out = link.send("ADM-CID", ALARM, 7)
    assert out.kind == "timeout", out
    assert link.counters.get(counter) == 1, link.counters
    if mode == "garbage":
        assert link.counters["junk_bytes"] > 0
    arc.mode = "normal"
    assert link.send("ADM-CID", ALARM, 8).kind == "ack"


def test_a_receiver_that_is_down_is_an_error_naming_it_until_it_is_back(
        arc: ArcReceiver, link: Dc09Link) -> None:
    assert link.send("ADM-CID", ALARM, 1).kind == "ack"
    arc.mode = "down"
    start = time.monotonic()
    outs = [link.send("ADM-CID", ALARM, n) for n in (2, 3)]
    assert time.monotonic() - start < 1.0
    for out in outs:
        assert out.kind == "error", out
        assert f"127.0.0.1:{arc.port}" in out.detail and "check" in out.detail
    assert "refused" in outs[1].detail
    arc.mode = "normal"
    assert link.send("ADM-CID", ALARM, 4).kind == "ack"
    assert link.counters["error"] == 2


def test_no_receiver_at_all_is_an_error_not_a_hang() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lk = Dc09Link("127.0.0.1", port, "tcp", Identity("1234"), connect_timeout_s=1.0)
    try:
        out = lk.send("ADM-CID", ALARM, 1)
        assert out.kind == "error" and f"127.0.0.1:{port}" in out.detail
        assert "refused" in out.detail
    finally:
        lk.close()


def test_abort_from_another_thread_unblocks_a_send(arc: ArcReceiver, link: Dc09Link) -> None:
    link.ack_timeout_s = 30.0
    arc.mode = "silent"
    result: list[Outcome] = []
    sender = threading.Thread(target=lambda: result.append(link.send("ADM-CID", ALARM, 9)),
                              name="dc09-sender")
    sender.start()
    arc.wait_for(lambda e: e["sequence"] == "0009", 5)  # the send is now waiting for its ACK
    start = time.monotonic()
    link.abort()
    sender.join(5)
    assert not sender.is_alive()
    assert time.monotonic() - start < 1.0
    assert result == [Outcome("error", None, "closed")]
    assert link.send("ADM-CID", ALARM, 10) == Outcome("error", None, "closed")


def test_replies_for_another_sequence_are_skipped() -> None:
    ident = Identity("1234", None, "0")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1000)
                conn.sendall(frame_body('"ACK"0004L0#1234[]') + b"noise"
                             + frame_body('"NAK"0003L0A0[]_10:00:00,01-01-2026')
                             + frame_body('"ACK"0005L0#1234[]'))
                conn.recv(1000)  # until the link closes

        peer = threading.Thread(target=answer, name="dc09-peer")
        peer.start()
        lk = Dc09Link("127.0.0.1", port, "tcp", ident, ack_timeout_s=2.0)
        try:
            out = lk.send("ADM-CID", ALARM, 5)
        finally:
            lk.close()
            peer.join(5)
    assert out.kind == "ack", out
    assert lk.counters["other_seq"] == 2 and lk.counters["junk_bytes"] == 5
    assert lk.offset_s == 0.0  # a NAK for another message does not move the clock

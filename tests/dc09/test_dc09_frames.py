"""DC-09 frames against pysiaalarm, the independent receiver: what we build it parses, what
it answers we read; and every way a reply can be broken comes back as the right reason."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pysiaalarm.account import SIAAccount
from pysiaalarm.event import NAKEvent, SIAEvent

from gateway.dc09.frames import (
    FrameError,
    Identity,
    ReplyBuffer,
    build_message,
    crc16_arc,
    frame_body,
    key_from_text,
    parse_reply,
)
from gateway.errors import Dc09FrameError, GatewayError

KEYS = {"plain": None, "aes128": "0123456789ABCDEF", "aes192": "0123456789ABCDEF01234567",
        "aes256": "0123456789ABCDEF0123456789ABCDEF"}
NOW = datetime(2026, 11, 28, 15, 37, 4, tzinfo=UTC)


def ident_for(key_name: str, receiver: str | None = "12") -> Identity:
    key = KEYS[key_name]
    return Identity("1234", receiver, "3", key_from_text(key) if key else None)


def received(frame: bytes, key_name: str) -> SIAEvent:
    """What pysiaalarm makes of `frame`, read as its servers read a line."""
    accounts = {"1234": SIAAccount("1234", KEYS[key_name])}
    return SIAEvent.from_line(frame.decode("ascii").strip(), accounts)


def test_crc16_arc_matches_the_check_value_and_pysiaalarm() -> None:
    assert crc16_arc(b"123456789") == 0xBB3D
    assert crc16_arc(b"") == 0
    for text in ('"ADM-CID"0001L0#1234[#1234|1120 01 001]', "A", "\x7f~ |[]", "9" * 300):
        assert f"{crc16_arc(text.encode()):04X}" == SIAEvent._crc_calc(text)


@pytest.mark.parametrize("receiver", ["12", None])
@pytest.mark.parametrize("key_name", list(KEYS))
def test_pysiaalarm_parses_our_contact_id_message(key_name: str, receiver: str | None) -> None:
    ident = ident_for(key_name, receiver)
    frame = build_message("ADM-CID", 42, ident, "#1234|1120 01 015", NOW)
    assert frame.startswith(b"\n") and frame.endswith(b"\r")
    assert int(frame[5:9], 16) == len(frame) - 10  # LF crc len ... CR
    event = received(frame, key_name)
    assert event.valid_message
    # pysiaalarm's valid_length reads the hex length as decimal (a quirk: it never checks
    # it), so compare it the way DC-09 means it
    assert event.length is not None and event.full_message is not None
    assert int(event.length, 16) == len(event.full_message)
    assert event.encrypted is (key_name != "plain")
    assert (event.account, event.sequence, event.line) == ("1234", "0042", "L3")
    assert event.receiver == (f"R{receiver}" if receiver else None)
    assert (event.event_qualifier, event.event_type, event.partition, event.ri) == (
        "1", "120", "01", "015")
    assert event.code == "PA"
    assert event.timestamp == NOW


@pytest.mark.parametrize("key_name", ["plain", "aes128", "aes256"])
def test_pysiaalarm_acks_our_null_supervision_message(key_name: str) -> None:
    ident = ident_for(key_name)
    event = received(build_message("NULL", 0, ident, "", datetime.now(UTC)), key_name)
    assert event.valid_message and event.code == "RP"
    reply = parse_reply(event.create_response(), ident)
    assert (reply.kind, reply.seq, reply.account) == ("ACK", 0, "1234")


@pytest.mark.parametrize("key_name", list(KEYS))
def test_we_read_pysiaalarm_s_ack_and_its_encrypted_ack_carries_its_clock(
        key_name: str) -> None:
    ident = ident_for(key_name)
    now = datetime.now(UTC)
    event = received(build_message("ADM-CID", 7, ident, "#1234|1120 01 001", now), key_name)
    reply = parse_reply(event.create_response(), ident)
    assert (reply.kind, reply.seq, reply.account) == ("ACK", 7, "1234")
    if key_name == "plain":
        assert reply.timestamp is None
    else:
        assert reply.timestamp is not None
        assert abs((reply.timestamp - now).total_seconds()) < 3


@pytest.mark.parametrize("key_name", ["plain", "aes128"])
def test_a_stale_timestamp_gets_pysiaalarm_s_nak_with_its_clock(key_name: str) -> None:
    ident = ident_for(key_name)
    stale = datetime.now(UTC) - timedelta(minutes=5)
    event = received(build_message("ADM-CID", 8, ident, "#1234|1120 01 001", stale), key_name)
    assert not event.valid_timestamp
    reply = parse_reply(event.create_response(), ident)
    assert (reply.kind, reply.seq, reply.account) == ("NAK", 0, None)  # NAK is never encrypted
    assert reply.timestamp is not None
    assert abs((reply.timestamp - datetime.now(UTC)).total_seconds()) < 3


def test_we_read_pysiaalarm_s_nak_for_a_line_it_cannot_parse() -> None:
    # NAKEvent's own layout: "NAK"0000L0R0A0[]_timestamp (L before R).
    reply = parse_reply(NAKEvent().create_response(), ident_for("plain"))
    assert (reply.kind, reply.seq) == ("NAK", 0)
    assert reply.timestamp is not None


def test_an_unknown_sia_code_gets_pysiaalarm_s_duh() -> None:
    ident = ident_for("aes128")
    event = received(build_message("SIA-DCS", 9, ident, "#1234|Nri1/AC", NOW), "aes128")
    assert event.code_not_found
    reply = parse_reply(event.create_response(), ident)
    assert (reply.kind, reply.seq, reply.account) == ("DUH", 9, "1234")


def test_pysiaalarm_maps_an_unknown_contact_id_code_to_yn_and_acks_it() -> None:
    # A quirk the ARC simulator's duh_unmapped_cid works around.
    event = received(build_message("ADM-CID", 3, ident_for("plain"), "#1234|1607 01 001",
                                   datetime.now(UTC)), "plain")
    assert (event.event_type, event.code, event.response.value) == ("607", "YN", "ACK")


def _ack(ident: Identity, seq: int = 5) -> bytes:
    event = received(build_message("ADM-CID", seq, ident, "#1234|1120 01 001",
                                   datetime.now(UTC)), "plain" if ident.key is None else
                     next(k for k, v in KEYS.items() if v and v.encode() == ident.key))
    return event.create_response()


def _reason(frame: bytes, ident: Identity) -> str:
    with pytest.raises(FrameError) as info:
        parse_reply(frame, ident)
    assert isinstance(info.value, Dc09FrameError) and isinstance(info.value, GatewayError)
    assert info.value.frame == frame
    return info.value.reason


def test_broken_replies_raise_frame_error_with_the_reason() -> None:
    plain, enc = ident_for("plain"), ident_for("aes128")
    ack = _ack(plain)
    assert _reason(ack.replace(b"#1234", b"#1235"), plain) == "crc"
    assert _reason(ack[: len(ack) // 2], plain) == "truncated"
    assert _reason(ack[:-1], plain) == "truncated"  # no CR
    assert _reason(b"\n" + ack[1:5] + b"00\r", plain) == "truncated"
    assert _reason(b"\n\r", plain) == "truncated"  # pysiaalarm's answer to a bad CRC
    assert _reason(ack[:-1] + b"X\r", plain) == "length"
    assert _reason(frame_body('"HELLO"0001L0#1234[]'), plain) == "malformed"
    assert _reason(frame_body('"ACK"0001L0Q#1234[]'), plain) == "malformed"
    assert _reason(frame_body('"NAK"0000R0L0A0[]_25:99:00,13-40-2026'), plain) == "malformed"
    assert _reason(b"\nZZZZ not a frame\r", plain) == "malformed"
    assert _reason(frame_body('"ACK"0005R12L3#9999[]'), plain) == "account"
    enc_ack = _ack(enc)
    assert _reason(enc_ack, plain) == "decrypt"
    assert _reason(enc_ack, dataclasses.replace(enc, key=b"FEDCBA9876543210")) == "decrypt"
    assert _reason(frame_body('"*ACK"0005R12L3#1234[ABC'), enc) == "decrypt"


def test_pysiaalarm_s_none_for_a_missing_receiver_is_tolerated() -> None:
    ident = ident_for("plain", receiver=None)
    ack = _ack(ident)
    assert b"None" in ack  # pysiaalarm formats the missing receiver as Python's None
    assert parse_reply(ack, ident).kind == "ACK"


def test_reply_buffer_cuts_frames_drops_junk_and_stays_bounded() -> None:
    ident = ident_for("plain")
    a, b = _ack(ident, 1), _ack(ident, 2)
    buf = ReplyBuffer(cap=256)
    stream = b"junk" + a + b"\x00\xff" + b[:10]
    assert buf.feed(stream) == [a]
    assert buf.partial and buf.junk_bytes == 6
    assert buf.feed(b[10:]) == [b]
    assert not buf.partial
    # a frame cut short by the next LF is dropped, the next one still comes through
    assert buf.feed(a[:12] + b) == [b]
    assert buf.truncated == 1
    # megabytes without a CR: dropped in pieces, memory stays under the cap
    for _ in range(1000):
        assert buf.feed(b"\n" + b"x" * 1000) == []
        assert len(buf._frame) <= buf.cap
    assert buf.overflows == 1000
    assert buf.feed(b"y" * 5000 + a) == [a]
    buf.feed(b"\npartial")
    buf.clear()
    assert not buf.partial and buf.feed(b + a) == [b, a]
    assert [parse_reply(f, ident).seq for f in (a, b)] == [1, 2]


def test_build_message_refuses_what_it_cannot_send() -> None:
    ident = ident_for("plain")
    with pytest.raises(ValueError, match="token"):
        build_message("ADM-XYZ", 1, ident, "", NOW)
    with pytest.raises(ValueError, match="sequence"):
        build_message("ADM-CID", 0, ident, "#1234|1120 01 001", NOW)
    with pytest.raises(ValueError, match="sequence"):
        build_message("ADM-CID", 10000, ident, "#1234|1120 01 001", NOW)
    with pytest.raises(ValueError, match="without"):
        build_message("ADM-CID", 1, ident, "#1234|1120 01 001]", NOW)
    with pytest.raises(ValueError, match="no data"):
        build_message("NULL", 0, ident, "x", NOW)
    with pytest.raises(ValueError, match="aware"):
        build_message("ADM-CID", 1, ident, "#1234|1120 01 001", NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="identity"):
        build_message("ADM-CID", 1, Identity("12"), "#12|1120 01 001", NOW)
    with pytest.raises(ValueError, match="at most"):
        build_message("SIA-DCS", 1, ident, "#1234|N" + "x" * 5000, NOW)


def test_the_timestamp_is_written_in_utc() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=8)))
    assert build_message("NULL", 0, ident_for("plain"), "", local).endswith(
        b"]_15:37:04,11-28-2026\r")


def test_identity_problems_and_keys() -> None:
    assert Identity("1234", "12", "3", b"0123456789ABCDEF").problems() == []
    assert Identity("ABCDEF0123456789", None, "FFFFFF").problems() == []
    problems = Identity("12", "1234567", "G", b"short").problems()
    assert len(problems) == 4
    assert "3 to 16 hex digits" in problems[0] and "receiver" in problems[1]
    assert "line" in problems[2] and "16, 24 or 32 bytes" in problems[3]
    assert "uppercase" in Identity("abcd").problems()[0]
    assert key_from_text("0123456789abcdef") == b"0123456789abcdef"
    for bad in ("0123", "0123456789ABCDEG", ""):
        with pytest.raises(ValueError, match="16, 24 or 32 hex"):
            key_from_text(bad)


def test_encrypted_messages_are_padded_freshly_each_time() -> None:
    ident = ident_for("aes128")
    one = build_message("ADM-CID", 1, ident, "#1234|1120 01 001", NOW)
    two = build_message("ADM-CID", 1, ident, "#1234|1120 01 001", NOW)
    assert one != two  # pseudo-random pad
    assert (len(one) - 10 - len(b'"*ADM-CID"0001R12L3#1234[')) % 32 == 0  # hex of blocks
    assert (received(one, "aes128").content or "").count("|") == 2  # <pad>|#1234|...

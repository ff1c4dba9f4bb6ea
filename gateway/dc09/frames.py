"""SIA DC-09 framing: the CRC, the frame, AES, and the receiver's replies.

A DC-09 frame is ``LF crc len body CR``: ``crc`` is CRC-16/ARC of the body as 4 uppercase
hex digits, ``len`` the body's length as 4 hex digits (``0LLL``), and the body::

    "ADM-CID"0042R1L1#1234[#1234|1120 01 001]_15:37:04,11-28-2026

the token (``"*ADM-CID"`` when encrypted, ``"NULL"`` for a supervision message,
``"SIA-DCS"``), the 4-digit sequence, the optional receiver ``R<hex>``, the line
``L<hex>``, the account ``#<hex>``, and between ``[`` and ``]`` the data, followed by the
UTC timestamp ``_HH:MM:SS,MM-DD-YYYY``.

Encryption (DC-09 2013, AES-CBC with an all-zero IV): everything after ``[`` becomes the
uppercase hex of the cipher text of ``<pad>|<data>]_<timestamp>``, where ``pad`` is
pseudo-random characters (never ``|``, ``[`` or ``]``) that make the plain text a multiple
of 16 bytes.

The key: receivers and panels (pysiaalarm, Ajax-style panels) take the key as a string of
16, 24 or 32 hex characters and use **the ASCII bytes of that string** as the AES key
(AES-128, -192, -256 by the string's length), not the bytes the hex digits stand for.
`Identity.key` holds those bytes; `key_from_text` turns the configured string into them.

The replies (``ACK``, ``NAK``, ``DUH``, ``RSP``) are framed the same way. An ACK on an
encrypted account is ``"*ACK"seq R L #acct[`` plus the hex of the encrypted
``<pad>]_<timestamp>``; a NAK is never encrypted and carries the receiver's clock
(``"NAK"0000R0L0A0[]_timestamp``), from which the sender resynchronises its timestamps.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.errors import Dc09FrameError

#: What the sender may put in a message's token (the quotes and the ``*`` are added).
Token = Literal["ADM-CID", "SIA-DCS", "NULL"]
TOKENS: tuple[str, ...] = ("ADM-CID", "SIA-DCS", "NULL")
#: Why a reply frame was refused (the link counts each).
FrameReason = Literal["crc", "length", "truncated", "malformed", "decrypt", "account"]
ReplyKind = Literal["ACK", "NAK", "DUH", "RSP"]

#: Largest body the 4-hex-digit ``0LLL`` length can state.
MAX_BODY = 0xFFF
#: The receiver buffer's cap: a frame longer than this is junk.
REPLY_CAP = 4096
#: Pad characters for encrypted messages: printable, never ``|``, ``[`` or ``]``.
PAD_ALPHABET = string.ascii_letters + string.digits
TIMESTAMP_FORMAT = "%H:%M:%S,%m-%d-%Y"

_HEX = re.compile(r"[0-9A-Fa-f]+")
_UPPER_HEX = re.compile(r"[0-9A-F]+")
_ZERO_IV = bytes(16)
_REPLY = re.compile(r'"(?P<star>\*?)(?P<kind>ACK|NAK|DUH|RSP)"(?P<seq>[0-9]{4})'
                    r"(?P<ids>[^\[]*)\[(?P<rest>.*)", re.S)
# R<receiver>, L<line>, #<account>, A<account for a NAK>; "None" is pysiaalarm's echo of a
# missing receiver (it formats Python's None into the reply).
_ID = re.compile(r"R(?P<r>[0-9A-Fa-f]{1,6})|L(?P<l>[0-9A-Fa-f]{1,6})"
                 r"|#(?P<acct>[0-9A-Fa-f]{3,16})|A(?P<a>[0-9A-Fa-f]{0,16})|None")
_STAMP = re.compile(r"_(?P<ts>[0-9]{2}:[0-9]{2}:[0-9]{2},[0-9]{2}-[0-9]{2}-[0-9]{4})$")


class FrameError(Dc09FrameError):
    """A reply frame cannot be used; `reason` says why (see `FrameReason`)."""

    reason: FrameReason

    def __init__(self, reason: FrameReason, message: str, frame: bytes = b"") -> None:
        super().__init__(reason, message, frame)


def _crc16_arc_bitwise(data: bytes) -> int:
    """CRC-16/ARC bit by bit: the definition, from which the table is made (and tested)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


_CRC_TABLE = tuple(_crc16_arc_bitwise(bytes([n])) for n in range(256))


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC (poly 0x8005 reflected, init 0, no final xor) of `data`, a byte at a
    time from a table (eight times faster than bit by bit: it is on every alarm's path)."""
    crc = 0
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def key_from_text(text: str) -> bytes:
    """The AES key for a configured key string of 16, 24 or 32 hex characters.

    The receivers' convention (module docstring): the key is the ASCII bytes of the
    string itself, so "0123456789ABCDEF" is a 16-byte AES-128 key. Raises ValueError.
    """
    if len(text) not in (16, 24, 32) or not _HEX.fullmatch(text):
        raise ValueError(f"a DC-09 key is 16, 24 or 32 hex characters, not {len(text)}"
                         " characters" + ("" if _HEX.fullmatch(text or "-") else
                                          " with non-hex characters"))
    return text.encode("ascii")


@dataclass(frozen=True)
class Identity:
    """Who the gateway is to one receiver: account, receiver and line numbers, AES key."""

    account: str
    """3 to 16 uppercase hex digits (without the ``#``)."""
    receiver: str | None = None
    """1 to 6 hex digits without the ``R``, or None to leave the receiver out."""
    line: str = "0"
    """1 to 6 hex digits without the ``L``."""
    key: bytes | None = None
    """16, 24 or 32 bytes (see `key_from_text`), or None for plain messages."""

    def problems(self) -> list[str]:
        """What is wrong with this identity, as sentences for the config's errors; empty if
        nothing."""
        found: list[str] = []
        acct = self.account
        if not (3 <= len(acct) <= 16) or not _HEX.fullmatch(acct):
            found.append(f"account {acct!r} must be 3 to 16 hex digits (0-9, A-F)")
        elif not _UPPER_HEX.fullmatch(acct):
            found.append(f"account {acct!r} must be written in uppercase"
                         f" ({acct.upper()!r}): receivers compare it as written")
        for name, value in (("receiver", self.receiver), ("line", self.line)):
            if value is None:
                continue
            if not (1 <= len(value) <= 6) or not _HEX.fullmatch(value):
                found.append(f"{name} {value!r} must be 1 to 6 hex digits, without the"
                             f" {'R' if name == 'receiver' else 'L'}")
        if self.key is not None and not isinstance(self.key, bytes):
            found.append("key must be bytes: key_from_text turns the configured 16, 24 or"
                         " 32 hex characters into them")
        elif self.key is not None and len(self.key) not in (16, 24, 32):
            found.append(f"key must be 16, 24 or 32 bytes (AES-128/192/256), not"
                         f" {len(self.key)}")
        return found


@dataclass(frozen=True)
class Reply:
    """A receiver's answer to one message."""

    kind: ReplyKind
    seq: int | None
    timestamp: datetime | None
    """The receiver's clock (UTC), from a NAK or an encrypted ACK; None when absent."""
    account: str | None
    raw: bytes


def _timestamp(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("a DC-09 timestamp needs an aware datetime (UTC)")
    t = when.astimezone(UTC)
    return f"_{t.hour:02d}:{t.minute:02d}:{t.second:02d},{t.month:02d}-{t.day:02d}-{t.year:04d}"


def _aes(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV))


def encrypt_text(key: bytes, text: str) -> str:
    """Uppercase hex of AES-CBC (zero IV) over `text`, whose length must be a multiple of 16."""
    enc = _aes(key).encryptor()
    return (enc.update(text.encode("ascii")) + enc.finalize()).hex().upper()


def decrypt_hex(key: bytes, hex_text: str) -> str:
    """The plain text of an encrypted part; raises ValueError when it is not one."""
    data = bytes.fromhex(hex_text)
    if not data or len(data) % 16:
        raise ValueError(f"{len(data)} bytes is not a whole number of AES blocks")
    dec = _aes(key).decryptor()
    return (dec.update(data) + dec.finalize()).decode("ascii", errors="replace")


#: Random bytes -> pad characters (the 256 byte values spread over PAD_ALPHABET: the pad
#: hides nothing, it only has to be printable and free of the separators).
_PAD_TABLE = bytes(ord(PAD_ALPHABET[n % len(PAD_ALPHABET)]) for n in range(256))


def _pad(length: int) -> str:
    return secrets.token_bytes(length).translate(_PAD_TABLE).decode("ascii")


def frame_body(body: str) -> bytes:
    """``LF crc len body CR`` for a body of printable ASCII."""
    raw = body.encode("ascii")
    if len(raw) > MAX_BODY:
        raise ValueError(f"a DC-09 body is at most {MAX_BODY} bytes, not {len(raw)}")
    return b"\n" + f"{crc16_arc(raw):04X}{len(raw):04X}".encode("ascii") + raw + b"\r"


def build_message(token: str, seq: int, ident: Identity, data: str, when: datetime) -> bytes:
    """The frame of one message, encrypted when `ident` has a key.

    `data` is what goes between ``[`` and ``]``, e.g. ``#1234|1120 01 001`` for ADM-CID, and
    must be empty for NULL. `seq` is 1..9999 (0..9999 for NULL). `when` (aware) is written in
    UTC. Raises ValueError for a bad token, sequence, identity or data.
    """
    if token not in TOKENS:
        raise ValueError(f"DC-09 token {token!r} is not one of {', '.join(TOKENS)}")
    low = 0 if token == "NULL" else 1
    if not low <= seq <= 9999:
        raise ValueError(f"DC-09 sequence {seq} is outside {low:04d}..9999")
    problems = ident.problems()
    if problems:
        raise ValueError("DC-09 identity: " + "; ".join(problems))
    if token == "NULL" and data:
        raise ValueError("a NULL (supervision) message carries no data")
    if any(c in data for c in "[]\r\n") or not data.isascii() or not data.isprintable():
        raise ValueError(f"DC-09 data {data!r} must be printable ASCII without [ or ]")
    content = f"{data}]{_timestamp(when)}"
    star = ""
    if ident.key is not None:
        star = "*"
        plain = "|" + content
        pad = (-len(plain)) % 16 or 16
        content = encrypt_text(ident.key, _pad(pad) + plain)
    receiver = f"R{ident.receiver}" if ident.receiver is not None else ""
    body = f'"{star}{token}"{seq:04d}{receiver}L{ident.line}#{ident.account}[{content}'
    return frame_body(body)


def _parse_stamp(text: str, frame: bytes) -> datetime | None:
    if not text:
        return None
    m = _STAMP.search(text)
    if m is None:
        raise FrameError("malformed", f"timestamp {text!r} is not _HH:MM:SS,MM-DD-YYYY",
                         frame)
    ts = m["ts"]  # HH:MM:SS,MM-DD-YYYY, digits where the pattern says (strptime is slow)
    try:
        return datetime(int(ts[15:19]), int(ts[9:11]), int(ts[12:14]), int(ts[0:2]),
                        int(ts[3:5]), int(ts[6:8]), tzinfo=UTC)
    except ValueError as exc:
        raise FrameError("malformed", f"timestamp {m['ts']!r}: {exc}", frame) from exc


def parse_reply(frame: bytes, ident: Identity) -> Reply:
    """The receiver's answer in `frame` (``LF .. CR``, as `ReplyBuffer` gives it).

    Raises FrameError: "truncated" (shorter than it says, or no CR), "length" (longer),
    "crc", "malformed" (not an ACK/NAK/DUH/RSP), "decrypt" (an encrypted reply without a
    key or that does not decrypt), "account" (the reply names another account).
    """
    inner = frame
    if inner.startswith(b"\n"):
        inner = inner[1:]
        if not inner.endswith(b"\r"):
            raise FrameError("truncated", "no CR at the end of the frame", frame)
    inner = inner.removesuffix(b"\r")
    head = inner[:8]
    if not _HEX.fullmatch(head.decode("ascii", errors="replace") or "-"):
        reason: FrameReason = "truncated" if len(head) < 8 and _HEX.fullmatch(
            head.decode("ascii", errors="replace") or "0") else "malformed"
        raise FrameError(reason, f"no CRC and length at the start: {head!r}", frame)
    if len(head) < 8:
        raise FrameError("truncated", f"frame ends inside its header: {head!r}", frame)
    body = inner[8:]
    declared = int(head[4:8], 16)
    if len(body) < declared:
        raise FrameError("truncated", f"body of {len(body)} bytes, header says {declared}",
                         frame)
    if len(body) > declared:
        raise FrameError("length", f"body of {len(body)} bytes, header says {declared}",
                         frame)
    if int(head[:4], 16) != crc16_arc(body):
        raise FrameError("crc", f"CRC {head[:4].decode()} but the body's is"
                         f" {crc16_arc(body):04X}", frame)
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError("malformed", "the body is not ASCII", frame) from exc
    m = _REPLY.fullmatch(text)
    if m is None:
        raise FrameError("malformed", f"not an ACK, NAK, DUH or RSP: {text[:60]!r}", frame)
    account: str | None = None
    pos = 0
    ids = m["ids"]
    while pos < len(ids):
        idm = _ID.match(ids, pos)
        if idm is None or idm.end() == pos:
            raise FrameError("malformed", f"cannot read {ids[pos:]!r} in {text[:60]!r}",
                             frame)
        if idm["acct"] is not None:
            account = idm["acct"].upper()
        pos = idm.end()
    if account is not None and account != ident.account.upper():
        raise FrameError("account", f"the reply is for account {account}, not"
                         f" {ident.account}", frame)
    rest = m["rest"]
    if m["star"]:
        if ident.key is None:
            raise FrameError("decrypt", "an encrypted reply on an account without a key", frame)
        try:
            rest = decrypt_hex(ident.key, rest)
        except ValueError as exc:
            raise FrameError("decrypt", f"the encrypted part does not decrypt: {exc}",
                             frame) from exc
        if "]" not in rest:
            raise FrameError("decrypt", "the decrypted part has no ']' (wrong key?)", frame)
        rest = rest[rest.index("]"):]
        try:
            _parse_stamp(rest[rest.rindex("]") + 1:], frame)
        except FrameError as exc:  # a wrong key's noise can hold a "]" by chance
            raise FrameError("decrypt", f"the decrypted part is not '<pad>]_timestamp'"
                             f" (wrong key?): {exc}", frame) from exc
    elif "]" not in rest:
        raise FrameError("malformed", f"no ']' in {text[:60]!r}", frame)
    stamp = _parse_stamp(rest[rest.rindex("]") + 1:], frame)
    kind: ReplyKind = m["kind"]  # type: ignore[assignment]
    return Reply(kind=kind, seq=int(m["seq"]), timestamp=stamp, account=account, raw=frame)


class ReplyBuffer:
    """Cuts a TCP byte stream into frames (``LF .. CR``), bounded in memory.

    Bytes outside a frame are dropped and counted in `junk_bytes`; a frame cut short by the
    next LF is counted in `truncated` (and dropped); a frame longer than `cap` without its
    CR is dropped whole and counted in `overflows`, and the bytes up to the next LF are junk.
    """

    def __init__(self, cap: int = REPLY_CAP) -> None:
        self.cap = cap
        self.junk_bytes = 0
        self.truncated = 0
        self.overflows = 0
        self._frame = bytearray()
        self._in_frame = False

    @property
    def partial(self) -> bool:
        """Whether the stream stopped inside a frame (its LF came, its CR not yet)."""
        return self._in_frame

    def clear(self) -> None:
        """Forget a partial frame (a new connection starts clean)."""
        self._frame.clear()
        self._in_frame = False

    def feed(self, data: bytes) -> list[bytes]:
        """Take `data` from the stream; return the frames it completed, in order."""
        out: list[bytes] = []
        pos = 0
        n = len(data)
        while pos < n:
            if not self._in_frame:
                lf = data.find(b"\n", pos)
                if lf < 0:
                    self.junk_bytes += n - pos
                    return out
                self.junk_bytes += lf - pos
                self._in_frame = True
                self._frame = bytearray(b"\n")
                pos = lf + 1
                continue
            cr = data.find(b"\r", pos)
            lf = data.find(b"\n", pos)
            if lf >= 0 and (cr < 0 or lf < cr):
                self.truncated += 1
                self._frame = bytearray(b"\n")
                pos = lf + 1
                continue
            end = n if cr < 0 else cr + 1
            if len(self._frame) + (end - pos) > self.cap:
                self.overflows += 1
                self.junk_bytes += len(self._frame) + (end - pos)
                self._frame = bytearray()
                self._in_frame = False
                pos = end
                continue
            self._frame += data[pos:end]
            pos = end
            if cr >= 0:
                out.append(bytes(self._frame))
                self._frame = bytearray()
                self._in_frame = False
        return out

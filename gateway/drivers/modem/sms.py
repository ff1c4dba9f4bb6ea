"""SMS texts and numbers: cleaning, UCS-2, splitting into numbered parts. Pure functions.

Every SMS goes out UCS2-encoded (see `gateway.drivers.modem.modem` for why), so the
unit of length is the UTF-16 code unit: 70 in one message.

- Characters outside the BMP (emoji, rare CJK Extension B characters that do occur in
  Chinese names) are sent as UTF-16 surrogate pairs, which is what phones decode; each
  counts as two of the 70 units, and a message is never split inside a pair. Lone
  surrogates (only possible in a broken Python string) become U+FFFD.
- A text longer than one SMS becomes a numbered series of separate messages,
  "(1/3) ...", "(2/3) ...", each within 70 units. Not a concatenated SMS: that needs PDU
  mode and leaves the reassembly to the phone, which shows nothing (or a fragment) while a
  part is missing; a numbered part stands on its own, and the first one carries the most
  important words (the escalation puts the point and "ALARM" first). A text that would
  need more than `max_parts` messages is cut, ending with "…": an alarm SMS must go out
  even if a name in the config is absurdly long.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.errors import SmsInputError

#: UTF-16 code units in one UCS2 SMS (140 octets of user data).
SMS_UCS2_UNITS = 70
#: Default for the most messages one text may become before it is cut.
DEFAULT_MAX_PARTS = 5
#: Ends a text that was cut to `max_parts` messages.
ELLIPSIS = "…"

_PART_PREFIX_RE = re.compile(r"\((\d+)/(\d+)\) ")
_NUMBER_RE = re.compile(r"\+?[0-9]{3,20}")
_NUMBER_JUNK = str.maketrans("", "", " -().")


def clean_text(text: str) -> str:
    """Return `text` with lone surrogate code points replaced by U+FFFD.

    A Python str may hold surrogates (e.g. from a surrogateescape decode); UTF-16 cannot.
    """
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return text
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def utf16_units(text: str) -> int:
    """Return how many UTF-16 code units (of the 70 in one SMS) `text` takes."""
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


def encode_ucs2(text: str) -> str:
    """Encode `text` as the modem wants it under `AT+CSCS="UCS2"`: hex of UTF-16BE.

    Characters outside the BMP become surrogate pairs (8 hex digits).
    """
    return clean_text(text).encode("utf-16-be").hex().upper()


def decode_ucs2(data: str) -> str:
    """Decode hex UTF-16BE (as a modem shows UCS2 strings) back to text.

    Raises:
        ValueError: `data` is not hex, has an odd number of octets or a broken surrogate.
    """
    return bytes.fromhex(data).decode("utf-16-be")


def _take(text: str, start: int, units: int) -> int:
    """Return the end of the longest `text[start:end]` that fits in `units` UTF-16 units."""
    used = 0
    end = start
    while end < len(text):
        width = 2 if ord(text[end]) > 0xFFFF else 1
        if used + width > units:
            break
        used += width
        end += 1
    return end


def _numbered(text: str, n: int, limit: int) -> list[str] | None:
    """Split `text` into exactly `n` numbered parts of at most `limit` units, or None."""
    parts: list[str] = []
    pos = 0
    for i in range(1, n + 1):
        prefix = f"({i}/{n}) "
        end = _take(text, pos, limit - len(prefix))
        parts.append(prefix + text[pos:end])
        pos = end
        if pos == len(text):
            # A prefix for n is never shorter than for n-1, so fitting in fewer parts than n
            # means n-1 would have fitted and been chosen: this only happens at i == n.
            return parts if i == n else None
    return None


def split_sms(text: str, max_parts: int = DEFAULT_MAX_PARTS,
              limit: int = SMS_UCS2_UNITS) -> list[str]:
    """Split `text` into the SMS texts to send, each at most `limit` UTF-16 units.

    A text that fits is one message, unchanged. A longer one becomes the fewest numbered
    parts "(1/n) ...": concatenating the parts without their prefixes gives the text back.
    A text that needs more than `max_parts` parts is cut: the last part ends with "…".

    Args:
        text: the message; lone surrogates become U+FFFD.
        max_parts: the most messages to make (at least 1).
        limit: UTF-16 units per message (70 for UCS2).

    Raises:
        SmsInputError: `text` is empty.
        ValueError: `max_parts` or `limit` is out of range.
    """
    if max_parts < 1:
        raise ValueError(f"max_parts must be at least 1, not {max_parts}")
    if limit < 16:
        raise ValueError(f"limit must be at least 16 UTF-16 units, not {limit}")
    text = clean_text(text)
    if not text:
        raise SmsInputError("the SMS text is empty")
    if utf16_units(text) <= limit:
        return [text]
    for n in range(2, max_parts + 1):
        parts = _numbered(text, n, limit)
        if parts is not None:
            return parts
    # Too long: fill max_parts and end the last one with an ellipsis.
    parts = []
    pos = 0
    for i in range(1, max_parts + 1):
        prefix = f"({i}/{max_parts}) " if max_parts > 1 else ""
        room = limit - len(prefix)
        if i < max_parts:
            end = _take(text, pos, room)
            parts.append(prefix + text[pos:end])
        else:
            end = _take(text, pos, room - 1)
            parts.append(prefix + text[pos:end] + ELLIPSIS)
        pos = end
    return parts


def join_sms(parts: Sequence[str]) -> str:
    """Reassemble the parts that `split_sms` made (in order) into the text.

    Raises:
        ValueError: the parts are not a complete numbered series.
    """
    if len(parts) == 1:
        return parts[0]
    out: list[str] = []
    for i, part in enumerate(parts, start=1):
        m = _PART_PREFIX_RE.match(part)
        if m is None or int(m.group(1)) != i or int(m.group(2)) != len(parts):
            raise ValueError(f"part {i} of {len(parts)} does not start with ({i}/{len(parts)})")
        out.append(part[m.end():])
    return "".join(out)


def normalize_number(number: str) -> str:
    """Return `number` as the modem takes it: digits with an optional leading +.

    Spaces, dashes, dots and parentheses are dropped ("+86 138-0013-8000" is fine).

    Raises:
        SmsInputError: what is left is not 3 to 20 digits.
    """
    cleaned = number.strip().translate(_NUMBER_JUNK)
    if not _NUMBER_RE.fullmatch(cleaned):
        raise SmsInputError(
            f"phone number {number!r} is not usable: write 3 to 20 digits with an optional"
            " leading +, e.g. +8613800138000")
    return cleaned


def mask_number(number: str) -> str:
    """Return `number` with its middle hidden, for logs ("+86138****8000")."""
    if len(number) > 8:
        return number[:-8] + "****" + number[-4:]
    return "***" + number[-2:]

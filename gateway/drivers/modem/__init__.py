"""SMS through a serial 4G/GSM modem speaking AT commands (3GPP TS 27.005 / 27.007).

The escalation path uses this driver when nobody acknowledges an alarm: it texts the
duty numbers through a USB modem on the Pi. One module each:

- `sms`: the texts and numbers, pure functions: cleaning, UCS-2 encoding and decoding,
  splitting a long text into numbered SMS and joining them back, normalising and
  masking phone numbers.
- `codes`: what the modem's +CMS/+CME ERROR codes mean and what to check.
- `at`: `AtPort`, the AT command exchange on the serial port: bounded reads, answers
  among unsolicited codes, error lines, the "> " prompt, resynchronising.
- `status`: `ModemStatus`, what a check found and what stands in the way of an SMS.
- `modem`: `Modem`, the driver the service starts: check, send_sms, the SIM's PIN;
  thread-safe, and never to be called from the engine thread.
- `tool` (and `__main__`): `python -m gateway.drivers.modem` checks a port, probes for
  the AT port and sends a test SMS from the shell (stop the service first: it holds
  the port exclusively).

Errors are `gateway.errors.ModemError` subclasses with the port, the AT command, the
error code and the modem's reply as fields, and messages that say what to check.
Import from here; the modules are the package's own business.
"""

from gateway.drivers.modem.at import CTRL_Z, ESC
from gateway.drivers.modem.codes import CME_ERRORS, CMS_ERRORS
from gateway.drivers.modem.modem import ENGINE_THREAD_NAME, Modem
from gateway.drivers.modem.sms import (
    DEFAULT_MAX_PARTS,
    ELLIPSIS,
    SMS_UCS2_UNITS,
    clean_text,
    decode_ucs2,
    encode_ucs2,
    join_sms,
    mask_number,
    normalize_number,
    split_sms,
    utf16_units,
)
from gateway.drivers.modem.status import ModemStatus, Registration, SimState
from gateway.drivers.modem.tool import candidate_ports, main

__all__ = [
    "CME_ERRORS",
    "CMS_ERRORS",
    "CTRL_Z",
    "DEFAULT_MAX_PARTS",
    "ELLIPSIS",
    "ENGINE_THREAD_NAME",
    "ESC",
    "SMS_UCS2_UNITS",
    "Modem",
    "ModemStatus",
    "Registration",
    "SimState",
    "candidate_ports",
    "clean_text",
    "decode_ucs2",
    "encode_ucs2",
    "join_sms",
    "main",
    "mask_number",
    "normalize_number",
    "split_sms",
    "utf16_units",
]

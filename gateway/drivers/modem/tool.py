"""`python -m gateway.drivers.modem`: check a modem, find its AT port, send a test SMS.

For a technician at the shell; stop the service first: it holds the port exclusively.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.drivers.modem.modem import Modem
from gateway.errors import ModemError, SmsInputError


def candidate_ports() -> list[str]:
    """Serial ports where a USB modem's AT interface may be, stable names first."""
    found = sorted(glob.glob("/dev/serial/by-id/*"))
    found += sorted(glob.glob("/dev/ttyUSB*")) + sorted(glob.glob("/dev/ttyACM*"))
    return found


def _read_pin(path: str | None) -> str | None:
    if path is None:
        return None
    return Path(path).read_text(encoding="ascii").strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gateway.drivers.modem`: check a modem, find its AT port, send a test SMS."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.drivers.modem",
        description="Check an SMS modem, find its AT port or send a test SMS."
                    " Stop alarmgw first: it holds the port.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every AT command")
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("check", "send"):
        p = sub.add_parser(name, help="check the modem" if name == "check" else "send an SMS")
        p.add_argument("port", help="the AT port, e.g. /dev/ttyUSB2")
        p.add_argument("--baud", type=int, default=115200)
        p.add_argument("--pin-file", help="file holding the SIM PIN")
        p.add_argument("--timeout", type=float, default=3.0, help="per command, in seconds")
        if name == "send":
            p.add_argument("number")
            p.add_argument("text")
        else:
            p.add_argument("--json", action="store_true")
    probe = sub.add_parser("probe", help="try every serial port and say which answer AT")
    probe.add_argument("--timeout", type=float, default=0.5, help="per command, in seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.action == "probe":
            ports = candidate_ports()
            if not ports:
                print("no serial ports: is the modem plugged in (lsusb)?")
                return 1
            answering = 0
            for port in ports:
                with Modem(port, timeout_s=args.timeout) as modem:
                    try:
                        st = modem.check()
                    except ModemError as exc:
                        print(f"{port}: no ({exc})")
                        continue
                answering += 1
                print(f"{port}: answers AT: {st.manufacturer} {st.model}, SIM {st.sim},"
                      f" {st.registration}")
            return 0 if answering else 1
        with Modem(args.port, args.baud, args.timeout, _read_pin(args.pin_file)) as modem:
            if args.action == "check":
                st = modem.check()
                if args.json:
                    print(json.dumps(st.as_dict(), ensure_ascii=False, indent=2))
                else:
                    dbm = st.signal_dbm
                    print(f"{st.port}: {st.manufacturer} {st.model}, IMEI {st.imei}\n"
                          f"SIM: {st.sim}\nnetwork: {st.registration}\n"
                          f"signal: {'unknown' if dbm is None else f'{dbm} dBm'}")
                    for problem in st.problems():
                        print(f"problem: {problem}")
                return 0 if st.is_ready else 1
            refs = modem.send_sms(args.number, args.text)
            print(f"sent in {len(refs)} part(s), message references {refs}")
            return 0
    except (ModemError, SmsInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

"""A broker certificate out of its dates: the technician is told the dates and the Pi's clock.

A Raspberry Pi has no real-time clock: after a power cut without network its clock is
wrong until NTP syncs it, and every certificate can look expired or not yet valid. So
when the TLS verification fails on dates, `selftest`'s broker check and the uplink's
last error (describe_connect_error in gateway/uplink/tls.py) say so, with the
certificate's notBefore/notAfter, the gateway's UTC time and whether NTP has synced
it, instead of pointing at the CA and the host name. A real Mosquitto serves a
certificate issued from the test PKI's CA with the dates each test needs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from gw import REPO, InProcessGateway, write_config
from pki import Pki, write_key_file

from hw_sim.broker import Mosquitto, TlsListener

WAIT = 10.0
CLI_TIMEOUT = 30.0


def issue_server_cert(pki: Pki, directory: Path, not_before: dt.datetime,
                      not_after: dt.datetime) -> Pki:
    """A broker certificate for localhost/127.0.0.1 from the PKI's CA, valid exactly from
    `not_before` to `not_after`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key_file(key_path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return replace(pki, server_cert=cert_path, server_key=key_path)


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def alarmgw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=CLI_TIMEOUT,
                          check=False)


def broker_check(config: Path) -> dict[str, Any]:
    res = alarmgw(config, "selftest", "--json")
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    return checks["broker"]


CLOCK = re.compile(r"the gateway's clock says \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ UTC and is"
                   r" (NTP-synced|NOT NTP-synced|of unknown sync state) \(\w+\)")


@pytest.mark.parametrize(("days", "what", "verify"), [
    ((-40, -10), "has expired", "certificate has expired"),
    ((10, 40), "is not yet valid", "certificate is not yet valid"),
])
def test_selftest_names_the_dates_and_the_clock(tmp_path: Path, pki: Pki,
                                                days: tuple[int, int], what: str,
                                                verify: str) -> None:
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now + dt.timedelta(days=days[0]), now + dt.timedelta(days=days[1])
    dated = issue_server_cert(pki, tmp_path / "pki", not_before, not_after)
    listener = TlsListener(dated.ca_cert, dated.server_cert, dated.server_key,
                           require_certificate=False)
    with Mosquitto(tmp_path / "b", tls=listener) as broker:
        config = write_config(tmp_path / "gw", broker_port=broker.port,
                              broker={"host": "localhost"}, tls={"ca": str(pki.ca_cert)})
        check = broker_check(config)
    assert check["verdict"] == "FAIL", check
    detail = check["detail"]
    assert f"TLS: the certificate of broker localhost:{broker.port} {what} ({verify})" \
        in detail, detail
    assert f"it is valid only from {iso(not_before)} to {iso(not_after)}" in detail, detail
    assert CLOCK.search(detail), detail
    assert "broker.host matches" not in detail  # not the CA-or-host sentence any more
    assert "clock first" in check["hint"] and "timedatectl" in check["hint"], check
    assert "broker.tls.ca signs" not in check["hint"]


def test_the_uplink_says_it_too(tmp_path: Path, pki: Pki) -> None:
    """describe_connect_error is the uplink's last error: `alarmgw status` shows it."""
    now = dt.datetime.now(dt.UTC)
    expired = issue_server_cert(pki, tmp_path / "pki", now - dt.timedelta(days=400),
                                now - dt.timedelta(days=1))
    listener = TlsListener(expired.ca_cert, expired.server_cert, expired.server_key,
                           require_certificate=False)
    with Mosquitto(tmp_path / "b", tls=listener) as broker:
        config = write_config(tmp_path / "gw", broker_port=broker.port,
                              broker={"host": "localhost"}, tls={"ca": str(pki.ca_cert)})
        with InProcessGateway(config) as gw:
            uplink = gw.service.uplink
            assert uplink is not None
            deadline = time.monotonic() + WAIT
            while "has expired" not in (uplink.state()["last_error"] or ""):
                assert time.monotonic() < deadline, uplink.state()
                time.sleep(0.05)  # the uplink retries on its own schedule; nothing to wait on
            res = alarmgw(config, "status")
    assert res.returncode == 1
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("uplink:"))
    assert "has expired (certificate has expired)" in line, line
    assert f"to {iso(now - dt.timedelta(days=1))}" in line
    assert CLOCK.search(line), line


def test_certificate_validity_reads_the_dates_of_a_der_certificate(pki: Pki) -> None:
    from gateway.uplink.tls import certificate_validity

    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert certificate_validity(der) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
    with pytest.raises(ValueError):
        certificate_validity(der[:40])

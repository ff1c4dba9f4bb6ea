"""The uplink's TLS: its context, and what a failed connection says to the technician.

TLS is configured once into an `ssl.SSLContext` (TLS >= 1.2, certificate and host
name verified); a TLS failure is reported and retried as TLS, never as plaintext.
`describe_connect_error` turns a failed connect into one line naming the broker and
what to check; a certificate outside its dates names the dates and the gateway's
clock (a Pi without RTC is the usual suspect).
"""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime

from gateway.clock import clock_sync_state
from gateway.config import BrokerSettings
from gateway.errors import UplinkError


def make_tls_context(settings: BrokerSettings) -> ssl.SSLContext | None:
    """The uplink's TLS context, or None for an explicitly plaintext loopback broker."""
    tls = settings.tls
    if tls is None:
        return None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=str(tls.ca) if tls.ca else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if tls.cert is not None and tls.key is not None:
            ctx.load_cert_chain(str(tls.cert), str(tls.key))
    except (ssl.SSLError, OSError) as exc:
        raise UplinkError(f"broker.tls: cannot load the CA, certificate or key: {exc}; check"
                          " that the files are PEM and that the key matches the"
                          " certificate") from exc
    return ctx


#: OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID and X509_V_ERR_CERT_HAS_EXPIRED: a certificate
#: outside its dates, which on a Pi without a real-time clock is first the clock's doing.
_CERT_TIME_ERRORS = (9, 10)
#: How long describing an expired certificate may spend fetching it, in seconds.
_CERT_FETCH_TIMEOUT_S = 2.0


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the contents, end of the contents) of the DER item at `pos`."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _der_time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ, years 1950-2049
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def certificate_validity(der: bytes) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) of a DER X.509 certificate (raises ValueError)."""
    try:
        _, pos, _ = _der_item(der, 0)  # Certificate
        _, pos, _ = _der_item(der, pos)  # TBSCertificate
        if der[pos] == 0xA0:  # [0] version
            pos = _der_item(der, pos)[2]
        for _ in range(3):  # serialNumber, signature, issuer
            pos = _der_item(der, pos)[2]
        _, pos, _ = _der_item(der, pos)  # validity
        tag1, s1, e1 = _der_item(der, pos)
        tag2, s2, e2 = _der_item(der, e1)
        return _der_time(tag1, der[s1:e1]), _der_time(tag2, der[s2:e2])
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a certificate: {exc}") from exc


def _fetch_certificate(where: str) -> bytes:
    """The broker's own certificate, from a handshake that does not verify it (only to
    read its dates; nothing is sent over it)."""
    host, _, port = where.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host.strip("[]"), int(port)),
                                  timeout=_CERT_FETCH_TIMEOUT_S) as raw, \
            ctx.wrap_socket(raw, server_hostname=host.strip("[]")) as tls_sock:
        der = tls_sock.getpeercert(binary_form=True)
    if not der:
        raise ValueError("the broker sent no certificate")
    return der


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe_certificate_dates(exc: ssl.SSLCertVerificationError, where: str) -> str:
    """A certificate out of its dates: its dates when they can be read, the gateway's
    clock and whether NTP has synced it (a Pi has no real-time clock)."""
    expired = exc.verify_code == 10 or "expired" in (exc.verify_message or "")
    now = datetime.now(UTC)
    synced, method = clock_sync_state()
    clock = (f"the gateway's clock says {_iso(now)} UTC and is "
             + {True: "NTP-synced", False: "NOT NTP-synced", None: "of unknown sync state"}[
                 synced] + f" ({method})")
    try:
        not_before, not_after = certificate_validity(_fetch_certificate(where))
    except (OSError, ValueError) as err:
        dates = f"its dates could not be read ({err})"
        chain = ""
    else:
        dates = f"it is valid only from {_iso(not_before)} to {_iso(not_after)}"
        chain = ("" if not not_before <= now <= not_after else
                 "; the broker's own certificate is within its dates, so another one of its"
                 " chain (an intermediate, or the CA in broker.tls.ca) is not")
    what = "has expired" if expired else "is not yet valid"
    advice = ("a Pi without RTC: check the clock first (timedatectl; NTP needs UDP port 123)"
              if not synced else
              "the clock is synced, so the certificate really is out of its dates: the"
              " platform operator must " + ("renew it" if expired else "check its dates"))
    return (f"TLS: the certificate of broker {where} {what} ({exc.verify_message}): {dates};"
            f" {clock}{chain}; {advice}")


def describe_connect_error(exc: BaseException, where: str, tls: bool = False) -> str:
    """A technician's sentence for why connecting to the broker failed."""
    if tls and isinstance(exc, ConnectionResetError):
        return (f"broker {where} reset the connection during connect or the TLS handshake;"
                " check that the port is the broker's TLS listener and that it accepts this"
                " gateway's client certificate")
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in _CERT_TIME_ERRORS or any(
                w in (exc.verify_message or "") for w in ("expired", "not yet valid")):
            return _describe_certificate_dates(exc, where)
        return (f"TLS: the certificate of broker {where} was rejected ({exc.verify_message});"
                " check broker.tls.ca and that broker.host matches a name in the broker's"
                " certificate")
    if isinstance(exc, ssl.SSLError):
        return (f"TLS handshake with broker {where} failed ({exc.reason or exc}); check that the"
                " port is the broker's TLS listener and that the client certificate is"
                " accepted")
    if isinstance(exc, ConnectionRefusedError):
        return f"broker {where} refused the connection; is the broker running on that port?"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"broker {where} did not answer in time; check the network path and firewall"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve broker host of {where} ({exc.strerror}); check DNS and broker.host"
    if isinstance(exc, OSError):
        return f"cannot connect to broker {where}: {exc.strerror or exc}"
    return f"cannot connect to broker {where}: {exc!r}"

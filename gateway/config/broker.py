"""The [broker] and [broker.tls] tables: how the uplink reaches the police platform's broker.

TLS is the rule: plaintext needs `plaintext = true` and is refused for any host
but loopback (a test broker), so alarms never cross a network in the clear. The
TLS files are checked here, not at the first connect: they must exist, load
(`ssl` reads them now), and the client's private key must be readable by its
owner only.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config._fields import TomlTable, credentials, unprotected_key_file
from gateway.config.gateway import GatewaySettings


@dataclass(frozen=True)
class TlsSettings:
    """TLS for the uplink: TLS 1.2 or newer; `broker.host` is always checked against the
    broker's certificate."""

    ca: Path | None
    """CA bundle that signs the broker's certificate; None uses the system store."""
    cert: Path | None
    """Client certificate (PEM) for mutual TLS."""
    key: Path | None
    """Private key (PEM) of the client certificate."""


@dataclass(frozen=True)
class BrokerSettings:
    """The police platform's MQTT broker."""

    host: str
    port: int
    client_id: str
    username: str | None
    password: str | None = field(repr=False)
    tls: TlsSettings | None
    """None only when `plaintext = true` was set explicitly."""
    keepalive_s: int
    """MQTT keepalive, in seconds: a dead link is noticed within twice this."""
    connect_timeout_s: float
    """TCP connect and TLS handshake timeout, in seconds."""
    window: int
    """Most events in flight (published, PUBACK not yet received)."""
    reconnect_min_s: float
    reconnect_max_s: float


def parse_broker(root: TomlTable, gateway: GatewaySettings) -> BrokerSettings:
    """Read the required [broker] table and its [broker.tls]."""
    b = root.table("broker", required=True)
    assert b is not None
    b.expect("host", "port", "plaintext", "tls", "client_id", "username", "password",
             "password_file", "keepalive_s", "connect_timeout_s", "window", "reconnect_min_s",
             "reconnect_max_s")
    host = b.text("host", required=True)
    plaintext = b.flag("plaintext", False)
    tls_t = b.table("tls")
    if tls_t is None and not plaintext:
        raise b.error("tls", "missing: the uplink uses TLS; add a [broker.tls] table (ca = ...),"
                      " or set broker.plaintext = true for a test broker on loopback")
    if tls_t is not None and plaintext:
        raise b.error("plaintext", "true contradicts the [broker.tls] table: remove one")
    if plaintext and not is_loopback(host):
        raise b.error("plaintext", f"true is only allowed for a broker on loopback, not {host!r}:"
                      " alarms never cross a network in plaintext")
    tls = _parse_tls(tls_t) if tls_t is not None else None
    port = b.integer("port", 1883 if plaintext else 8883, min=1, max=65535)
    username, password = credentials(b)
    keepalive = b.integer("keepalive_s", 10, min=2, max=300)
    rmin = b.number("reconnect_min_s", 0.5, min=0.05, max=60.0)
    rmax = b.number("reconnect_max_s", 10.0, min=0.1, max=600.0)
    if rmax < rmin:
        raise b.error("reconnect_max_s", f"{rmax} is below reconnect_min_s ({rmin})")
    settings = BrokerSettings(
        host=host,
        port=port,
        client_id=b.text("client_id", f"alarmgw-{gateway.site}-{gateway.id}"),
        username=username,
        password=password,
        tls=tls,
        keepalive_s=keepalive,
        connect_timeout_s=b.number("connect_timeout_s", 5.0, min=0.5, max=60.0),
        window=b.integer("window", 64, min=1, max=1000),
        reconnect_min_s=rmin,
        reconnect_max_s=rmax,
    )
    b.done()
    return settings


def _parse_tls(t: TomlTable) -> TlsSettings:
    t.expect("ca", "cert", "key")
    ca = t.opt_path("ca")
    cert = t.opt_path("cert")
    key = t.opt_path("key")
    if (cert is None) != (key is None):
        missing = "key" if key is None else "cert"
        raise t.error(missing, "missing: cert and key go together for mutual TLS")
    for name, p in (("ca", ca), ("cert", cert), ("key", key)):
        if p is not None and not p.is_file():
            raise t.error(name, f"file {p} does not exist or is not a file")
    # Certificates are public; the private key is not.
    if key is not None and (problem := unprotected_key_file(key)) is not None:
        raise t.error("key", problem)
    _check_tls_files(t, ca, cert, key)
    tls = TlsSettings(ca=ca, cert=cert, key=key)
    t.done()
    return tls


def _check_tls_files(t: TomlTable, ca: Path | None, cert: Path | None, key: Path | None
                     ) -> None:
    """Load the TLS files now, so that a bad one stops the config, not the first connect."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    except ssl.SSLError as exc:  # pragma: no cover - the system store itself is broken
        raise t.error("ca", f"cannot create a TLS context: {exc}") from exc
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise t.error("ca", f"{ca} is not a usable PEM CA certificate ({_ssl_reason(exc)})"
                          ) from exc
    if cert is not None and key is not None:
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as exc:
            reason = _ssl_reason(exc)
            name = "key" if "KEY_VALUES_MISMATCH" in reason or "key" in reason.lower() else "cert"
            raise t.error(name, f"cannot use certificate {cert} with key {key} ({reason}): check"
                          " that both are PEM, the key is not encrypted, and they belong"
                          " together") from exc


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc)


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine: 'localhost' or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""A throwaway PKI for TLS tests: a CA, a broker certificate and a gateway client certificate.

Everything is generated with the ``cryptography`` package into a directory the test owns:
EC P-256 keys, certificates valid from a day ago to 30 days ahead, DNS names as DNSName SANs
and IP addresses as IPAddress SANs. Private keys are written with mode 0600, as the gateway
requires of its key files (it refuses one that group or others may read); so is a command
key written with :func:`write_key_file`.

Typical use::

    pki = make_pki(tmp_path)
    broker = Mosquitto(tmp_path / "broker", tls=pki.broker_tls())
    client.tls_set(ca_certs=pki.ca_cert, certfile=pki.client_cert, keyfile=pki.client_key)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hw_sim.broker import TlsListener

#: The CN of the client certificate: the gateway identity the broker sees.
CLIENT_CN = "gw-test"
#: What a default broker certificate names: dial either and hostname checks pass.
DEFAULT_SERVER_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key, both PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Paths of a test PKI: one CA, one broker (server) and one gateway (client) identity."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @property
    def ca(self) -> CertKey:
        """The CA as a :class:`CertKey`, to issue more certificates from it."""
        return CertKey(self.ca_cert, self.ca_key)

    def broker_tls(self, *, require_certificate: bool = True) -> TlsListener:
        """Return broker TLS settings that use this PKI's CA and server certificate."""
        return TlsListener(
            ca=self.ca_cert,
            cert=self.server_cert,
            key=self.server_key,
            require_certificate=require_certificate,
        )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_key_file(path: Path, data: bytes | str) -> Path:
    """Write a secret (a private key, the platform's command key) readable by its owner only.

    The mode is set on the file itself, not left to the umask: the gateway refuses a key file
    that group or others may read (``broker.tls.key``, ``commands.key_file``).
    """
    raw = data.encode("ascii") if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        f.write(raw)
    return path


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_key_file(path, pem)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(days=1), now + dt.timedelta(days=30)


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _load(ca: CertKey) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{ca.key}: expected an EC private key")
    return cert, key


def make_ca(dir: Path, common_name: str = "alarmgw unrelated test CA", stem: str = "ca") -> CertKey:
    """Create a self-signed CA in ``dir`` (``{stem}.crt``, ``{stem}.key``).

    Use it directly for an unrelated CA (a client that must not trust the broker, or a client
    certificate the broker must refuse); :func:`make_pki` uses it for its own CA.
    """
    dir.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    out = CertKey(dir / f"{stem}.crt", dir / f"{stem}.key")
    _write_cert(cert, out.cert)
    _write_key(key, out.key)
    return out


def _issue(
    ca: CertKey,
    dir: Path,
    *,
    stem: str,
    common_name: str,
    usage: x509.ObjectIdentifier,
    san: Sequence[str],
) -> CertKey:
    ca_cert, ca_key = _load(ca)
    dir.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    not_before, not_after = _validity()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if san:
        builder = builder.add_extension(_san(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    out = CertKey(dir / f"{stem}.crt", dir / f"{stem}.key")
    _write_cert(cert, out.cert)
    _write_key(key, out.key)
    return out


def make_client_cert(
    ca: CertKey, dir: Path, common_name: str = CLIENT_CN, stem: str = "client"
) -> CertKey:
    """Issue a client certificate (clientAuth EKU, CN ``common_name``) from ``ca`` into ``dir``."""
    return _issue(
        ca, dir, stem=stem, common_name=common_name, usage=ExtendedKeyUsageOID.CLIENT_AUTH, san=()
    )


def make_server_cert(pki: Pki, dir: Path, names: Sequence[str], stem: str = "server-alt") -> Pki:
    """Issue another broker certificate from ``pki``'s CA with the SANs ``names``.

    Returns a copy of ``pki`` whose ``server_cert``/``server_key`` are the new pair (written
    to ``dir/{stem}.crt`` and ``.key``); the CA and client identity are shared. Use it for the
    hostname-mismatch test: a broker whose certificate names only ``other.invalid``.
    """
    cn = names[0] if names else "broker"
    issued = _issue(
        pki.ca, dir, stem=stem, common_name=cn, usage=ExtendedKeyUsageOID.SERVER_AUTH, san=names
    )
    return replace(pki, server_cert=issued.cert, server_key=issued.key)


def make_pki(dir: Path, server_names: Sequence[str] = DEFAULT_SERVER_NAMES) -> Pki:
    """Create a CA, a broker certificate for ``server_names`` and a client certificate in ``dir``.

    Args:
        dir: where the PEM files go (created if missing).
        server_names: SANs of the broker certificate; IP addresses become IPAddress entries,
            everything else DNSName entries.
    """
    ca = make_ca(dir, common_name="alarmgw test CA")
    cn = server_names[0] if server_names else "broker"
    server = _issue(
        ca,
        dir,
        stem="server",
        common_name=cn,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=server_names,
    )
    client = make_client_cert(ca, dir)
    return Pki(
        ca_cert=ca.cert,
        ca_key=ca.key,
        server_cert=server.cert,
        server_key=server.key,
        client_cert=client.cert,
        client_key=client.key,
    )

"""A local CA and the broker's certificate, for the local Kafka's SASL_SSL listener.

Written once to ``$CALLVAULT_HOME/kafka/tls/`` (keys mode 0600) and shared by every local
stack instance (they all listen on the loopback address):

    ca.pem            the CA certificate: clients trust it (CALLVAULT_KAFKA_SSL_CAFILE)
    ca.key            the CA key (signs nothing else; kept to renew the broker certificate)
    broker-keystore.pem   the broker's PKCS#8 key, its certificate and the CA (Kafka's PEM keystore)

The broker certificate names 127.0.0.1 and localhost; it is renewed when it nears its end.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825
RENEW_BEFORE_DAYS = 30


@dataclass(frozen=True)
class LocalTls:
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def keystore(self) -> Path:
        return self.directory / "broker-keystore.pem"

    def ensure(self, host: str, now: dt.datetime | None = None) -> bool:
        """Create what is missing or about to expire; True when something was (re)written."""
        now = now or dt.datetime.now(dt.timezone.utc)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        wrote = False
        if not (self.ca_file.exists() and self.ca_key.exists()) or _expiring(self.ca_file, now):
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callvault local CA")])
            cert = (_builder(name, name, key.public_key(), now)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                 key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                 key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                 decipher_only=False), critical=True)
                    .sign(key, hashes.SHA256()))
            _write(self.ca_key, _pkcs8(key), 0o600)
            _write(self.ca_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
            self.keystore.unlink(missing_ok=True)  # signed by the old CA
            wrote = True
        if not self.keystore.exists() or _expiring(self.keystore, now):
            ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
            ca_cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callvault local kafka")])
            names = {host, "127.0.0.1", "localhost"}
            sans = [x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n) for n in sorted(names)]
            cert = (_builder(subject, ca_cert.subject, key.public_key(), now)
                    .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                    .sign(ca_key, hashes.SHA256()))
            _write(self.keystore, _pkcs8(key) + cert.public_bytes(serialization.Encoding.PEM)
                   + ca_cert.public_bytes(serialization.Encoding.PEM), 0o600)
            wrote = True
        return wrote


def _builder(subject: x509.Name, issuer: x509.Name, public_key, now: dt.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS)))


def _pkcs8(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _expiring(path: Path, now: dt.datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return True
    return cert.not_valid_after_utc - now < dt.timedelta(days=RENEW_BEFORE_DAYS)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)

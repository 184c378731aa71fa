"""Test certificates: a private CA and the leaf certificates the test servers present.

``make_test_certs(directory)`` writes PEM files and returns their paths:

* ``ca_pem``: the test root CA (trust anchor for verifying clients).
* ``rsa``: RSA-2048 leaf, valid for 90 more days, for ``localhost``, ``127.0.0.1``, ``::1``
  and ``mail.test``, issued by an intermediate CA (the chain is leaf + intermediate).
* ``ecdsa``: valid ECDSA P-256 leaf for the same names, same intermediate.
* ``expired``: RSA leaf for the same names whose notAfter lies in the past.
* ``selfsigned``: self-signed RSA-2048 certificate for ``other.example`` (no CA).

Every leaf comes as:

* ``combined``: private key, then leaf certificate, then intermediates: the layout
  Postfix's ``smtpd_tls_chain_files`` expects.
* ``cert``: leaf certificate followed by the intermediates (``ssl`` ``certfile``).
* ``leaf``: the leaf certificate alone (for serving an incomplete chain).
* ``key``: the private key (``ssl`` ``keyfile``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1", "mail.test")
"""Names (DNS and IP) in the subjectAltName of the CA-issued leaves."""

SELFSIGNED_NAME = "other.example"
"""The only name in the self-signed certificate."""

VALID_NOT_BEFORE_DAYS = 1
VALID_NOT_AFTER_DAYS = 90
"""The valid leaves (rsa, ecdsa) run from 1 day ago until 90 days from now."""

EXPIRED_NOT_BEFORE_DAYS = 60
EXPIRED_NOT_AFTER_DAYS = 30
"""The expired leaf was valid from 60 days ago until 30 days ago."""


@dataclass(frozen=True)
class CertFiles:
    """PEM files of one leaf certificate."""

    name: str
    combined: Path
    """Private key + leaf certificate + intermediates (Postfix ``smtpd_tls_chain_files``)."""
    cert: Path
    """Leaf certificate + intermediates."""
    leaf: Path
    """The leaf certificate alone."""
    key: Path
    """The private key (PKCS#8, unencrypted)."""
    not_before: dt.datetime
    not_after: dt.datetime

    def leaf_certificate(self) -> x509.Certificate:
        """The parsed leaf certificate."""
        return x509.load_pem_x509_certificate(self.leaf.read_bytes())


@dataclass(frozen=True)
class TestCerts:
    """All certificates written by :func:`make_test_certs`."""

    __test__ = False  # not a pytest test class

    ca_pem: Path
    """The test root CA certificate."""
    intermediate_pem: Path
    """The intermediate CA certificate that issued ``rsa``, ``ecdsa`` and ``expired``."""
    rsa: CertFiles
    ecdsa: CertFiles
    expired: CertFiles
    selfsigned: CertFiles

    def all(self) -> dict[str, CertFiles]:
        """Every leaf by its name."""
        return {c.name: c for c in (self.rsa, self.ecdsa, self.expired, self.selfsigned)}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _write_leaf(
    directory: Path,
    name: str,
    key_pem: bytes,
    chain_pems: list[bytes],
) -> CertFiles:
    """Write one leaf's files; ``chain_pems`` starts with the leaf itself."""
    leaf_pem = chain_pems[0]
    cert = x509.load_pem_x509_certificate(leaf_pem)
    return CertFiles(
        name=name,
        combined=_write(directory / f"{name}.combined.pem", key_pem + b"".join(chain_pems), 0o600),
        cert=_write(directory / f"{name}.cert.pem", b"".join(chain_pems)),
        leaf=_write(directory / f"{name}.leaf.pem", leaf_pem),
        key=_write(directory / f"{name}.key.pem", key_pem, 0o600),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _issue(
    directory: Path,
    ca: trustme.CA,
    name: str,
    key_type: trustme.KeyType,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CertFiles:
    leaf = ca.issue_cert(
        *SERVER_NAMES,
        common_name=SERVER_NAMES[0],
        organization_name="smtp-tls-exporter tests",
        not_before=not_before,
        not_after=not_after,
        key_type=key_type,
    )
    return _write_leaf(
        directory,
        name,
        leaf.private_key_pem.bytes(),
        [blob.bytes() for blob in leaf.cert_chain_pems],
    )


def _self_signed(directory: Path, name: str, hostname: str) -> CertFiles:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smtp-tls-exporter tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, hostname),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _write_leaf(directory, name, key_pem, [cert.public_bytes(serialization.Encoding.PEM)])


def der_chain(leaf: trustme.LeafCert) -> tuple[bytes, ...]:
    """A trustme leaf and its issuers in DER, leaf first, as a server's Certificate message
    carries them (for tests that hand the probe a chain without a server)."""
    return tuple(
        x509.load_pem_x509_certificate(pem.bytes()).public_bytes(serialization.Encoding.DER)
        for pem in leaf.cert_chain_pems
    )


def make_test_certs(directory: Path) -> TestCerts:
    """Create a fresh test CA and all leaf certificates as PEM files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    root = trustme.CA(organization_name="smtp-tls-exporter test CA", key_type=trustme.KeyType.RSA)
    intermediate = root.create_child_ca(key_type=trustme.KeyType.RSA)
    now = _now()
    valid = {
        "not_before": now - dt.timedelta(days=VALID_NOT_BEFORE_DAYS),
        "not_after": now + dt.timedelta(days=VALID_NOT_AFTER_DAYS),
    }
    rsa_files = _issue(directory, intermediate, "rsa", trustme.KeyType.RSA, **valid)
    ecdsa_files = _issue(directory, intermediate, "ecdsa", trustme.KeyType.ECDSA, **valid)
    expired_files = _issue(
        directory,
        intermediate,
        "expired",
        trustme.KeyType.RSA,
        not_before=now - dt.timedelta(days=EXPIRED_NOT_BEFORE_DAYS),
        not_after=now - dt.timedelta(days=EXPIRED_NOT_AFTER_DAYS),
    )
    return TestCerts(
        ca_pem=_write(directory / "ca.pem", root.cert_pem.bytes()),
        intermediate_pem=_write(directory / "intermediate.pem", intermediate.cert_pem.bytes()),
        rsa=rsa_files,
        ecdsa=ecdsa_files,
        expired=expired_files,
        selfsigned=_self_signed(directory, "selfsigned", SELFSIGNED_NAME),
    )

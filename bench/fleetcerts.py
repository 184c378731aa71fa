"""The fleet's certificates: a root and an intermediate (RSA), and one leaf per target.

Every target presents a leaf of its own (subject `mx<N>.bench.test`, names `mail.test` and
`localhost` too, all leaves sharing one ECDSA key so that making ten thousand takes seconds,
not minutes), so the exporter parses and verifies as many distinct chains as there are
targets, as it does for servers that each have their own certificate. With `shared`, every
target presents the first leaf: the best case for any cache keyed by the chain.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bench.fleet import SERVERNAME

_ORG: Final = "smtp-tls-exporter bench"
_DER: Final = serialization.Encoding.DER
_PEM: Final = serialization.Encoding.PEM


@dataclass(frozen=True)
class FleetCerts:
    """Where the fleet's certificates are."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The root, PEM: the trust anchor for the exporter's `ca_file`."""
        return self.directory / "ca.pem"

    @property
    def chain(self) -> Path:
        """The first leaf and the intermediate, PEM (the responder's real handshakes)."""
        return self.directory / "chain.pem"

    @property
    def key(self) -> Path:
        """The leaves' key, PEM."""
        return self.directory / "key.pem"

    @property
    def intermediate(self) -> Path:
        return self.directory / "intermediate.der"

    @property
    def leaves(self) -> Path:
        """Every leaf, DER, each behind its 4-byte length."""
        return self.directory / "leaves.bin"

    def exists(self) -> bool:
        paths = (self.ca, self.chain, self.key, self.intermediate, self.leaves)
        return all(p.exists() for p in paths)

    def load(self) -> tuple[list[bytes], bytes]:
        """The leaves and the intermediate, DER."""
        data = self.leaves.read_bytes()
        leaves, pos = [], 0
        while pos < len(data):
            (size,) = struct.unpack("!I", data[pos : pos + 4])
            leaves.append(data[pos + 4 : pos + 4 + size])
            pos += 4 + size
        return leaves, self.intermediate.read_bytes()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    now: dt.datetime,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _leaves(
    count: int,
    issuer: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> Iterable[bytes]:
    public = key.public_key()
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    common = (
        x509.CertificateBuilder()
        .issuer_name(issuer.subject)
        .public_key(public)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(authority, critical=False)
    )
    for index in range(count):
        own = f"mx{index}.bench.test"
        names = [x509.DNSName(n) for n in (own, SERVERNAME, "localhost")]
        cert = (
            common.subject_name(_name(own))
            .serial_number(x509.random_serial_number())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(issuer_key, hashes.SHA256())
        )
        yield cert.public_bytes(_DER)


def make_fleet_certs(directory: Path, count: int) -> FleetCerts:
    """Write a root, an intermediate and `count` leaves (at least one) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    certs = FleetCerts(directory)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root_name = _name("bench root CA")
    root = _ca(root_name, root_key, None, now)
    middle_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    middle = _ca(_name("bench intermediate CA"), middle_key, (root_name, root_key), now)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaves = list(_leaves(max(1, count), middle, middle_key, leaf_key, now))
    certs.ca.write_bytes(root.public_bytes(_PEM))
    certs.intermediate.write_bytes(middle.public_bytes(_DER))
    first = x509.load_der_x509_certificate(leaves[0])
    certs.chain.write_bytes(first.public_bytes(_PEM) + middle.public_bytes(_PEM))
    certs.key.write_bytes(
        leaf_key.private_bytes(
            _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    certs.key.chmod(0o600)
    certs.leaves.write_bytes(b"".join(struct.pack("!I", len(d)) + d for d in leaves))
    return certs

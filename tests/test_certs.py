"""Certificate facts and verification reasons, on chains built here for each case."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exporter.probe import certs
from exporter.results import CertificateInfo, VerifyError
from tests.support.mutate import Node, parse_der

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
Key = ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make(
    subject: str,
    issuer: str,
    key: Key,
    signer: Key,
    *,
    ca: bool,
    days: tuple[int, int] = (-30, 300),
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + days[0] * DAY)
        .not_valid_after(NOW + days[1] * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    usage = (True, False, False, False, False, ca, ca, False, False)
    builder = builder.add_extension(x509.KeyUsage(*usage), critical=True)
    if not ca:
        eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        builder = builder.add_extension(eku, critical=False)
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


ROOT_KEY, INTER_KEY, LEAF_KEY, OLD_ROOT_KEY = (new_key() for _ in range(4))
ROOT = make("Root", "Root", ROOT_KEY, ROOT_KEY, ca=True, days=(-900, 3000))
INTER = make("Inter", "Root", INTER_KEY, ROOT_KEY, ca=True)
LEAF = make("mail.test", "Inter", LEAF_KEY, INTER_KEY, ca=False, sans=[x509.DNSName("mail.test")])
TRUST = certs.TrustStore([ROOT], "test")


def analyze(chain: list[x509.Certificate], name: str = "mail.test") -> CertificateInfo:
    info = certs.analyze([der(c) for c in chain], name, TRUST)
    assert info is not None
    return info


def test_good_chain_and_its_facts() -> None:
    info = analyze([LEAF, INTER])
    assert info.verified
    assert info.verify_error is None
    assert info.subject == "CN=mail.test"
    assert info.issuer == "CN=Inter"
    assert info.sans == ("mail.test",)
    assert (info.key_type, info.key_bits) == ("EC", 256)
    assert info.signature_algorithm == "ecdsa-with-SHA256"
    assert len(info.chain) == 2
    assert info.chain_not_after == min(LEAF.not_valid_after_utc, INTER.not_valid_after_utc)


@pytest.mark.parametrize(
    ("chain", "name", "error"),
    [
        ([LEAF], "mail.test", VerifyError.INCOMPLETE_CHAIN),
        ([LEAF, INTER], "other.test", VerifyError.HOSTNAME_MISMATCH),
        (
            [make("mail.test", "Inter", LEAF_KEY, INTER_KEY, ca=False, days=(-60, -1),
                  sans=[x509.DNSName("mail.test")]), INTER],
            "mail.test",
            VerifyError.EXPIRED,
        ),
        (
            [make("mail.test", "Inter", LEAF_KEY, INTER_KEY, ca=False, days=(5, 60),
                  sans=[x509.DNSName("mail.test")]), INTER],
            "mail.test",
            VerifyError.NOT_YET_VALID,
        ),
        (
            [make("mail.test", "mail.test", LEAF_KEY, LEAF_KEY, ca=False,
                  sans=[x509.DNSName("mail.test")])],
            "mail.test",
            VerifyError.SELF_SIGNED,
        ),
        ([make("mail.test", "Inter", LEAF_KEY, INTER_KEY, ca=False), INTER], "mail.test",
         VerifyError.INVALID),
    ],
    ids=["leaf-only", "mismatch", "expired", "not-yet-valid", "self-signed", "no-san"],
)  # fmt: skip
def test_reasons(chain: list[x509.Certificate], name: str, error: VerifyError) -> None:
    info = analyze(chain, name)
    assert info.verify_error is error, info.verify_detail
    assert not info.verified


def test_private_ca_that_sends_its_intermediate_is_untrusted_not_incomplete() -> None:
    other = certs.TrustStore([make("Other", "Other", OLD_ROOT_KEY, OLD_ROOT_KEY, ca=True)], "o")
    info = certs.analyze([der(LEAF), der(INTER)], "mail.test", other)
    assert info is not None
    assert info.verify_error is VerifyError.UNTRUSTED


def test_unneeded_expired_cross_sign_still_verifies() -> None:
    """Like Let's Encrypt's long chain: an expired cross-signed root the path does not need."""
    cross = make("Root", "Old Root", ROOT_KEY, OLD_ROOT_KEY, ca=True, days=(-900, -10))
    info = analyze([LEAF, INTER, cross])
    assert info.verified, info.verify_detail


def test_wildcards_and_ip_names() -> None:
    wild = make("w", "Inter", LEAF_KEY, INTER_KEY, ca=False, sans=[x509.DNSName("*.example.org")])
    assert analyze([wild, INTER], "mx.example.org").verified
    assert analyze([wild, INTER], "a.b.example.org").verify_error is VerifyError.HOSTNAME_MISMATCH
    ip = x509.IPAddress(ipaddress.ip_address("192.0.2.7"))
    by_ip = make("ip", "Inter", LEAF_KEY, INTER_KEY, ca=False, sans=[ip])
    assert analyze([by_ip, INTER], "192.0.2.7").verified
    assert analyze([by_ip, INTER], "192.0.2.8").verify_error is VerifyError.HOSTNAME_MISMATCH


def test_look_alike_intermediates_cannot_stall_verification() -> None:
    """Many self-issued CAs with one subject and key made path building exponential."""
    loops = [make("Inter", "Inter", INTER_KEY, INTER_KEY, ca=True) for _ in range(12)]
    start = time.monotonic()
    info = analyze([LEAF, *loops, INTER])
    assert time.monotonic() - start < 2
    assert info.verify_error is not None or info.verified
    assert len(info.chain) <= 16


def test_unparseable_leaf_raises_value_error() -> None:
    with pytest.raises(ValueError, match="could not be parsed"):
        certs.analyze([b"not a certificate"], "mail.test", TRUST)


#: The places of the names in a v3 TBSCertificate (after version, serial, signature).
ISSUER, SUBJECT = 3, 5


def with_empty_name(cert: x509.Certificate, field: int) -> bytes:
    """`cert` with one of its names holding an empty RDN: it loads, but the name does not
    decode (cryptography reads names when they are first asked for)."""
    tree = parse_der(der(cert))
    assert tree.children is not None
    tbs = tree.children[0]
    assert tbs.children is not None
    tbs.children[field].children = [Node(0x31, children=[])]
    return tree.encode()


def test_a_leaf_whose_issuer_does_not_decode_still_gives_its_facts() -> None:
    info = certs.analyze([with_empty_name(LEAF, ISSUER), der(INTER)], "mail.test", TRUST)
    assert info is not None
    assert info.issuer == "<unreadable>"
    assert info.chain[0].issuer == "<unreadable>"
    assert info.subject == "CN=mail.test"
    assert info.not_after == LEAF.not_valid_after_utc
    assert not info.verified


def test_an_intermediate_whose_name_does_not_decode_costs_only_itself() -> None:
    for field in (ISSUER, SUBJECT):
        info = certs.analyze([der(LEAF), with_empty_name(INTER, field)], "mail.test", TRUST)
        assert info is not None
        assert info.subject == "CN=mail.test"
        assert info.sans == ("mail.test",)
        assert "<unreadable>" in (info.chain[1].subject, info.chain[1].issuer)
        assert not info.verified
        assert info.verify_error is not VerifyError.INVALID, info.verify_detail


def with_version(cert: x509.Certificate, version: int) -> bytes:
    """`cert` claiming another X.509 version (1 is v2, which cryptography refuses to load)."""
    tree = parse_der(der(cert))
    assert tree.children is not None
    tbs = tree.children[0]
    assert tbs.children is not None
    tbs.children[0] = Node(0xA0, children=[Node(0x02, bytes([version]))])
    return tree.encode()


def test_a_leaf_of_an_unknown_version_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="could not be parsed"):
        certs.analyze([with_version(LEAF, 1), der(INTER)], "mail.test", TRUST)


def test_an_intermediate_of_an_unknown_version_ends_the_chain_there() -> None:
    info = certs.analyze([der(LEAF), with_version(INTER, 1)], "mail.test", TRUST)
    assert info is not None
    assert len(info.chain) == 1
    assert info.verify_error is VerifyError.INCOMPLETE_CHAIN


def test_an_analysis_is_reused_while_its_dates_hold() -> None:
    """A chain many hosts present is analysed once; a new answer once a date is crossed."""
    trust = certs.TrustStore([ROOT], "reuse")
    chain = [der(LEAF), der(INTER)]
    first = certs.analyze(chain, "mail.test", trust, now=NOW)
    assert first is not None
    assert first.verified
    assert certs.analyze(chain, "mail.test", trust, now=NOW + DAY / 48) is first
    other_name = certs.analyze(chain, "other.test", trust, now=NOW)
    assert other_name is not None
    assert other_name.verify_error is VerifyError.HOSTNAME_MISMATCH
    # Past the hour an analysis is kept at most, and past the leaf's end: judged again.
    later = certs.analyze(chain, "mail.test", trust, now=NOW + 2 * DAY)
    assert later is not first
    assert later == first
    expired = certs.analyze(chain, "mail.test", trust, now=NOW + 301 * DAY)
    assert expired is not None
    assert expired.verify_error is VerifyError.EXPIRED


def test_another_trust_store_judges_afresh() -> None:
    chain = [der(LEAF), der(INTER)]
    trusted = certs.analyze(chain, "mail.test", certs.TrustStore([ROOT], "with root"))
    untrusted = certs.analyze(chain, "mail.test", certs.TrustStore([], "empty"))
    assert trusted is not None
    assert trusted.verified
    assert untrusted is not None
    assert not untrusted.verified

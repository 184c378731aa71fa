"""DANE for SMTP: TLSA records against presented chains, cross-checked with OpenSSL's own
DANE code (`openssl s_client -dane_tlsa_rrdata`) on a real TLS server."""

from __future__ import annotations

import hashlib
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exporter.dane import Tlsa, check
from tests.support.certs import TestCerts, make_test_certs
from tests.support.inproc import Behaviour, InprocServer, tls_context
from tests.support.tools import require_tool


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


def chain_of(certs: TestCerts) -> tuple[bytes, ...]:
    intermediate = x509.load_pem_x509_certificate(certs.intermediate_pem.read_bytes())
    return (
        certs.rsa.leaf_certificate().public_bytes(Encoding.DER),
        intermediate.public_bytes(Encoding.DER),
    )


def spki(der: bytes) -> bytes:
    cert = x509.load_der_x509_certificate(der)
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def record(usage: int, selector: int, matching: int, der: bytes) -> Tlsa:
    data = der if selector == 0 else spki(der)
    if matching == 1:
        data = hashlib.sha256(data).digest()
    elif matching == 2:
        data = hashlib.sha512(data).digest()
    return Tlsa(usage, selector, matching, data)


NAMES = ("mail.test",)


@pytest.mark.parametrize(("selector", "matching"), [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)])
def test_dane_ee_matches_the_leaf_whatever_its_names(
    certs: TestCerts, selector: int, matching: int
) -> None:
    leaf, _ = chain_of(certs)
    result = check(chain_of(certs), [record(3, selector, matching, leaf)], ("other.example",))
    assert result.matched, result.detail
    assert result.usable == 1
    assert not result.rollover_ready  # one key, no second record: a rollover breaks it


def test_dane_ta_matches_the_issuer_and_needs_the_name(certs: TestCerts) -> None:
    _, issuer = chain_of(certs)
    ta = record(2, 1, 1, issuer)
    good = check(chain_of(certs), [ta], NAMES)
    assert good.matched, good.detail
    assert good.rollover_ready  # the issuer's record survives a new leaf key
    wrong_name = check(chain_of(certs), [ta], ("mx.elsewhere.example",))
    assert not wrong_name.matched
    assert "does not name mx.elsewhere.example" in wrong_name.detail


def test_a_second_dane_ee_record_makes_a_rollover_safe(certs: TestCerts) -> None:
    leaf, _ = chain_of(certs)
    other = certs.ecdsa.leaf_certificate().public_bytes(Encoding.DER)
    result = check(chain_of(certs), [record(3, 1, 1, leaf), record(3, 1, 1, other)], NAMES)
    assert result.matched
    assert result.rollover_ready
    assert result.matching == (record(3, 1, 1, leaf).text(),)


def test_mismatch_and_unusable_records(certs: TestCerts) -> None:
    other = certs.ecdsa.leaf_certificate().public_bytes(Encoding.DER)
    miss = check(chain_of(certs), [record(3, 1, 1, other)], NAMES)
    assert not miss.matched
    assert miss.detail == "none of 1 usable records matches the chain"
    leaf, _ = chain_of(certs)
    pkix = check(chain_of(certs), [record(1, 1, 1, leaf), record(0, 0, 1, leaf)], NAMES)
    assert not pkix.matched
    assert pkix.usable == 0
    assert "no usable TLSA record" in pkix.detail
    assert not check((), [record(3, 1, 1, leaf)], NAMES).matched
    assert not check((b"not a certificate",), [record(3, 1, 1, leaf)], NAMES).matched


def openssl_dane(port: int, tlsa: Tlsa, ca_file: Path) -> bool:
    """OpenSSL's verdict on one TLSA record against the server on `port`."""
    done = subprocess.run(
        [shutil.which("openssl") or "openssl", "s_client", "-connect", f"127.0.0.1:{port}",
         "-servername", "mail.test", "-dane_tlsa_domain", "mail.test",
         "-dane_tlsa_rrdata", tlsa.text(), "-CAfile", str(ca_file), "-verify_return_error",
         "-brief"],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return "Verification: OK" in done.stdout + done.stderr and done.returncode == 0


def test_verdicts_agree_with_openssl_on_a_real_server(certs: TestCerts) -> None:
    require_tool("openssl")
    context = tls_context(str(certs.rsa.cert), str(certs.rsa.key), ssl.TLSVersion.TLSv1_2)
    leaf, issuer = chain_of(certs)
    other = certs.ecdsa.leaf_certificate().public_bytes(Encoding.DER)
    cases = [record(3, 1, 1, leaf), record(3, 0, 2, leaf), record(2, 1, 1, issuer),
             record(2, 0, 1, issuer), record(3, 1, 1, other), record(2, 1, 1, other)]  # fmt: skip
    with InprocServer(Behaviour(context=context, implicit=True)) as server:
        for tlsa in cases:
            ours = check(chain_of(certs), [tlsa], NAMES).matched
            assert ours == openssl_dane(server.port, tlsa, certs.ca_pem), tlsa.text()

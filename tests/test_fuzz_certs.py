"""Certificates as a hostile server sends them: `certs.analyze` on mutated DER.

The verdict turns any exception of `analyze` into a failed certificate (`verdict._certificate`
catches Exception), so what must never happen is an exception outside that (a Rust panic is
a BaseException), an answer that takes long, or facts that break the result types. The
documented failure, an unparsable leaf, is a ValueError.
"""

from __future__ import annotations

import datetime as dt
import time
from functools import cache

import trustme
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.probe import certs
from exporter.results import CertificateInfo
from tests.support.certs import der_chain
from tests.support.mutate import der_mutated, mutated

#: The longest one analysis may take, far above the milliseconds it needs.
SLOW: float = 5.0

NAMES = st.sampled_from(
    ["localhost", "mail.test", "127.0.0.1", "::1", "[::1]", "", ".", "*.test", "é.test", "a" * 300]
)
NOW = dt.datetime.now(dt.UTC)
MOMENTS = st.sampled_from(
    [NOW, NOW - dt.timedelta(days=3650), NOW + dt.timedelta(days=3650)]
) | st.datetimes(
    min_value=dt.datetime(1950, 1, 1),
    max_value=dt.datetime(2200, 1, 1),
    timezones=st.just(dt.UTC),
)


@cache
def _chains() -> dict[str, tuple[bytes, ...]]:
    """A CA with an intermediate, and leaves of each key type, as servers send them."""
    root = trustme.CA(key_type=trustme.KeyType.ECDSA)
    middle = root.create_child_ca(key_type=trustme.KeyType.ECDSA)
    rsa = middle.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA)
    ecdsa = middle.issue_cert("mail.test", "*.test", key_type=trustme.KeyType.ECDSA)
    return {
        "rsa": der_chain(rsa),
        "ecdsa": der_chain(ecdsa),
        "root": (root.cert_pem.bytes(),),  # PEM: the trust anchor, not a chain
    }


@cache
def _trust() -> certs.TrustStore:
    anchor = x509.load_pem_x509_certificate(_chains()["root"][0])
    return certs.TrustStore([anchor], "fuzz root")


def _fresh_trust() -> certs.TrustStore:
    """The same anchor with no analyses kept, so every example is analysed anew."""
    trust = _trust()
    fresh = certs.TrustStore([], trust.source)
    fresh.store, fresh.subjects = trust.store, trust.subjects
    return fresh


def _analyze_or_value_error(
    chain: tuple[bytes, ...], name: str, now: dt.datetime
) -> CertificateInfo | None:
    started = time.monotonic()
    try:
        info = certs.analyze(chain, name, _fresh_trust(), now)
    except ValueError:
        info = None
    elapsed = time.monotonic() - started
    assert elapsed < SLOW, f"analysis took {elapsed:.1f}s"
    if info is not None:
        _facts_are_sound(info, chain)
    return info


def _facts_are_sound(info: CertificateInfo, chain: tuple[bytes, ...]) -> None:
    assert info.verified == (info.verify_error is None)
    assert len(info.verify_detail) <= 512
    assert 1 <= len(info.chain) <= len(chain)
    assert info.fingerprint_sha256 == certs.fingerprint(chain[0])
    assert all(isinstance(san, str) for san in info.sans)
    assert info.key_bits >= 0
    assert info.not_before.tzinfo is not None
    assert info.not_after.tzinfo is not None


chain_kinds = st.sampled_from(["rsa", "ecdsa"])


@st.composite
def mutated_chains(draw: st.DrawFn) -> tuple[bytes, ...]:
    """A real chain with one certificate changed inside its structure."""
    chain = list(_chains()[draw(chain_kinds)])
    which = draw(st.integers(0, len(chain) - 1))
    chain[which] = draw(der_mutated(chain[which]))
    if draw(st.booleans()):
        chain = chain[: draw(st.integers(1, len(chain)))]
    return tuple(chain)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_chains(), NAMES, MOMENTS)
def test_structurally_mutated_chains_give_facts_or_value_error(
    chain: tuple[bytes, ...], name: str, now: dt.datetime
) -> None:
    _analyze_or_value_error(chain, name, now)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), chain_kinds, NAMES)
def test_byte_mutated_leaves_give_facts_or_value_error(
    data: st.DataObject, kind: str, name: str
) -> None:
    chain = _chains()[kind]
    leaf = data.draw(mutated(chain[0], max_edits=3))
    _analyze_or_value_error((leaf, *chain[1:]), name, NOW)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=20), NAMES)
def test_garbage_chains_are_a_value_error(chain: list[bytes], name: str) -> None:
    assert _analyze_or_value_error(tuple(chain), name, NOW) is None


def test_unmutated_chains_verify() -> None:
    for kind, name in (("rsa", "localhost"), ("ecdsa", "mail.test")):
        info = _analyze_or_value_error(_chains()[kind], name, NOW)
        assert info is not None
        assert info.verified, info.verify_detail


def test_a_long_chain_of_copies_stays_quick() -> None:
    """A server may send hundreds of certificates; only the first few are looked at."""
    leaf, middle = _chains()["rsa"]
    chain = (leaf, *[middle] * 200, *_chains()["ecdsa"])
    started = time.monotonic()
    info = certs.analyze(chain, "localhost", _fresh_trust(), NOW)
    assert time.monotonic() - started < SLOW
    assert info is not None
    assert info.verified, info.verify_detail
    assert len(info.chain) <= 16

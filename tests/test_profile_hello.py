"""A sender's ClientHello, byte for byte and as OpenSSL reads it, and the judgement of the
server's answer to it: compatible, incompatible (and why), or unknown."""

from __future__ import annotations

import dataclasses
import ssl
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.probe import suites
from exporter.probe.hello import (
    HELLO_RETRY_REQUEST_RANDOM,
    Compatibility,
    HelloParseError,
    Mismatch,
    ProfileJudgement,
    judge_profile,
    parse_profile_flight,
    profile_client_hello,
)
from exporter.senders import (
    BUILTIN_PROFILES,
    EXCHANGE_2016,
    EXCHANGE_ONLINE,
    EXIM_GNUTLS,
    GMAIL,
    POSTFIX,
    SenderProfile,
)
from exporter.target import TLSVersion
from tests.support import tlsbytes
from tests.support.certs import TestCerts, make_test_certs
from tests.support.senders import ServerTLS, answer, hello_fields

PROFILES = list(BUILTIN_PROFILES.values())
IDS = list(BUILTIN_PROFILES)
V = ssl.TLSVersion


# --- the hello ------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_the_hello_offers_exactly_the_profile(profile: SenderProfile) -> None:
    fields = hello_fields(profile_client_hello(profile, "mx.example.org"))
    tls13 = profile.max_version is TLSVersion.TLS1_3
    assert fields.record_version == 0x0301
    assert fields.legacy_version == min(profile.max_version.wire, 0x0303)
    assert len(fields.session_id) == (32 if tls13 else 0)
    assert fields.suites == profile.suites  # in order, and no signalling suite
    assert fields.groups == profile.groups
    assert fields.signature_algorithms == profile.signature_algorithms
    assert (fields.server_name == "mx.example.org") == profile.sni
    assert (0 in fields.extensions) == profile.sni
    assert 0xFF01 in fields.extensions  # secure renegotiation, as the extension
    if tls13:
        assert fields.versions == tuple(v.wire for v in profile.versions)
        assert list(fields.key_shares) == [profile.groups[0]]
        assert fields.extensions[45] == b"\x01\x01"
    else:
        assert 43 not in fields.extensions
        assert 51 not in fields.extensions


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
@pytest.mark.parametrize("servername", ["", "a.example", "x" * 60 + ".example.org"])
def test_hello_length_avoids_the_f5_range(profile: SenderProfile, servername: str) -> None:
    record = profile_client_hello(profile, servername)
    hello_fields(record)
    assert not 256 <= len(record) - 5 < 512


def test_no_sni_for_ip_literals() -> None:
    assert 0 not in hello_fields(profile_client_hello(GMAIL, "192.0.2.1")).extensions


@pytest.mark.parametrize(
    ("group", "curve"),
    [(0x0017, ec.SECP256R1()), (0x0018, ec.SECP384R1()), (0x0019, ec.SECP521R1())],
)
def test_nist_key_shares_are_points_on_their_curves(group: int, curve: ec.EllipticCurve) -> None:
    profile = dataclasses.replace(GMAIL, groups=(group,))
    share = hello_fields(profile_client_hello(profile)).key_shares[group]
    ec.EllipticCurvePublicKey.from_encoded_point(curve, share)  # raises when off the curve


@pytest.mark.parametrize(("group", "size"), [(0x001D, 32), (0x001E, 56)])
def test_montgomery_key_shares_are_fresh_bytes(group: int, size: int) -> None:
    profile = dataclasses.replace(GMAIL, groups=(group,))
    first = hello_fields(profile_client_hello(profile)).key_shares[group]
    second = hello_fields(profile_client_hello(profile)).key_shares[group]
    assert len(first) == len(second) == size
    assert first != second


def test_no_share_for_groups_the_probe_cannot_make_one_for() -> None:
    profile = dataclasses.replace(GMAIL, groups=(0x11EC, 0x0100, 0x001D))
    assert list(hello_fields(profile_client_hello(profile)).key_shares) == [0x001D]
    only_ffdhe = dataclasses.replace(GMAIL, groups=(0x0100,))
    assert hello_fields(profile_client_hello(only_ffdhe)).key_shares == {}


def test_tls13_only_and_tls12_only_hellos() -> None:
    tls13 = dataclasses.replace(GMAIL, min_version=TLSVersion.TLS1_3, suites=(0x1301,))
    fields = hello_fields(profile_client_hello(tls13))
    assert fields.versions == (0x0304,)
    assert 0xFF01 not in fields.extensions
    assert 11 not in fields.extensions  # no EC point formats without TLS 1.2
    tls10 = dataclasses.replace(EXCHANGE_2016, max_version=TLSVersion.TLS1_0)
    fields = hello_fields(profile_client_hello(tls10))
    assert fields.legacy_version == 0x0301
    assert 13 not in fields.extensions  # no signature_algorithms below TLS 1.2


# --- OpenSSL reads it ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def dh_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dh")


@dataclasses.dataclass(frozen=True)
class Servers:
    """Makes OpenSSL server contexts with the test certificates and DH groups."""

    certs: TestCerts
    dh_dir: Path

    def __call__(
        self,
        ciphers: str = "ALL",
        low: ssl.TLSVersion = V.TLSv1,
        high: ssl.TLSVersion = V.TLSv1_3,
        curve: str | None = None,
        which: str = "rsa",
        dh_group: str = "ffdhe2048",
    ) -> ssl.SSLContext:
        tls = ServerTLS(ciphers, low, high, curve, which, dh_group)
        return tls.context(self.certs, self.dh_dir)


@pytest.fixture(scope="module")
def server(certs: TestCerts, dh_dir: Path) -> Servers:
    return Servers(certs, dh_dir)


def judged(profile: SenderProfile, context: ssl.SSLContext) -> ProfileJudgement:
    """OpenSSL's answer to the profile's hello, judged."""
    flight = parse_profile_flight(answer(context, profile_client_hello(profile, "mail.test")))
    assert flight.complete
    return judge_profile(profile, flight)


def _openssl_has(name: str | None) -> bool:
    if name is None:
        return False
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(f"{name}:@SECLEVEL=0")
    except ssl.SSLError:
        return False  # compiled out (3DES, RC4 on Debian 12)
    return True


def _server_suites(profile: SenderProfile) -> list[tuple[SenderProfile, int]]:
    """(profile, suite) for each suite before TLS 1.3 an RSA or ECDSA server here can take."""
    return [
        (profile, code)
        for code in profile.suites
        if not suites.is_tls13(code)
        and not (suites.key_exchange(code) or "").endswith(("DSS", "anon"))
        and _openssl_has(suites.openssl_name(code))
    ]


SUITE_CASES = [case for profile in PROFILES for case in _server_suites(profile)]


@pytest.mark.parametrize(
    ("profile", "suite"),
    SUITE_CASES,
    ids=[f"{p.name}-{suites.openssl_name(c)}" for p, c in SUITE_CASES],
)
def test_openssl_finds_every_suite_of_the_hello(
    server: Servers, profile: SenderProfile, suite: int
) -> None:
    """A server that takes only that suite (TLS 1.2 at most) chooses it from the hello."""
    name = suites.openssl_name(suite)
    assert name is not None
    which = "ecdsa" if "ECDSA" in suites.suite_name(suite) else "rsa"
    result = judged(profile, server(name, high=V.TLSv1_2, which=which))
    assert result.suite == suite, result
    assert result.compatibility is Compatibility.COMPATIBLE, result


@pytest.mark.parametrize("profile", [p for p in PROFILES if p.max_version is TLSVersion.TLS1_3])
def test_openssl_speaks_tls13_with_the_hello(server: Servers, profile: SenderProfile) -> None:
    result = judged(profile, server(low=V.TLSv1_3))
    assert result.compatibility is Compatibility.COMPATIBLE, result
    assert result.version == 0x0304
    assert result.suite in profile.suites
    assert result.group == profile.groups[0]  # the share sent: no retry needed


CURVES = {
    0x0017: "prime256v1",
    0x0018: "secp384r1",
    0x0019: "secp521r1",
    0x001D: "X25519",
    0x001E: "X448",
}


def _tops(profile: SenderProfile) -> list[ssl.TLSVersion]:
    return [V.TLSv1_2] + ([V.TLSv1_3] if profile.max_version is TLSVersion.TLS1_3 else [])


GROUP_CASES = [(p, g, top) for p in PROFILES for g in p.groups if g in CURVES for top in _tops(p)]


@pytest.mark.parametrize(
    ("profile", "group", "high"),
    GROUP_CASES,
    ids=[f"{p.name}-{CURVES[g]}-{h.name}" for p, g, h in GROUP_CASES],
)
def test_openssl_finds_every_group_of_the_hello(
    server: Servers, profile: SenderProfile, group: int, high: ssl.TLSVersion
) -> None:
    """A server with only that curve takes it: from the ServerKeyExchange of ECDHE in TLS
    1.2, from the key share in TLS 1.3 (with a HelloRetryRequest when the hello's one
    share is for another group)."""
    ecdhe = "ECDHE+AESGCM:ECDHE+AES"
    result = judged(profile, server(ecdhe, low=high, high=high, curve=CURVES[group]))
    assert result.compatibility is Compatibility.COMPATIBLE, result
    assert result.group == group
    retry = high is V.TLSv1_3 and group != profile.groups[0]
    assert ("HelloRetryRequest" in result.detail) == retry


def test_a_hello_retry_request_for_an_ffdhe_group(server: Servers) -> None:
    """No share the probe can make: the server names its group, which the sender offers."""
    profile = dataclasses.replace(EXIM_GNUTLS, groups=(0x0100, 0x0101))
    result = judged(profile, server(low=V.TLSv1_3))
    assert result.compatibility is Compatibility.COMPATIBLE, result
    assert result.group == 0x0100
    assert "HelloRetryRequest" in result.detail


def test_static_rsa_only_server_and_exchange_online(server: Servers) -> None:
    """TLS 1.2 with static RSA only: Exchange Online still has AES-GCM with RSA."""
    result = judged(EXCHANGE_ONLINE, server("AES256-GCM-SHA384", high=V.TLSv1_2))
    assert result.compatibility is Compatibility.COMPATIBLE
    cbc_only = server("AES128-SHA:AES256-SHA256", high=V.TLSv1_2)
    result = judged(EXCHANGE_ONLINE, cbc_only)
    assert result.compatibility is Compatibility.INCOMPATIBLE
    assert result.mismatch is Mismatch.ALERT
    assert result.detail == "alert handshake_failure"


def test_ecdhe_rsa_gcm_only_fails_exchange_2016(server: Servers) -> None:
    modern = server("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")
    assert judged(EXCHANGE_2016, modern).compatibility is Compatibility.INCOMPATIBLE
    assert judged(EXCHANGE_ONLINE, modern).compatibility is Compatibility.COMPATIBLE
    assert judged(POSTFIX, modern).compatibility is Compatibility.COMPATIBLE


def test_tls10_ecdhe_fails_postfix_but_not_gmail(server: Servers) -> None:
    """OpenSSL 3 at security level 2 refuses the MD5+SHA-1 signature of a TLS 1.0 ECDHE key
    exchange; static RSA in TLS 1.0 it still takes."""
    ecdhe = server("ECDHE-RSA-AES128-SHA", high=V.TLSv1)
    result = judged(POSTFIX, ecdhe)
    assert result.compatibility is Compatibility.INCOMPATIBLE
    assert result.mismatch is Mismatch.SIGNATURE
    assert judged(GMAIL, ecdhe).compatibility is Compatibility.COMPATIBLE
    rsa = server("AES128-SHA", high=V.TLSv1)
    assert judged(POSTFIX, rsa).compatibility is Compatibility.COMPATIBLE
    assert judged(EXCHANGE_ONLINE, ecdhe).mismatch is Mismatch.VERSION


def test_a_small_dh_group_fails_postfix(server: Servers) -> None:
    small = server("DHE-RSA-AES128-GCM-SHA256", high=V.TLSv1_2, dh_group="dh_1024_160")
    result = judged(POSTFIX, small)
    assert (result.compatibility, result.mismatch) == (Compatibility.INCOMPATIBLE, Mismatch.GROUP)
    assert result.detail == "server's DH prime has 1024 bits; postfix needs 2048"
    assert judged(EXIM_GNUTLS, small).compatibility is Compatibility.COMPATIBLE


# --- the judgement, on flights written by hand ---------------------------------------------

record = tlsbytes.record
DONE = tlsbytes.SERVER_HELLO_DONE


def key_share(group: int, size: int = 32) -> bytes:
    return struct.pack("!HHHH", 51, 4 + size, group, size) + bytes(size)


def tls13_hello(group: int, cipher: int = 0x1301) -> bytes:
    return record(22, tlsbytes.server_hello(0x0304, cipher, extensions=key_share(group)))


def retry(group: int, cipher: int = 0x1301) -> bytes:
    extension = struct.pack("!HHH", 51, 2, group)
    message = tlsbytes.server_hello(
        0x0304, cipher, random=HELLO_RETRY_REQUEST_RANDOM, extensions=extension
    )
    return record(22, message)


def ecdhe_exchange(group: int, signature: int | None = 0x0804) -> bytes:
    params = struct.pack("!BH", 3, group) + b"\x20" + bytes(32)
    if signature is not None:
        params += struct.pack("!H", signature)
    body = params + struct.pack("!H", 4) + b"sign"
    return b"\x0c" + len(body).to_bytes(3, "big") + body


def dhe_exchange(bits: int, signature: int | None = 0x0401) -> bytes:
    prime = (1 << (bits - 1) | 1).to_bytes(bits // 8, "big")
    params = b"".join(struct.pack("!H", len(v)) + v for v in (prime, b"\x02", b"\x05"))
    if signature is not None:
        params += struct.pack("!H", signature)
    body = params + struct.pack("!H", 4) + b"sign"
    return b"\x0c" + len(body).to_bytes(3, "big") + body


def tls12(cipher: int, *messages: bytes, version: int = 0x0303) -> bytes:
    hello = tlsbytes.server_hello(version, cipher)
    return record(22, hello + tlsbytes.certificate(b"leaf") + b"".join(messages))


def judge(profile: SenderProfile, data: bytes) -> ProfileJudgement:
    return judge_profile(profile, parse_profile_flight(data))


def test_tls13_key_share_groups() -> None:
    assert judge(GMAIL, tls13_hello(0x001D)).compatibility is Compatibility.COMPATIBLE
    odd = judge(GMAIL, tls13_hello(0x001E))
    assert (odd.compatibility, odd.mismatch) == (Compatibility.INCOMPATIBLE, Mismatch.GROUP)
    assert odd.detail == "server chose x448, which gmail does not offer"


def test_a_retry_for_an_offered_group_is_compatible() -> None:
    asked = judge(POSTFIX, retry(0x0018))
    assert asked.compatibility is Compatibility.COMPATIBLE
    assert asked.group == 0x0018
    assert asked.detail == "TLSv1.3 TLS_AES_128_GCM_SHA256 secp384r1 (HelloRetryRequest)"
    other = judge(GMAIL, retry(0x0100))
    assert (other.compatibility, other.mismatch) == (Compatibility.INCOMPATIBLE, Mismatch.GROUP)


def test_versions_and_suites_the_sender_does_not_offer() -> None:
    too_old = judge(EXCHANGE_ONLINE, tls12(0xC02F, ecdhe_exchange(0x001D), version=0x0301))
    assert too_old.mismatch is Mismatch.VERSION
    assert too_old.detail == "server chose TLSv1.0; exchange-online offers TLSv1.2"
    no_suite = judge(EXCHANGE_ONLINE, tls12(0x002F, DONE))
    assert no_suite.mismatch is Mismatch.SUITE
    assert "TLS_RSA_WITH_AES_128_CBC_SHA, which exchange-online does not offer" in no_suite.detail
    wrong_version = judge(GMAIL, tls12(0x1301, DONE))
    assert wrong_version.mismatch is Mismatch.SUITE


def test_alerts_are_named() -> None:
    version = judge(GMAIL, tlsbytes.alert(70))
    assert (version.mismatch, version.detail) == (Mismatch.VERSION, "alert protocol_version")
    failure = judge(GMAIL, tlsbytes.alert(40))
    assert (failure.mismatch, failure.detail) == (Mismatch.ALERT, "alert handshake_failure")
    warned = record(21, b"\x01\x70") + tls12(0x002F, DONE)
    assert judge(GMAIL, warned).compatibility is Compatibility.COMPATIBLE


def test_ecdhe_key_exchange_group_and_signature() -> None:
    ok = judge(EXCHANGE_2016, tls12(0xC028, ecdhe_exchange(0x0017, 0x0401)))
    assert ok.compatibility is Compatibility.COMPATIBLE
    assert ok.detail == "TLSv1.2 TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384 secp256r1"
    curve = judge(EXCHANGE_2016, tls12(0xC028, ecdhe_exchange(0x001D, 0x0401)))
    assert curve.mismatch is Mismatch.GROUP
    pss = judge(EXCHANGE_2016, tls12(0xC028, ecdhe_exchange(0x0017, 0x0804)))
    assert pss.mismatch is Mismatch.SIGNATURE
    assert (
        pss.detail == "server signed with rsa_pss_rsae_sha256, which exchange-2016 does not offer"
    )
    explicit = struct.pack("!B", 1) + bytes(40)
    body = b"\x0c" + len(explicit).to_bytes(3, "big") + explicit
    assert judge(GMAIL, tls12(0xC02F, body)).mismatch is Mismatch.GROUP


def test_old_signatures_below_tls12() -> None:
    flight = tls12(0xC013, ecdhe_exchange(0x001D, signature=None), version=0x0301)
    postfix = judge(POSTFIX, flight)
    assert postfix.mismatch is Mismatch.SIGNATURE
    assert postfix.detail == (
        "TLSv1.0 key exchange signed with MD5+SHA-1 or SHA-1, which postfix refuses"
    )
    assert judge(GMAIL, flight).compatibility is Compatibility.COMPATIBLE


def test_dh_prime_sizes() -> None:
    small = tls12(0x009E, dhe_exchange(1024))
    postfix = judge(POSTFIX, small)
    assert postfix.mismatch is Mismatch.GROUP
    assert postfix.detail == "server's DH prime has 1024 bits; postfix needs 2048"
    assert judge(EXIM_GNUTLS, small).compatibility is Compatibility.COMPATIBLE
    big = judge(POSTFIX, tls12(0x009E, dhe_exchange(2048)))
    assert big.compatibility is Compatibility.COMPATIBLE
    assert big.detail == "TLSv1.2 TLS_DHE_RSA_WITH_AES_128_GCM_SHA256 DH 2048 bits"


def test_the_flight_is_read_up_to_the_key_exchange() -> None:
    """Unlike the version test, the Certificate alone does not end the flight."""
    without = tls12(0xC02F)
    flight = parse_profile_flight(without)
    assert not flight.complete
    assert flight.hello is not None
    unknown = judge_profile(GMAIL, flight)
    assert unknown.compatibility is Compatibility.UNKNOWN
    assert unknown.detail == "the answer ended before the ServerKeyExchange"
    assert parse_profile_flight(tls12(0xC02F, ecdhe_exchange(0x001D))).complete
    static = parse_profile_flight(tls12(0x002F, DONE))
    assert static.complete
    assert judge_profile(GMAIL, static).compatibility is Compatibility.COMPATIBLE


def test_flights_split_anywhere_are_read_the_same() -> None:
    messages = tlsbytes.server_hello(0x0303, 0xC02F) + ecdhe_exchange(0x001D)
    data = record(22, messages[:9]) + record(22, messages[9:])
    for cut in range(len(data)):
        assert not parse_profile_flight(data[:cut]).complete
    assert judge(GMAIL, data).compatibility is Compatibility.COMPATIBLE


def test_plain_text_and_garbage() -> None:
    text = judge(GMAIL, b"454 4.7.0 TLS not available due to local problem\r\n")
    assert text.compatibility is Compatibility.UNKNOWN
    with pytest.raises(HelloParseError):
        parse_profile_flight(b"\x00\x01\x02\x03\x04\x05")
    with pytest.raises(HelloParseError):
        parse_profile_flight(record(22, b"\x0b\x00\x00\x00"))  # Certificate before ServerHello


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(PROFILES))
def test_any_answer_is_read_or_refused_as_not_tls(data: bytes, profile: SenderProfile) -> None:
    try:
        flight = parse_profile_flight(data)
    except HelloParseError:
        return
    judge_profile(profile, flight)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from(PROFILES))
def test_cut_or_corrupted_flights_never_crash(data: st.DataObject, profile: SenderProfile) -> None:
    whole = tls12(0xC02F, ecdhe_exchange(0x001D)) + tls13_hello(0x001D) + retry(0x0017)
    cut = data.draw(st.integers(0, len(whole)))
    flipped = bytearray(whole[:cut])
    for _ in range(data.draw(st.integers(0, 3))):
        if flipped:
            flipped[data.draw(st.integers(0, len(flipped) - 1))] = data.draw(st.integers(0, 255))
    try:
        flight = parse_profile_flight(bytes(flipped))
    except HelloParseError:
        return
    judge_profile(profile, flight)

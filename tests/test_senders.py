"""Sender profiles: the built-in ones hold together, and the config's own are read with every
problem named where it is."""

from __future__ import annotations

from typing import Any

import pytest

from exporter import senders
from exporter.probe import suites
from exporter.senders import (
    BUILTIN_PROFILES,
    EXCHANGE_2016,
    EXCHANGE_ONLINE,
    POSTFIX,
    ProfileError,
    SenderProfile,
    read_profile,
    read_profiles,
)
from exporter.target import TLSVersion

V = TLSVersion


def test_the_contract_names_the_built_in_profiles() -> None:
    assert list(BUILTIN_PROFILES) == [
        "exchange-online",
        "gmail",
        "postfix",
        "exim-gnutls",
        "exchange-2016",
    ]


@pytest.mark.parametrize("profile", list(BUILTIN_PROFILES.values()), ids=list(BUILTIN_PROFILES))
def test_built_in_profiles_hold_together(profile: SenderProfile) -> None:
    assert profile.source
    assert "checked 2026-12-01" in profile.source
    assert len(set(profile.suites)) == len(profile.suites) <= senders.MAX_SUITES
    assert len(set(profile.groups)) == len(profile.groups)
    assert len(set(profile.signature_algorithms)) == len(profile.signature_algorithms)
    # Every number has a name, so pages and transcripts never show bare numbers.
    assert all(not suites.suite_name(code).startswith("0x") for code in profile.suites)
    assert all(code in suites.GROUPS for code in profile.groups)
    assert all(code in suites.SIGNATURE_ALGORITHMS for code in profile.signature_algorithms)
    # TLS 1.3 suites exactly when TLS 1.3 is offered; suites for the older versions too.
    tls13 = [code for code in profile.suites if suites.is_tls13(code)]
    assert bool(tls13) == (profile.max_version is V.TLS1_3)
    assert len(tls13) < len(profile.suites)
    # A profile is its own valid config: reading it back gives the same profile.
    assert read_profile(profile.name, as_config(profile)) == profile_from_config(profile)


def as_config(profile: SenderProfile) -> dict[str, Any]:
    return {
        "versions": [v.value for v in reversed(profile.versions)],
        "suites": [suites.suite_name(code) for code in profile.suites],
        "groups": [suites.group_name(code) for code in profile.groups],
        "signature_algorithms": [
            suites.signature_name(code) for code in profile.signature_algorithms
        ],
        "sni": profile.sni,
        "min_dh_bits": profile.min_dh_bits,
        "legacy_signatures": profile.legacy_signatures,
    }


def profile_from_config(profile: SenderProfile) -> SenderProfile:
    return SenderProfile(
        name=profile.name,
        min_version=profile.min_version,
        max_version=profile.max_version,
        suites=profile.suites,
        groups=profile.groups,
        signature_algorithms=profile.signature_algorithms,
        sni=profile.sni,
        min_dh_bits=profile.min_dh_bits,
        legacy_signatures=profile.legacy_signatures,
        source="the config file",
    )


def test_exchange_2016_has_no_ecdhe_rsa_with_gcm() -> None:
    """Schannel on Windows Server 2012 R2: ECDHE_RSA only with CBC, GCM only with DHE_RSA,
    static RSA and ECDHE_ECDSA. No TLS 1.3."""
    names = [suites.suite_name(code) for code in EXCHANGE_2016.suites]
    assert not [n for n in names if n.startswith("TLS_ECDHE_RSA") and "GCM" in n]
    assert "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384" in names
    assert "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384" in names
    assert EXCHANGE_2016.max_version is V.TLS1_2
    assert EXCHANGE_2016.groups == (0x0017, 0x0018)


def test_exchange_online_is_tls12_with_microsofts_suites() -> None:
    assert EXCHANGE_ONLINE.versions == (V.TLS1_2,)
    assert suites.suite_name(EXCHANGE_ONLINE.suites[0]) == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    assert 0x000A not in EXCHANGE_ONLINE.suites  # 3DES off since 2019


def test_postfix_is_openssl_at_security_level_2() -> None:
    assert POSTFIX.versions == (V.TLS1_3, V.TLS1_2, V.TLS1_1, V.TLS1_0)
    assert not POSTFIX.sni
    assert POSTFIX.min_dh_bits == 2048
    assert not POSTFIX.legacy_signatures
    assert 0x0201 not in POSTFIX.signature_algorithms  # no SHA-1 at level 2
    assert not [c for c in POSTFIX.suites if "anon" in suites.suite_name(c)]


def test_versions_are_offered_from_the_highest() -> None:
    assert POSTFIX.offers_version(0x0301)
    assert not EXCHANGE_ONLINE.offers_version(0x0301)
    assert not EXCHANGE_ONLINE.offers_version(0x0304)


# --- the config's own profiles -------------------------------------------------------------

#: A suite by its IANA name, its OpenSSL name, either in lower case, hex text, a number.
SUITES = [
    "TLS_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "tls_ecdhe_rsa_with_aes_256_gcm_sha384",
    "0xC013",
    49172,
]


def test_a_profile_is_read_from_names_and_numbers() -> None:
    profile = read_profile(
        "partner",
        {
            "versions": ["TLSv1.2", 1.3],
            "suites": SUITES,
            "groups": ["X25519", "secp384r1", "0x0100"],
            "signature_algorithms": ["rsa_pss_rsae_sha256", "ECDSA_SECP256R1_SHA256", 0x0401],
            "sni": False,
            "min_dh_bits": 2048,
        },
    )
    assert profile.versions == (V.TLS1_3, V.TLS1_2)
    assert profile.suites == (0x1301, 0xC02F, 0xC030, 0xC013, 0xC014)
    assert profile.groups == (0x001D, 0x0018, 0x0100)
    assert profile.signature_algorithms == (0x0804, 0x0403, 0x0401)
    assert not profile.sni
    assert profile.min_dh_bits == 2048
    assert profile.legacy_signatures


def problems(value: object) -> list[tuple[tuple[object, ...], str]]:
    with pytest.raises(ProfileError) as caught:
        read_profiles(value)
    return [(p.path, p.message) for p in caught.value.problems]


def paths(value: object) -> list[tuple[object, ...]]:
    return [path for path, _ in problems(value)]


def test_every_problem_at_once_with_its_path() -> None:
    found = problems(
        {
            "partner": {
                "versions": ["1.2", "1.3"],
                "suites": ["TLS_AES_128_GCM_SHA256", "NOPE-SHA", "0x00FF", "aes128-sha", 47],
                "groups": ["x25519", "p-999"],
                "signature_algorithms": "rsa_pss_rsae_sha256",
                "sni": "yes",
                "min_dh_bits": 2048.5,
                "colour": "blue",
            },
            "gmail": {},
            "bad name": {},
        }
    )
    assert [path for path, _ in found] == [
        ("partner", "colour"),
        ("partner", "suites", 1),
        ("partner", "suites", 2),
        ("partner", "suites", 4),
        ("partner", "groups", 1),
        ("partner", "signature_algorithms"),
        ("partner", "sni"),
        ("partner", "min_dh_bits"),
        ("partner", "signature_algorithms"),
        ("gmail",),
        ("bad name",),
    ]
    messages = dict(found)
    assert "unknown suite 'NOPE-SHA'" in messages[("partner", "suites", 1)]
    assert "OpenSSL name" in messages[("partner", "suites", 1)]
    assert "signal, not a suite" in messages[("partner", "suites", 2)]
    assert "listed twice (also item 3)" in messages[("partner", "suites", 4)]
    assert "built-in profile" in messages[("gmail",)]


@pytest.mark.parametrize(
    ("versions", "message"),
    [
        (["1.0", "1.2"], "without gaps"),
        (["ssl3", "1.0"], "unknown version 'ssl3'"),
        (["1.2", "1.2"], "listed twice"),
        ([], "must be a list"),
        ("1.2", "must be a list"),
    ],
)
def test_versions_are_a_range_of_tls(versions: object, message: str) -> None:
    found = problems({"p": {"versions": versions, "suites": ["AES128-SHA"]}})
    assert any(message in text for _, text in found), found


def test_what_no_client_would_send_is_refused() -> None:
    assert paths(
        {"p": {"versions": ["1.2"], "suites": ["TLS_AES_128_GCM_SHA256", "AES128-SHA"]}}
    ) == [
        ("p", "suites", 0),
        ("p", "signature_algorithms"),
    ]
    tls13_without_suite = {"versions": ["1.3"], "suites": ["AES128-SHA"], "groups": ["x25519"]}
    assert ("p", "suites") in paths({"p": tls13_without_suite | {"signature_algorithms": [1025]}})
    ecdhe_without_groups = {
        "versions": ["1.2"],
        "suites": ["ECDHE-RSA-AES128-SHA"],
        "signature_algorithms": ["rsa_pkcs1_sha256"],
    }
    assert paths({"p": ecdhe_without_groups}) == [("p", "groups")]


def test_a_tls10_static_rsa_profile_needs_no_groups_or_signatures() -> None:
    profile = read_profile("old", {"versions": ["1.0"], "suites": ["AES128-SHA"]})
    assert profile.groups == ()
    assert profile.signature_algorithms == ()


def test_no_profiles_is_fine_and_the_wrong_shape_is_named() -> None:
    assert read_profiles(None) == {}
    assert paths(["gmail"]) == [()]
    assert paths({"p": ["versions"]}) == [("p",)]
    assert paths({"p": {"suites": ["AES128-SHA"]}}) == [("p", "versions")]


def test_too_many_suites() -> None:
    many = [f"0x{code:04X}" for code in range(0x0100, 0x0100 + senders.MAX_SUITES + 1)]
    found = problems({"p": {"versions": ["1.0"], "suites": many}})
    assert found == [(("p", "suites"), f"lists 129 suites; at most {senders.MAX_SUITES}")]


def test_the_error_reads_as_one_line() -> None:
    with pytest.raises(ProfileError, match=r"p\.suites\[0\]: unknown suite"):
        read_profiles({"p": {"versions": ["1.0"], "suites": ["NOPE"]}})

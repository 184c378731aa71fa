"""The big senders whose TLS the probe imitates, and the config's own senders.

A host that accepts TLS 1.2 only with suites or groups a sender does not offer still fails
that sender: its mail is delayed, bounced or sent in plain text. So a profile holds what one
sender's MTA puts in its ClientHello (versions, suites in order, groups, signature
algorithms, SNI) and what it refuses in the server's answer (small DH groups, the MD5/SHA-1
signatures of key exchanges below TLS 1.2). Each built-in profile says where its lists come
from and when they were last checked; they drift as vendors update, so check them again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Final

from exporter.probe import suites
from exporter.target import TLSVersion

#: The versions a profile may offer, low to high. SSLv3 hellos carry no extensions, and no
#: sender worth a profile still offers it.
PROFILE_VERSIONS: Final = (
    TLSVersion.TLS1_0,
    TLSVersion.TLS1_1,
    TLSVersion.TLS1_2,
    TLSVersion.TLS1_3,
)


@dataclass(frozen=True, slots=True)
class SenderProfile:
    """What one sender offers in its ClientHello, and what it refuses in the answer."""

    name: str
    #: The lowest and highest version offered; every version between is offered too.
    min_version: TLSVersion
    max_version: TLSVersion
    #: Cipher suites (IANA numbers) in the sender's order, TLS 1.3 suites included.
    suites: tuple[int, ...]
    #: supported_groups, in order: the ECDHE curves, and the groups of TLS 1.3.
    groups: tuple[int, ...]
    #: signature_algorithms (TLS 1.2 and later), in order.
    signature_algorithms: tuple[int, ...]
    #: Whether the sender names the host in server_name (SNI).
    sni: bool = True
    #: The smallest finite-field DH prime the sender accepts, in bits (0: any).
    min_dh_bits: int = 0
    #: Whether the sender accepts a TLS 1.0/1.1 key exchange signed the old way (MD5+SHA-1,
    #: SHA-1): OpenSSL 3 at security level 1 and above refuses it.
    legacy_signatures: bool = True
    #: Where the lists come from and when they were checked, for people.
    source: str = ""

    @property
    def versions(self) -> tuple[TLSVersion, ...]:
        """The versions offered, highest first (the order of supported_versions)."""
        low, high = (
            PROFILE_VERSIONS.index(self.min_version),
            PROFILE_VERSIONS.index(self.max_version),
        )
        return tuple(reversed(PROFILE_VERSIONS[low : high + 1]))

    def offers_version(self, wire: int) -> bool:
        """Whether the sender would go on with a server that chose this version."""
        return self.min_version.wire <= wire <= self.max_version.wire


def _named(lookup: Callable[[str], int | None], names: str) -> tuple[int, ...]:
    """Numbers from a blank-separated list of names; a typo fails at import."""
    codes = []
    for name in names.split():
        code = lookup(name)
        if code is None:
            raise ValueError(f"unknown name {name!r} in a built-in sender profile")
        codes.append(code)
    return tuple(codes)


def _suites(names: str) -> tuple[int, ...]:
    return _named(suites.suite_code, names)


def _groups(names: str) -> tuple[int, ...]:
    return _named(suites.group_code, names)


def _signatures(names: str) -> tuple[int, ...]:
    return _named(suites.signature_code, names)


# Exchange Online (Microsoft 365) sending to the Internet. Suites: Microsoft's table "TLS
# cipher suites supported by Office 365", in its order (learn.microsoft.com/purview/
# technical-reference-details-about-encryption; 3DES off since 2019-02-28). TLS 1.2 only:
# the same page says TLS 1.3 is "supported by some of the services" without naming SMTP,
# and Exchange Online never sends with TLS 1.0/1.1 (Exchange team blog, 2021-01-15, with
# MC229914). Groups: Schannel's default curves on Windows Server 2016 and later, which the
# service runs on ("TLS Elliptic Curves in Windows 10 1607 and later": curve25519,
# NistP256, NistP384). Signature algorithms: not published; the list Schannel on Windows
# Server 2016 and later sends. Checked 2026-12-01.
EXCHANGE_ONLINE: Final = SenderProfile(
    name="exchange-online",
    min_version=TLSVersion.TLS1_2,
    max_version=TLSVersion.TLS1_2,
    suites=_suites(
        "ECDHE-RSA-AES256-GCM-SHA384 ECDHE-RSA-AES128-GCM-SHA256"
        " ECDHE-RSA-AES256-SHA384 ECDHE-RSA-AES128-SHA256"
        " ECDHE-RSA-AES256-SHA ECDHE-RSA-AES128-SHA"
        " AES256-GCM-SHA384 AES128-GCM-SHA256"
    ),
    groups=_groups("x25519 secp256r1 secp384r1"),
    signature_algorithms=_signatures(
        "rsa_pss_rsae_sha256 rsa_pss_rsae_sha384 rsa_pss_rsae_sha512"
        " rsa_pkcs1_sha256 rsa_pkcs1_sha384 rsa_pkcs1_sha1"
        " ecdsa_secp256r1_sha256 ecdsa_secp384r1_sha384 ecdsa_sha1 dsa_sha1"
        " rsa_pkcs1_sha512 ecdsa_secp521r1_sha512"
    ),
    source="Microsoft: TLS cipher suites supported by Office 365 (checked 2026-12-01)",
)

# Gmail's outbound MTA. Versions: Google's "Ciphers for Gmail SMTP TLS connections"
# (support.google.com/a/answer/9795993): Gmail tells the receiving server it supports TLS
# 1.3, 1.2, 1.1 and 1.0 (no SSLv3), and delivers with 3DES where nothing better is there.
# The page's outbound list is not machine-readable; Gmail runs on BoringSSL, so suites,
# groups and signature algorithms are BoringSSL's client defaults (ssl/ssl_cipher.cc with
# AES hardware, kDefaultGroups and kVerifySignatureAlgorithms in ssl/extensions.cc),
# which match the suites the page lists, plus 3DES. Newer BoringSSL puts X25519MLKEM768
# first; any server that picks it also has x25519, so the verdicts do not change.
# Checked 2026-12-01.
GMAIL: Final = SenderProfile(
    name="gmail",
    min_version=TLSVersion.TLS1_0,
    max_version=TLSVersion.TLS1_3,
    suites=_suites(
        "TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256"
        " ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-RSA-AES128-GCM-SHA256"
        " ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-RSA-AES256-GCM-SHA384"
        " ECDHE-ECDSA-CHACHA20-POLY1305 ECDHE-RSA-CHACHA20-POLY1305"
        " ECDHE-ECDSA-AES128-SHA ECDHE-RSA-AES128-SHA ECDHE-ECDSA-AES256-SHA ECDHE-RSA-AES256-SHA"
        " AES128-GCM-SHA256 AES256-GCM-SHA384 AES128-SHA AES256-SHA DES-CBC3-SHA"
    ),
    groups=_groups("x25519 secp256r1 secp384r1"),
    signature_algorithms=_signatures(
        "ecdsa_secp256r1_sha256 rsa_pss_rsae_sha256 rsa_pkcs1_sha256"
        " ecdsa_secp384r1_sha384 rsa_pss_rsae_sha384 rsa_pkcs1_sha384"
        " rsa_pss_rsae_sha512 rsa_pkcs1_sha512 rsa_pkcs1_sha1"
    ),
    source="Google: Ciphers for Gmail SMTP TLS connections; BoringSSL defaults"
    " (checked 2026-12-01)",
)

# Postfix 3.7 on Debian 12 (OpenSSL 3.0) delivering opportunistically (level may), with the
# defaults: smtp_tls_ciphers = medium, so tls_medium_cipherlist =
# "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH"; smtp_tls_protocols = >=TLSv1 (Debian 12's
# openssl.cnf sets no MinProtocol); tls_eecdh_auto_curves = X25519 X448 prime256v1
# secp521r1 secp384r1; smtp_tls_servername empty, so no SNI. Debian builds OpenSSL with
# security level 2 (changelog: OPENSSL_TLS_SECURITY_LEVEL=2): anonymous suites and SHA-1
# signatures are left out, DH primes under 2048 bits refused, and a TLS 1.0/1.1 ECDHE or DHE
# key exchange fails ("legacy sigalg disallowed"), while static RSA there still works. The
# lists are the ClientHello `openssl s_client -cipher '<that list>' -groups
# X25519:X448:prime256v1:secp521r1:secp384r1` sends on Debian 12 (OpenSSL 3.0.19), which
# is what Postfix's smtp client makes of those settings. Checked 2026-12-01.
POSTFIX: Final = SenderProfile(
    name="postfix",
    min_version=TLSVersion.TLS1_0,
    max_version=TLSVersion.TLS1_3,
    suites=_suites(
        "TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 TLS_AES_128_GCM_SHA256"
        " ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-RSA-AES256-GCM-SHA384 DHE-DSS-AES256-GCM-SHA384"
        " DHE-RSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305 ECDHE-RSA-CHACHA20-POLY1305"
        " DHE-RSA-CHACHA20-POLY1305 ECDHE-ECDSA-AES256-CCM8 ECDHE-ECDSA-AES256-CCM"
        " DHE-RSA-AES256-CCM8 DHE-RSA-AES256-CCM ECDHE-ECDSA-ARIA256-GCM-SHA384"
        " ECDHE-ARIA256-GCM-SHA384 DHE-DSS-ARIA256-GCM-SHA384 DHE-RSA-ARIA256-GCM-SHA384"
        " ECDHE-ECDSA-AES256-SHA384 ECDHE-RSA-AES256-SHA384 DHE-RSA-AES256-SHA256"
        " DHE-DSS-AES256-SHA256 ECDHE-ECDSA-CAMELLIA256-SHA384 ECDHE-RSA-CAMELLIA256-SHA384"
        " DHE-RSA-CAMELLIA256-SHA256 DHE-DSS-CAMELLIA256-SHA256 ECDHE-ECDSA-AES256-SHA"
        " ECDHE-RSA-AES256-SHA DHE-RSA-AES256-SHA DHE-DSS-AES256-SHA DHE-RSA-CAMELLIA256-SHA"
        " DHE-DSS-CAMELLIA256-SHA AES256-GCM-SHA384 AES256-CCM8 AES256-CCM ARIA256-GCM-SHA384"
        " AES256-SHA256 CAMELLIA256-SHA256 AES256-SHA CAMELLIA256-SHA"
        " ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-RSA-AES128-GCM-SHA256 DHE-DSS-AES128-GCM-SHA256"
        " DHE-RSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES128-CCM8 ECDHE-ECDSA-AES128-CCM"
        " DHE-RSA-AES128-CCM8 DHE-RSA-AES128-CCM ECDHE-ECDSA-ARIA128-GCM-SHA256"
        " ECDHE-ARIA128-GCM-SHA256 DHE-DSS-ARIA128-GCM-SHA256 DHE-RSA-ARIA128-GCM-SHA256"
        " ECDHE-ECDSA-AES128-SHA256 ECDHE-RSA-AES128-SHA256 DHE-RSA-AES128-SHA256"
        " DHE-DSS-AES128-SHA256 ECDHE-ECDSA-CAMELLIA128-SHA256 ECDHE-RSA-CAMELLIA128-SHA256"
        " DHE-RSA-CAMELLIA128-SHA256 DHE-DSS-CAMELLIA128-SHA256 ECDHE-ECDSA-AES128-SHA"
        " ECDHE-RSA-AES128-SHA DHE-RSA-AES128-SHA DHE-DSS-AES128-SHA DHE-RSA-CAMELLIA128-SHA"
        " DHE-DSS-CAMELLIA128-SHA AES128-GCM-SHA256 AES128-CCM8 AES128-CCM ARIA128-GCM-SHA256"
        " AES128-SHA256 CAMELLIA128-SHA256 AES128-SHA CAMELLIA128-SHA"
    ),
    groups=_groups("x25519 x448 secp256r1 secp521r1 secp384r1"),
    signature_algorithms=_signatures(
        "ecdsa_secp256r1_sha256 ecdsa_secp384r1_sha384 ecdsa_secp521r1_sha512 ed25519 ed448"
        " rsa_pss_pss_sha256 rsa_pss_pss_sha384 rsa_pss_pss_sha512"
        " rsa_pss_rsae_sha256 rsa_pss_rsae_sha384 rsa_pss_rsae_sha512"
        " rsa_pkcs1_sha256 rsa_pkcs1_sha384 rsa_pkcs1_sha512"
        " ecdsa_sha224 rsa_pkcs1_sha224 dsa_sha224 dsa_sha256 dsa_sha384 dsa_sha512"
    ),
    sni=False,
    min_dh_bits=2048,
    legacy_signatures=False,
    source="Postfix 3.7 defaults on Debian 12, OpenSSL 3.0 at security level 2"
    " (checked 2026-12-01)",
)

# Exim 4.96 on Debian 12 (exim4-daemon-light, GnuTLS 3.7.9). Exim's smtp transport leaves
# tls_require_ciphers unset, which means GnuTLS priority "NORMAL" (src/tls-gnu.c:
# exim_default_gnutls_priority), and tls_sni unset (no SNI); tls_dh_min_bits defaults to
# 1024. Debian ships no /etc/gnutls/config to narrow NORMAL. The lists are the ClientHello
# `gnutls-cli --priority NORMAL` sends on Debian 12 (the suites in the order `gnutls-cli
# --priority NORMAL --list` prints them). Checked 2026-12-01.
EXIM_GNUTLS: Final = SenderProfile(
    name="exim-gnutls",
    min_version=TLSVersion.TLS1_0,
    max_version=TLSVersion.TLS1_3,
    suites=_suites(
        "TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 TLS_AES_128_GCM_SHA256"
        " TLS_AES_128_CCM_SHA256 ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305"
        " ECDHE-ECDSA-AES256-CCM ECDHE-ECDSA-AES256-SHA ECDHE-ECDSA-AES128-GCM-SHA256"
        " ECDHE-ECDSA-AES128-CCM ECDHE-ECDSA-AES128-SHA ECDHE-RSA-AES256-GCM-SHA384"
        " ECDHE-RSA-CHACHA20-POLY1305 ECDHE-RSA-AES256-SHA ECDHE-RSA-AES128-GCM-SHA256"
        " ECDHE-RSA-AES128-SHA AES256-GCM-SHA384 AES256-CCM AES256-SHA AES128-GCM-SHA256"
        " AES128-CCM AES128-SHA DHE-RSA-AES256-GCM-SHA384 DHE-RSA-CHACHA20-POLY1305"
        " DHE-RSA-AES256-CCM DHE-RSA-AES256-SHA DHE-RSA-AES128-GCM-SHA256 DHE-RSA-AES128-CCM"
        " DHE-RSA-AES128-SHA"
    ),
    groups=_groups(
        "secp256r1 secp384r1 secp521r1 x25519 x448"
        " ffdhe2048 ffdhe3072 ffdhe4096 ffdhe6144 ffdhe8192"
    ),
    signature_algorithms=_signatures(
        "rsa_pkcs1_sha256 rsa_pss_pss_sha256 rsa_pss_rsae_sha256 ecdsa_secp256r1_sha256"
        " ed25519 rsa_pkcs1_sha384 rsa_pss_pss_sha384 rsa_pss_rsae_sha384"
        " ecdsa_secp384r1_sha384 ed448 rsa_pkcs1_sha512 rsa_pss_pss_sha512"
        " rsa_pss_rsae_sha512 ecdsa_secp521r1_sha512 rsa_pkcs1_sha1 ecdsa_sha1"
    ),
    sni=False,
    min_dh_bits=1024,
    source="Exim 4.96 defaults on Debian 12, GnuTLS 3.7 priority NORMAL (checked 2026-12-01)",
)

# Exchange Server 2016 on Windows Server 2012 R2: Schannel's defaults. Suites: Microsoft's
# "TLS Cipher Suites in Windows 8.1" (the order with update 2919355; the _P256/_P384 twins
# are one suite each; NULL suites only on request, so left out). 2012 R2 has no ECDHE_RSA
# suite with GCM: a server that takes RSA certificates with ECDHE and GCM only (a common
# "modern" list) fails it. Groups: the curves those suites name (P-521 ones are off by
# default). No TLS 1.3, no RSA-PSS; signature algorithms are not published: the list
# Schannel on 2012 R2 sends. Exchange's SMTP client sends no SNI. Schannel's client takes
# DH primes from 1024 bits. Checked 2026-12-01.
EXCHANGE_2016: Final = SenderProfile(
    name="exchange-2016",
    min_version=TLSVersion.TLS1_0,
    max_version=TLSVersion.TLS1_2,
    suites=_suites(
        "ECDHE-RSA-AES256-SHA384 ECDHE-RSA-AES128-SHA256 ECDHE-RSA-AES256-SHA"
        " ECDHE-RSA-AES128-SHA DHE-RSA-AES256-GCM-SHA384 DHE-RSA-AES128-GCM-SHA256"
        " DHE-RSA-AES256-SHA DHE-RSA-AES128-SHA AES256-GCM-SHA384 AES128-GCM-SHA256"
        " AES256-SHA256 AES128-SHA256 AES256-SHA AES128-SHA"
        " ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-AES128-GCM-SHA256"
        " ECDHE-ECDSA-AES256-SHA384 ECDHE-ECDSA-AES128-SHA256 ECDHE-ECDSA-AES256-SHA"
        " ECDHE-ECDSA-AES128-SHA DHE-DSS-AES256-SHA256 DHE-DSS-AES128-SHA256"
        " DHE-DSS-AES256-SHA DHE-DSS-AES128-SHA DES-CBC3-SHA EDH-DSS-DES-CBC3-SHA"
        " RC4-SHA RC4-MD5"
    ),
    groups=_groups("secp256r1 secp384r1"),
    signature_algorithms=_signatures(
        "rsa_pkcs1_sha256 rsa_pkcs1_sha384 rsa_pkcs1_sha1 ecdsa_secp256r1_sha256"
        " ecdsa_secp384r1_sha384 ecdsa_sha1 dsa_sha1 rsa_pkcs1_sha512 ecdsa_secp521r1_sha512"
    ),
    sni=False,
    min_dh_bits=1024,
    source="Microsoft: TLS Cipher Suites in Windows 8.1 (Schannel on Windows Server 2012 R2)"
    " (checked 2026-12-01)",
)

#: The built-in profiles by name, in the order pages list them.
BUILTIN_PROFILES: Final[Mapping[str, SenderProfile]] = {
    profile.name: profile
    for profile in (EXCHANGE_ONLINE, GMAIL, POSTFIX, EXIM_GNUTLS, EXCHANGE_2016)
}
#: The senders tested when a config names none, and whose incompatibility alerts: the
#: one this exporter exists for (it dropped TLS 1.0 and 1.1 first, and others follow).
DEFAULT_SENDERS: Final = (EXCHANGE_ONLINE.name,)
DEFAULT_IMPORTANT_SENDERS: Final = (EXCHANGE_ONLINE.name,)


# --- Profiles from the config file -----------------------------------------------------------

#: A profile name: a label value people type in queries and alert rules.
_PROFILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: The keys of a profile in the config file, and whether each must be there.
PROFILE_KEYS: Final[Mapping[str, bool]] = {
    "versions": True,
    "suites": True,
    "groups": False,
    "signature_algorithms": False,
    "sni": False,
    "min_dh_bits": False,
    "legacy_signatures": False,
}
#: The most a list of a profile may hold: hellos with more suites upset some servers.
MAX_SUITES: Final = 128
MAX_GROUPS: Final = 64
MAX_SIGNATURE_ALGORITHMS: Final = 64
MAX_DH_BITS: Final = 16384
#: Values that stand in a suite list but are no suites (renegotiation SCSV, fallback SCSV).
_SIGNALS: Final = frozenset({suites.EMPTY_RENEGOTIATION_INFO_SCSV, 0x5600})
_VERSION_SPELLINGS: Final = {
    spelling: version
    for version in PROFILE_VERSIONS
    for spelling in (version.value, version.display.lower(), version.display.lower()[3:])
}


@dataclass(frozen=True, slots=True)
class ProfileProblem:
    """One thing wrong with a profile in the config: where (keys, list indexes) and why."""

    #: The path below `profiles:`: the profile's name, its key, the index of a list item.
    path: tuple[Hashable, ...]
    message: str


class ProfileError(ValueError):
    """Profiles that cannot be used, with every problem at once."""

    def __init__(self, problems: tuple[ProfileProblem, ...]) -> None:
        super().__init__("; ".join(f"{_path(p.path)}: {p.message}" for p in problems))
        self.problems = problems

    @classmethod
    def because(cls, message: str) -> ProfileError:
        """The whole value is wrong for one reason."""
        return cls((ProfileProblem((), message),))


def _path(path: tuple[Hashable, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)[1:]


def _describe(value: object) -> str:
    """How a YAML value reads in a message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return str(value) if abs(value) < 10**20 else "a very large number"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def read_profiles(value: object) -> dict[str, SenderProfile]:
    """The `profiles:` mapping of the config file: name -> profile, in the file's order.

    Raises ProfileError with every problem of every profile; names of built-in profiles
    are taken, so a profile of the config never silently replaces Microsoft's or Google's.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ProfileError.because(
            f"must be a mapping of profile names to profiles, got {_describe(value)}"
        )
    found: dict[str, SenderProfile] = {}
    problems: list[ProfileProblem] = []
    for name, body in value.items():
        problem = _name_problem(name)
        if problem is not None:
            problems.append(ProfileProblem((name,), problem))
            continue
        try:
            found[name] = read_profile(name, body)
        except ProfileError as error:
            problems.extend(ProfileProblem((name, *p.path), p.message) for p in error.problems)
    if problems:
        raise ProfileError(tuple(problems))
    return found


def _name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not _PROFILE_NAME.fullmatch(name):
        return (
            f"profile name {_describe(name)} must be 1 to 64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    if name in BUILTIN_PROFILES:
        return f"{name!r} is a built-in profile; give yours another name"
    return None


def read_profile(name: str, value: object) -> SenderProfile:
    """One profile from its mapping; raises ProfileError with every problem at once."""
    if not isinstance(value, Mapping):
        required = " and ".join(key for key, needed in PROFILE_KEYS.items() if needed)
        raise ProfileError.because(f"must be a mapping with {required}, got {_describe(value)}")
    reader = _ProfileReader(value)
    profile = reader.profile(name)
    if profile is None or reader.problems:
        raise ProfileError(tuple(reader.problems))
    return profile


def _number(item: object) -> int | None:
    """A two-byte number written as an integer or as hex text (`0xC02F`)."""
    if isinstance(item, bool):
        return None
    if isinstance(item, str) and re.fullmatch(r"\s*0[xX][0-9a-fA-F]{1,4}\s*", item):
        return int(item, 16)
    if isinstance(item, int) and 0 <= item <= 0xFFFF:
        return item
    return None


def _version(item: object) -> TLSVersion | None:
    if isinstance(item, float):
        return _VERSION_SPELLINGS.get(repr(item))
    if isinstance(item, str):
        return _VERSION_SPELLINGS.get(item.strip().lower())
    return None


@dataclass(frozen=True, slots=True)
class _Kind:
    """One list of a profile: how its items are looked up and named in messages."""

    key: str
    noun: str
    lookup: Callable[[str], int | None]
    limit: int
    hint: str


_SUITES: Final = _Kind(
    "suites",
    "suite",
    suites.suite_code,
    MAX_SUITES,
    "an IANA name like TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, an OpenSSL name like"
    " ECDHE-RSA-AES128-GCM-SHA256, or a number like 0xC02F",
)
_GROUP_KIND: Final = _Kind(
    "groups", "group", suites.group_code, MAX_GROUPS, "a name like x25519 or secp256r1, or a number"
)
_SIGNATURE_KIND: Final = _Kind(
    "signature_algorithms",
    "signature algorithm",
    suites.signature_code,
    MAX_SIGNATURE_ALGORITHMS,
    "a name like rsa_pss_rsae_sha256 or ecdsa_secp256r1_sha256, or a number like 0x0804",
)


class _ProfileReader:
    """Reads one profile's mapping, collecting every problem instead of stopping at one."""

    def __init__(self, value: Mapping[object, object]) -> None:
        self.value = value
        self.problems: list[ProfileProblem] = []

    def problem(self, message: str, *path: Hashable) -> None:
        self.problems.append(ProfileProblem(path, message))

    def profile(self, name: str) -> SenderProfile | None:
        for key in self.value:
            if key not in PROFILE_KEYS:
                valid = ", ".join(PROFILE_KEYS)
                self.problem(
                    f"unknown key (valid: {valid})", key if isinstance(key, str) else str(key)
                )
        span = self.versions()
        suite_codes = self.codes(_SUITES)
        groups = self.codes(_GROUP_KIND)
        signatures = self.codes(_SIGNATURE_KIND)
        sni = self.flag("sni")
        legacy = self.flag("legacy_signatures")
        dh_bits = self.dh_bits()
        if span is None:
            return None
        self.coherence(span, suite_codes, groups, signatures)
        return SenderProfile(
            name=name,
            min_version=span[0],
            max_version=span[1],
            suites=suite_codes,
            groups=groups,
            signature_algorithms=signatures,
            sni=sni,
            min_dh_bits=dh_bits,
            legacy_signatures=legacy,
            source="the config file",
        )

    def versions(self) -> tuple[TLSVersion, TLSVersion] | None:
        value = self.value.get("versions")
        if "versions" not in self.value or not isinstance(value, list) or not value:
            self.problem(
                f"must be a list of versions like ['1.2', '1.3'], got {_describe(value)}",
                "versions",
            )
            return None
        found: list[TLSVersion] = []
        for index, item in enumerate(value):
            version = _version(item)
            if version is None:
                valid = ", ".join(v.value for v in PROFILE_VERSIONS)
                self.problem(
                    f"unknown version {_describe(item)} (valid: {valid})", "versions", index
                )
            elif version in found:
                self.problem(f"{version.value} is listed twice", "versions", index)
            else:
                found.append(version)
        if len(found) != len(value):
            return None
        indexes = sorted(PROFILE_VERSIONS.index(v) for v in found)
        if indexes != list(range(indexes[0], indexes[-1] + 1)):
            self.problem("must be a range without gaps, like ['1.2', '1.3']", "versions")
            return None
        return PROFILE_VERSIONS[indexes[0]], PROFILE_VERSIONS[indexes[-1]]

    def codes(self, kind: _Kind) -> tuple[int, ...]:
        if kind.key not in self.value:
            if PROFILE_KEYS[kind.key]:
                self.problem(f"is required: a list of {kind.noun}s ({kind.hint})", kind.key)
            return ()
        value = self.value[kind.key]
        if not isinstance(value, list):
            self.problem(f"must be a list of {kind.noun}s, got {_describe(value)}", kind.key)
            return ()
        if len(value) > kind.limit:
            self.problem(f"lists {len(value)} {kind.noun}s; at most {kind.limit}", kind.key)
        found: dict[int, int] = {}
        for index, item in enumerate(value):
            code = self.code(kind, item, index)
            if code is None:
                continue
            if code in found:
                self.problem(
                    f"{_describe(item)} is listed twice (also item {found[code]})", kind.key, index
                )
            else:
                found[code] = index
        return tuple(found)

    def code(self, kind: _Kind, item: object, index: int) -> int | None:
        code = _number(item)
        if code is None and isinstance(item, str):
            code = kind.lookup(item)
        if code is None:
            self.problem(
                f"unknown {kind.noun} {_describe(item)} (give {kind.hint})", kind.key, index
            )
            return None
        if kind is _SUITES and code in _SIGNALS:
            self.problem(
                f"{_describe(item)} is a signal, not a suite: leave it out", kind.key, index
            )
            return None
        return code

    def flag(self, key: str) -> bool:
        value = self.value.get(key, True)
        if not isinstance(value, bool):
            self.problem(f"must be true or false, got {_describe(value)}", key)
            return True
        return value

    def dh_bits(self) -> int:
        value = self.value.get("min_dh_bits", 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DH_BITS:
            self.problem(
                f"must be a number of bits from 0 (any) to {MAX_DH_BITS}, got {_describe(value)}",
                "min_dh_bits",
            )
            return 0
        return value

    def coherence(
        self,
        span: tuple[TLSVersion, TLSVersion],
        suite_codes: tuple[int, ...],
        groups: tuple[int, ...],
        signatures: tuple[int, ...],
    ) -> None:
        """What no client would send: suites for versions it does not offer, and the like."""
        low, high = span
        tls13 = high is TLSVersion.TLS1_3
        for index, code in enumerate(suite_codes):
            if suites.is_tls13(code) and not tls13:
                self.problem(
                    f"{suites.suite_name(code)} is a TLS 1.3 suite, but versions stop at"
                    f" {high.value}",
                    "suites",
                    index,
                )
        if suite_codes and tls13 and not any(suites.is_tls13(c) for c in suite_codes):
            self.problem("versions include 1.3, but no TLS 1.3 suite is listed", "suites")
        if suite_codes and low is not TLSVersion.TLS1_3 and all(map(suites.is_tls13, suite_codes)):
            self.problem(
                f"versions include {low.value}, but only TLS 1.3 suites are listed", "suites"
            )
        elliptic = any((suites.key_exchange(c) or "").startswith("ECDH") for c in suite_codes)
        if not groups and (tls13 or elliptic):
            self.problem("is required with TLS 1.3 or ECDHE suites: a list of groups", "groups")
        if not signatures and high.wire >= TLSVersion.TLS1_2.wire:
            self.problem(
                "is required with TLS 1.2 and 1.3: a list of signature algorithms",
                "signature_algorithms",
            )

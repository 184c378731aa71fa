"""Cipher suites the hand-built ClientHellos offer, with their IANA names.

Legacy servers often accept only static-RSA or CBC suites, so the list is broad on purpose:
a version must never look refused just because the hello offered no suite the server has.
Sender profiles name their suites either way, so OpenSSL's names are here too, and the
names of the groups and signature schemes hellos carry.
"""

from __future__ import annotations

from typing import Final

# (code, IANA name). Order is preference order; AEAD and forward secrecy first.
_TLS12_ONLY: Final = (
    (0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    (0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0x00A3, "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384"),
    (0x00A2, "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256"),
    (0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
    (0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),
    (0xC09F, "TLS_DHE_RSA_WITH_AES_256_CCM"),
    (0xC09E, "TLS_DHE_RSA_WITH_AES_128_CCM"),
    (0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    (0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    (0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    (0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0x006B, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"),
    (0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0x006A, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256"),
    (0x0040, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256"),
    (0xC073, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xC072, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xC077, "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xC076, "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xC05D, "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC05C, "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256"),
    (0xC061, "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC060, "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0xC053, "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC052, "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    (0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    (0xC09D, "TLS_RSA_WITH_AES_256_CCM"),
    (0xC09C, "TLS_RSA_WITH_AES_128_CCM"),
    (0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    (0x003C, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    (0xC051, "TLS_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC050, "TLS_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0xC032, "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384"),
    (0xC031, "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256"),
    (0xC02E, "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xC02D, "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256"),
    (0xC02A, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384"),
    (0xC029, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256"),
    (0xC026, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384"),
    (0xC025, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256"),
    (0x00A7, "TLS_DH_anon_WITH_AES_256_GCM_SHA384"),
    (0x00A6, "TLS_DH_anon_WITH_AES_128_GCM_SHA256"),
)

# Suites defined since SSLv3 / TLS 1.0 that every version up to 1.2 may choose.
_ANY_VERSION: Final = (
    (0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    (0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    (0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    (0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    (0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"),
    (0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"),
    (0x0038, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA"),
    (0x0032, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA"),
    (0x0088, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0045, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0087, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0044, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA"),
    (0x009A, "TLS_DHE_RSA_WITH_SEED_CBC_SHA"),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    (0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA"),
    (0x0084, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0041, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0096, "TLS_RSA_WITH_SEED_CBC_SHA"),
    (0x0007, "TLS_RSA_WITH_IDEA_CBC_SHA"),
    (0xC00F, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA"),
    (0xC00E, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA"),
    (0xC005, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA"),
    (0xC004, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA"),
    (0x0037, "TLS_DH_RSA_WITH_AES_256_CBC_SHA"),
    (0x0031, "TLS_DH_RSA_WITH_AES_128_CBC_SHA"),
    (0x0036, "TLS_DH_DSS_WITH_AES_256_CBC_SHA"),
    (0x0030, "TLS_DH_DSS_WITH_AES_128_CBC_SHA"),
    (0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xC008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0013, "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA"),
    (0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xC00D, "TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xC003, "TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    (0xC011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA"),
    (0xC007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA"),
    (0x0004, "TLS_RSA_WITH_RC4_128_MD5"),
    (0xC00C, "TLS_ECDH_RSA_WITH_RC4_128_SHA"),
    (0xC002, "TLS_ECDH_ECDSA_WITH_RC4_128_SHA"),
    (0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA"),
    (0x0012, "TLS_DHE_DSS_WITH_DES_CBC_SHA"),
    (0x0009, "TLS_RSA_WITH_DES_CBC_SHA"),
    (0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0011, "TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5"),
    (0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5"),
    (0xC019, "TLS_ECDH_anon_WITH_AES_256_CBC_SHA"),
    (0xC018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA"),
    (0x003A, "TLS_DH_anon_WITH_AES_256_CBC_SHA"),
    (0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA"),
    (0x001B, "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA"),
    (0x0018, "TLS_DH_anon_WITH_RC4_128_MD5"),
)

_TLS13: Final = (
    (0x1302, "TLS_AES_256_GCM_SHA384"),
    (0x1303, "TLS_CHACHA20_POLY1305_SHA256"),
    (0x1301, "TLS_AES_128_GCM_SHA256"),
    (0x1304, "TLS_AES_128_CCM_SHA256"),
    (0x1305, "TLS_AES_128_CCM_8_SHA256"),
)

#: The signalling suite that stands in for an empty renegotiation_info extension.
EMPTY_RENEGOTIATION_INFO_SCSV: Final = 0x00FF

# Suites the hellos never offer but senders do (sender profiles, `openssl ciphers -stdname`).
_OTHERS: Final = (
    (0x0001, "TLS_RSA_WITH_NULL_MD5"),
    (0x0002, "TLS_RSA_WITH_NULL_SHA"),
    (0x003B, "TLS_RSA_WITH_NULL_SHA256"),
    (0x0046, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA"),
    (0x006C, "TLS_DH_anon_WITH_AES_128_CBC_SHA256"),
    (0x006D, "TLS_DH_anon_WITH_AES_256_CBC_SHA256"),
    (0x0089, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA"),
    (0x00BA, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00BD, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00BE, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00BF, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00C0, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00C3, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00C4, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00C5, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256"),
    (0xC006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA"),
    (0xC010, "TLS_ECDHE_RSA_WITH_NULL_SHA"),
    (0xC015, "TLS_ECDH_anon_WITH_NULL_SHA"),
    (0xC056, "TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256"),
    (0xC057, "TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384"),
    (0xC0A0, "TLS_RSA_WITH_AES_128_CCM_8"),
    (0xC0A1, "TLS_RSA_WITH_AES_256_CCM_8"),
    (0xC0A2, "TLS_DHE_RSA_WITH_AES_128_CCM_8"),
    (0xC0A3, "TLS_DHE_RSA_WITH_AES_256_CCM_8"),
    (0xC0AE, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"),
    (0xC0AF, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8"),
)

_NAMES: Final = dict(_TLS12_ONLY + _ANY_VERSION + _TLS13 + _OTHERS)

#: OpenSSL's names (`openssl ciphers -stdname -V 'ALL:COMPLEMENTOFALL:@SECLEVEL=0'`,
#: OpenSSL 3.0, checked 2026-12-01; the 3DES, RC4, DES, SEED and IDEA names from OpenSSL
#: 1.1.1, which still had them). TLS 1.3 suites go by their IANA names in OpenSSL too.
_OPENSSL_NAMES: Final = {
    0x0001: "NULL-MD5",
    0x0002: "NULL-SHA",
    0x0004: "RC4-MD5",
    0x0005: "RC4-SHA",
    0x0007: "IDEA-CBC-SHA",
    0x0009: "DES-CBC-SHA",
    0x000A: "DES-CBC3-SHA",
    0x0013: "EDH-DSS-DES-CBC3-SHA",
    0x0016: "EDH-RSA-DES-CBC3-SHA",
    0x002F: "AES128-SHA",
    0x0032: "DHE-DSS-AES128-SHA",
    0x0033: "DHE-RSA-AES128-SHA",
    0x0034: "ADH-AES128-SHA",
    0x0035: "AES256-SHA",
    0x0038: "DHE-DSS-AES256-SHA",
    0x0039: "DHE-RSA-AES256-SHA",
    0x003A: "ADH-AES256-SHA",
    0x003B: "NULL-SHA256",
    0x003C: "AES128-SHA256",
    0x003D: "AES256-SHA256",
    0x0040: "DHE-DSS-AES128-SHA256",
    0x0041: "CAMELLIA128-SHA",
    0x0044: "DHE-DSS-CAMELLIA128-SHA",
    0x0045: "DHE-RSA-CAMELLIA128-SHA",
    0x0046: "ADH-CAMELLIA128-SHA",
    0x0067: "DHE-RSA-AES128-SHA256",
    0x006A: "DHE-DSS-AES256-SHA256",
    0x006B: "DHE-RSA-AES256-SHA256",
    0x006C: "ADH-AES128-SHA256",
    0x006D: "ADH-AES256-SHA256",
    0x0084: "CAMELLIA256-SHA",
    0x0087: "DHE-DSS-CAMELLIA256-SHA",
    0x0088: "DHE-RSA-CAMELLIA256-SHA",
    0x0089: "ADH-CAMELLIA256-SHA",
    0x0096: "SEED-SHA",
    0x009A: "DHE-RSA-SEED-SHA",
    0x009C: "AES128-GCM-SHA256",
    0x009D: "AES256-GCM-SHA384",
    0x009E: "DHE-RSA-AES128-GCM-SHA256",
    0x009F: "DHE-RSA-AES256-GCM-SHA384",
    0x00A2: "DHE-DSS-AES128-GCM-SHA256",
    0x00A3: "DHE-DSS-AES256-GCM-SHA384",
    0x00A6: "ADH-AES128-GCM-SHA256",
    0x00A7: "ADH-AES256-GCM-SHA384",
    0x00BA: "CAMELLIA128-SHA256",
    0x00BD: "DHE-DSS-CAMELLIA128-SHA256",
    0x00BE: "DHE-RSA-CAMELLIA128-SHA256",
    0x00BF: "ADH-CAMELLIA128-SHA256",
    0x00C0: "CAMELLIA256-SHA256",
    0x00C3: "DHE-DSS-CAMELLIA256-SHA256",
    0x00C4: "DHE-RSA-CAMELLIA256-SHA256",
    0x00C5: "ADH-CAMELLIA256-SHA256",
    0xC006: "ECDHE-ECDSA-NULL-SHA",
    0xC007: "ECDHE-ECDSA-RC4-SHA",
    0xC008: "ECDHE-ECDSA-DES-CBC3-SHA",
    0xC009: "ECDHE-ECDSA-AES128-SHA",
    0xC00A: "ECDHE-ECDSA-AES256-SHA",
    0xC010: "ECDHE-RSA-NULL-SHA",
    0xC011: "ECDHE-RSA-RC4-SHA",
    0xC012: "ECDHE-RSA-DES-CBC3-SHA",
    0xC013: "ECDHE-RSA-AES128-SHA",
    0xC014: "ECDHE-RSA-AES256-SHA",
    0xC015: "AECDH-NULL-SHA",
    0xC018: "AECDH-AES128-SHA",
    0xC019: "AECDH-AES256-SHA",
    0xC023: "ECDHE-ECDSA-AES128-SHA256",
    0xC024: "ECDHE-ECDSA-AES256-SHA384",
    0xC027: "ECDHE-RSA-AES128-SHA256",
    0xC028: "ECDHE-RSA-AES256-SHA384",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xC050: "ARIA128-GCM-SHA256",
    0xC051: "ARIA256-GCM-SHA384",
    0xC052: "DHE-RSA-ARIA128-GCM-SHA256",
    0xC053: "DHE-RSA-ARIA256-GCM-SHA384",
    0xC056: "DHE-DSS-ARIA128-GCM-SHA256",
    0xC057: "DHE-DSS-ARIA256-GCM-SHA384",
    0xC05C: "ECDHE-ECDSA-ARIA128-GCM-SHA256",
    0xC05D: "ECDHE-ECDSA-ARIA256-GCM-SHA384",
    0xC060: "ECDHE-ARIA128-GCM-SHA256",
    0xC061: "ECDHE-ARIA256-GCM-SHA384",
    0xC072: "ECDHE-ECDSA-CAMELLIA128-SHA256",
    0xC073: "ECDHE-ECDSA-CAMELLIA256-SHA384",
    0xC076: "ECDHE-RSA-CAMELLIA128-SHA256",
    0xC077: "ECDHE-RSA-CAMELLIA256-SHA384",
    0xC09C: "AES128-CCM",
    0xC09D: "AES256-CCM",
    0xC09E: "DHE-RSA-AES128-CCM",
    0xC09F: "DHE-RSA-AES256-CCM",
    0xC0A0: "AES128-CCM8",
    0xC0A1: "AES256-CCM8",
    0xC0A2: "DHE-RSA-AES128-CCM8",
    0xC0A3: "DHE-RSA-AES256-CCM8",
    0xC0AC: "ECDHE-ECDSA-AES128-CCM",
    0xC0AD: "ECDHE-ECDSA-AES256-CCM",
    0xC0AE: "ECDHE-ECDSA-AES128-CCM8",
    0xC0AF: "ECDHE-ECDSA-AES256-CCM8",
    0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
    0xCCAA: "DHE-RSA-CHACHA20-POLY1305",
}

_BY_NAME: Final = {
    name.upper(): code for table in (_NAMES, _OPENSSL_NAMES) for code, name in table.items()
}


def suites_for(wire_version: int) -> tuple[int, ...]:
    """The suites a ClientHello for this version offers, the SCSV last (at most 128)."""
    chosen: tuple[tuple[int, str], ...]
    if wire_version >= 0x0304:
        chosen = _TLS13 + _TLS12_ONLY[:12] + _ANY_VERSION[:4]
    elif wire_version == 0x0303:
        chosen = _TLS12_ONLY + _ANY_VERSION
    else:
        chosen = _ANY_VERSION
    return (*(code for code, _ in chosen), EMPTY_RENEGOTIATION_INFO_SCSV)


def suite_name(code: int) -> str:
    """IANA name of a suite, or its number for suites the hellos never offer."""
    return _NAMES.get(code, f"0x{code:04X}")


def suite_code(name: str) -> int | None:
    """The number of a suite named the IANA way (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`) or
    the OpenSSL way (`ECDHE-RSA-AES128-GCM-SHA256`), in any case; None for other names."""
    return _BY_NAME.get(name.strip().upper())


def openssl_name(code: int) -> str | None:
    """OpenSSL's name of a suite (TLS 1.3 suites: the IANA name), None where it has none."""
    if is_tls13(code):
        return _NAMES.get(code)
    return _OPENSSL_NAMES.get(code)


def is_tls13(code: int) -> bool:
    """Whether the suite belongs to TLS 1.3 (0x13xx), which no earlier version may choose."""
    return code >> 8 == 0x13


def key_exchange(code: int) -> str | None:
    """The key exchange and authentication of a suite up to TLS 1.2, from its IANA name:
    `ECDHE_RSA`, `DHE_DSS`, `RSA`, `DH_anon`, ...; None for TLS 1.3 and unnamed suites."""
    name = _NAMES.get(code)
    if name is None or is_tls13(code) or "_WITH_" not in name:
        return None
    return name.removeprefix("TLS_").split("_WITH_", 1)[0]


# --- Groups and signature schemes, which sender profiles name too ---------------------------

#: Named groups (IANA "TLS Supported Groups") by number.
GROUPS: Final[dict[int, str]] = {
    0x0017: "secp256r1",
    0x0018: "secp384r1",
    0x0019: "secp521r1",
    0x001A: "brainpoolP256r1",
    0x001B: "brainpoolP384r1",
    0x001C: "brainpoolP512r1",
    0x001D: "x25519",
    0x001E: "x448",
    0x001F: "brainpoolP256r1tls13",
    0x0020: "brainpoolP384r1tls13",
    0x0021: "brainpoolP512r1tls13",
    0x0100: "ffdhe2048",
    0x0101: "ffdhe3072",
    0x0102: "ffdhe4096",
    0x0103: "ffdhe6144",
    0x0104: "ffdhe8192",
    0x11EB: "SecP256r1MLKEM768",
    0x11EC: "X25519MLKEM768",
    0x11ED: "SecP384r1MLKEM1024",
}
#: Other spellings people copy from OpenSSL, GnuTLS or Windows.
_GROUP_ALIASES: Final = {
    "prime256v1": 0x0017,
    "p-256": 0x0017,
    "p256": 0x0017,
    "nistp256": 0x0017,
    "p-384": 0x0018,
    "p384": 0x0018,
    "nistp384": 0x0018,
    "p-521": 0x0019,
    "p521": 0x0019,
    "nistp521": 0x0019,
    "curve25519": 0x001D,
    "curve448": 0x001E,
}

#: Signature schemes (IANA "TLS SignatureScheme"; the SHA-1, SHA-224 and DSA pairs of TLS
#: 1.2 under the names OpenSSL gives them) by number.
SIGNATURE_ALGORITHMS: Final[dict[int, str]] = {
    0x0201: "rsa_pkcs1_sha1",
    0x0202: "dsa_sha1",
    0x0203: "ecdsa_sha1",
    0x0301: "rsa_pkcs1_sha224",
    0x0302: "dsa_sha224",
    0x0303: "ecdsa_sha224",
    0x0401: "rsa_pkcs1_sha256",
    0x0402: "dsa_sha256",
    0x0403: "ecdsa_secp256r1_sha256",
    0x0501: "rsa_pkcs1_sha384",
    0x0502: "dsa_sha384",
    0x0503: "ecdsa_secp384r1_sha384",
    0x0601: "rsa_pkcs1_sha512",
    0x0602: "dsa_sha512",
    0x0603: "ecdsa_secp521r1_sha512",
    0x0804: "rsa_pss_rsae_sha256",
    0x0805: "rsa_pss_rsae_sha384",
    0x0806: "rsa_pss_rsae_sha512",
    0x0807: "ed25519",
    0x0808: "ed448",
    0x0809: "rsa_pss_pss_sha256",
    0x080A: "rsa_pss_pss_sha384",
    0x080B: "rsa_pss_pss_sha512",
    0x081A: "ecdsa_brainpoolP256r1tls13_sha256",
    0x081B: "ecdsa_brainpoolP384r1tls13_sha384",
    0x081C: "ecdsa_brainpoolP512r1tls13_sha512",
    0x0904: "mldsa44",
    0x0905: "mldsa65",
    0x0906: "mldsa87",
}

_GROUP_CODES: Final = {name.lower(): code for code, name in GROUPS.items()} | _GROUP_ALIASES
_SIGNATURE_CODES: Final = {name.lower(): code for code, name in SIGNATURE_ALGORITHMS.items()}


def group_name(code: int) -> str:
    """The name of a group, or its number for groups without one."""
    return GROUPS.get(code, f"0x{code:04X}")


def signature_name(code: int) -> str:
    """The name of a signature scheme, or its number for schemes without one."""
    return SIGNATURE_ALGORITHMS.get(code, f"0x{code:04X}")


def group_code(name: str) -> int | None:
    """The number of a group by any of its names (`x25519`, `secp256r1`, `P-256`, ...)."""
    return _GROUP_CODES.get(name.strip().lower())


def signature_code(name: str) -> int | None:
    """The number of a signature scheme by its name (`rsa_pss_rsae_sha256`)."""
    return _SIGNATURE_CODES.get(name.strip().lower())

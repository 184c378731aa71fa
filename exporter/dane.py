"""DANE for SMTP (RFC 7672): does the chain a server presented match its TLSA records; no I/O.

Only DANE-TA(2) and DANE-EE(3) count for SMTP; PKIX-TA(0) and PKIX-EE(1) records are
"unusable" and ignored, as senders ignore them. DANE-EE matches the leaf's certificate or
public key, with no name or date checks (RFC 7672 3.1.1); DANE-TA matches a certificate of
the chain other than the leaf, which must then have issued the chain and name the MX host
(3.1.2). A key rollover is safe when the records would still match after it: a DANE-TA
record for the issuer, or a second DANE-EE record (for the next key).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: TLSA records looked at per name: more is no configuration, but an attack on the probe.
MAX_RECORDS: Final = 64


class Usage(IntEnum):
    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


class Selector(IntEnum):
    CERT = 0
    SPKI = 1


class MatchingType(IntEnum):
    FULL = 0
    SHA256 = 1
    SHA512 = 2


@dataclass(frozen=True, slots=True)
class Tlsa:
    """One TLSA record."""

    usage: int
    selector: int
    matching: int
    data: bytes

    @property
    def usable(self) -> bool:
        """DANE-TA or DANE-EE with a selector and matching type senders know."""
        return (
            self.usage in (Usage.DANE_TA, Usage.DANE_EE)
            and self.selector in (Selector.CERT, Selector.SPKI)
            and self.matching in (MatchingType.FULL, MatchingType.SHA256, MatchingType.SHA512)
        )

    def text(self) -> str:
        """The record as `openssl s_client -dane_tlsa_rrdata` and zone files write it."""
        return f"{self.usage} {self.selector} {self.matching} {self.data.hex()}"


@dataclass(frozen=True, slots=True)
class DaneResult:
    """What a server's chain makes of its TLSA records."""

    #: True when a usable record matches (and, for DANE-TA, the names do).
    matched: bool
    #: The records that matched, as text.
    matching: tuple[str, ...]
    #: Usable records among all.
    usable: int
    #: The records would still match after the leaf's key changes.
    rollover_ready: bool
    detail: str


def _selected(cert: x509.Certificate, selector: int) -> bytes:
    if selector == Selector.SPKI:
        return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return cert.public_bytes(Encoding.DER)


def _digest(data: bytes, matching: int) -> bytes:
    if matching == MatchingType.SHA256:
        return hashlib.sha256(data).digest()
    if matching == MatchingType.SHA512:
        return hashlib.sha512(data).digest()
    return data


def _matches(record: Tlsa, cert: x509.Certificate) -> bool:
    return _digest(_selected(cert, record.selector), record.matching) == record.data


def _names_match(leaf: x509.Certificate, names: tuple[str, ...]) -> bool:
    """RFC 7672 3.2.2: a DNS name of the leaf (wildcards for one label) is one of `names`
    (the MX host name, and the TLSA base domain where a CNAME led elsewhere)."""
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns_names = sans.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = [
            str(a.value) for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        ]
    wanted = {n.lower().rstrip(".") for n in names}
    for name in (n.lower().rstrip(".") for n in dns_names):
        if name in wanted:
            return True
        if name.startswith("*.") and any(
            w.partition(".")[2] == name[2:] and w.partition(".")[0] for w in wanted
        ):
            return True
    return False


def _issued_by(chain: list[x509.Certificate], anchor_index: int) -> bool:
    """Each certificate from the leaf up to the anchor is signed by the next one."""
    for child, parent in itertools.pairwise(chain[: anchor_index + 1]):
        try:
            child.verify_directly_issued_by(parent)
        except Exception:  # a bad signature, or a key or algorithm not supported: no proof
            return False
    return True


def _ta_verdict(record: Tlsa, chain: list[x509.Certificate], names: tuple[str, ...]) -> str | None:
    """None when the DANE-TA record matches and holds, else why not ("" for no match)."""
    anchor = next((i for i in range(1, len(chain)) if _matches(record, chain[i])), None)
    if anchor is None:
        return ""
    if not _issued_by(chain, anchor):
        return f"{record.text()[:20]}...: the chain does not lead to it"
    if not _names_match(chain[0], names):
        return f"{record.text()[:20]}...: the leaf does not name {names[0]}"
    return None


def check(chain_der: tuple[bytes, ...], records: list[Tlsa], names: tuple[str, ...]) -> DaneResult:
    """Match the presented chain (leaf first) against the TLSA records of the MX host."""
    usable = [r for r in records[:MAX_RECORDS] if r.usable]
    if not chain_der:
        return DaneResult(False, (), len(usable), False, "no certificate was presented")
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as exc:
        return DaneResult(False, (), len(usable), False, f"unreadable certificate: {exc}")
    matching: list[str] = []
    problems: list[str] = []
    for record in usable:
        if record.usage == Usage.DANE_EE:
            why = None if _matches(record, chain[0]) else ""
        else:
            why = _ta_verdict(record, chain, names)
        if why is None:
            matching.append(record.text())
        elif why:
            problems.append(why)
    return _result(usable, matching, problems)


def _result(usable: list[Tlsa], matching: list[str], problems: list[str]) -> DaneResult:
    ee_total = sum(1 for r in usable if r.usage == Usage.DANE_EE)
    ee_matching = sum(1 for t in matching if t.startswith("3 "))
    # Survives a new leaf key: the issuer's record, or a DANE-EE record for another key.
    rollover = bool(matching) and (ee_matching < len(matching) or ee_total > ee_matching)
    if matching:
        detail = f"{len(matching)} of {len(usable)} usable records match"
    elif not usable:
        detail = "no usable TLSA record (only PKIX-TA/PKIX-EE, which SMTP ignores)"
    else:
        detail = "; ".join(problems) or f"none of {len(usable)} usable records matches the chain"
    return DaneResult(bool(matching), tuple(matching), len(usable), rollover, detail)

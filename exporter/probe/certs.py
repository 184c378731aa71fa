"""Pure helpers over X.509 certificates: the facts users see, and chain verification.

The chain is fetched with verification off and verified here, separately, so an expired,
self-signed or misnamed certificate still yields its dates and names, and the reason it
fails is one users can act on.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import ssl
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from exporter.results import CertificateInfo, ChainCertificate, VerifyError

_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
)


@dataclass(frozen=True, slots=True)
class _Analysis:
    """An analysis, and the time in which it holds: every certificate sent is within its
    dates from `since` to `until`, so nothing the verdict depends on can change."""

    info: CertificateInfo
    since: datetime
    until: datetime


class TrustStore:
    """Trust anchors loaded once, plus the subjects they cover (to spot missing links), and
    the chains already analysed against them: a chain that many hosts present (hosted mail)
    is parsed and verified once, and every result shares its facts."""

    def __init__(self, anchors: Sequence[x509.Certificate], source: str) -> None:
        self.source = source
        self.store = Store(list(anchors)) if anchors else None
        self.subjects = frozenset(c.subject.public_bytes() for c in anchors)
        self.analyses: OrderedDict[bytes, _Analysis] = OrderedDict()


def _load_pem_file(path: str) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        # System bundles carry a few old roots with odd serials; they still anchor chains.
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificates(Path(path).read_bytes())


@functools.lru_cache(maxsize=32)
def _cached_store(path: str | None, _stamp: int) -> TrustStore:
    if path is not None:
        try:
            return TrustStore(_load_pem_file(path), path)
        except (OSError, ValueError) as exc:
            # Checked when the config loaded, gone or broken since: say so on every result.
            return TrustStore([], f"{path} is unreadable: {exc}")
    for candidate in _system_bundles():
        try:
            return TrustStore(_load_pem_file(candidate), candidate)
        except (OSError, ValueError):
            continue
    return TrustStore([], "none")


def _system_bundles() -> list[str]:
    paths = ssl.get_default_verify_paths()
    found = [p for p in (paths.cafile, paths.openssl_cafile) if p and os.path.isfile(p)]
    found += [p for p in _BUNDLES if os.path.isfile(p)]
    try:
        import certifi  # type: ignore[import-not-found,unused-ignore]

        found.append(str(certifi.where()))
    except ImportError:
        pass
    return found


def trust_store(ca_file: str | None = None) -> TrustStore:
    """The anchors in `ca_file`, or the system store; re-read only when the file changes."""
    if ca_file is None:
        return _cached_store(None, 0)
    try:
        stamp = os.stat(ca_file).st_mtime_ns
    except OSError:
        stamp = 0
    return _cached_store(ca_file, stamp)


def _key_facts(cert: x509.Certificate) -> tuple[str, int]:
    try:
        key = cert.public_key()
    except Exception:  # unsupported algorithms (GOST, ...) raise their own types
        return "unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return type(key).__name__, 0


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # missing, duplicated or malformed extensions alike
        return ()
    names = ext.get_values_for_type(x509.DNSName)
    addresses = [str(a) for a in ext.get_values_for_type(x509.IPAddress)]
    return (*names, *addresses)


def _signature_algorithm(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    name = getattr(oid, "_name", "")
    return str(name) if name and name != "Unknown OID" else oid.dotted_string


def _subject(cert: x509.Certificate) -> str:
    return _name(lambda: cert.subject)


def _issuer(cert: x509.Certificate) -> str:
    return _name(lambda: cert.issuer)


def _name(name: Callable[[], x509.Name]) -> str:
    """A name as RFC 4514 text. Names are decoded when first asked for, so one that does not
    decode fails there: it is shown as unreadable instead of failing the analysis."""
    try:
        return name().rfc4514_string()
    except Exception:
        return "<unreadable>"


def fingerprint(der: bytes) -> str:
    """SHA-256 of the DER certificate, lower-case hex."""
    return hashlib.sha256(der).hexdigest()


def summarize(der: bytes, cert: x509.Certificate) -> ChainCertificate:
    return ChainCertificate(
        subject=_subject(cert),
        issuer=_issuer(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=fingerprint(der),
    )


def _verify_subject(name: str) -> x509.verification.Subject:
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return x509.DNSName(name.rstrip(".").lower())


def _name_in_leaf(sans: tuple[str, ...]) -> str | None:
    """A name the leaf is certainly valid for, to test the chain apart from the hostname."""
    for san in sans:
        if san.startswith("*."):
            return "wildcard-check." + san[2:]
        if san and "*" not in san:
            return san
    return None


def _server_auth(
    _policy: Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None
) -> None:
    if eku is None:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in eku and (
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku
    ):
        raise ValueError("extended key usage does not allow server authentication")


@functools.cache
def _leaf_policy() -> ExtensionPolicy:
    """Web PKI rules, but as lenient as OpenSSL-based MTAs about extension criticality.

    Sending MTAs (Postfix, Exim, Exchange) accept a critical subjectAltName or
    extendedKeyUsage; reporting such certificates as untrusted would be a false alarm.
    """
    return (
        ExtensionPolicy.webpki_defaults_ee()
        .require_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_auth)
    )


#: Certificates kept from what a server sends (real chains have 2-4).
_MAX_KEPT = 16

#: Path building is exponential in look-alike intermediates; real chains are short.
_MAX_INTERMEDIATES = 8
_MAX_CHAIN_DEPTH = 8


def _distinct_intermediates(
    leaf: x509.Certificate, sent: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """The sent CA certificates without repeats of one (subject, key), at most a few.

    A hostile server can send many certificates with one subject and key: each is a valid
    issuer of the others, and the path builder would try every ordering of them.
    """
    seen: set[tuple[bytes, bytes]] = set()
    kept: list[x509.Certificate] = []
    for cert in sent:
        try:
            key = cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            subject = cert.subject.public_bytes()
        except Exception:  # an unsupported key or a name that does not decode issues nothing
            continue
        identity = (subject, key)
        if identity in seen or cert == leaf:
            continue
        seen.add(identity)
        kept.append(cert)
        if len(kept) == _MAX_INTERMEDIATES:
            break
    return kept


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _date_problem(
    chain: Sequence[x509.Certificate], now: datetime
) -> tuple[VerifyError, str] | None:
    for position, cert in enumerate(chain):
        which = "leaf certificate" if position == 0 else f"chain certificate {position}"
        if cert.not_valid_after_utc < now:
            return VerifyError.EXPIRED, f"{which} expired at {cert.not_valid_after_utc:%Y-%m-%d}"
        if cert.not_valid_before_utc > now:
            return (
                VerifyError.NOT_YET_VALID,
                f"{which} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}",
            )
    return None


def _verify(
    chain: Sequence[x509.Certificate], servername: str, trust: TrustStore, now: datetime
) -> tuple[VerifyError | None, str]:
    """Build a path first; only when none exists, name the most useful reason.

    Dates are judged only after a failed path build: a server may send an expired
    cross-signed certificate it does not need, and the chain still verifies.
    """
    leaf = chain[0]
    intermediates = _distinct_intermediates(leaf, chain[1:])
    if trust.store is None:
        dates = _date_problem([leaf, *intermediates], now)
        return dates or (
            VerifyError.UNTRUSTED,
            f"no trust anchors could be loaded ({trust.source})",
        )
    sans = _sans(leaf)
    if not sans:
        return VerifyError.INVALID, "certificate has no subjectAltName"
    builder = (
        PolicyBuilder()
        .store(trust.store)
        .time(now)
        .max_chain_depth(_MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_leaf_policy()
        )
    )
    own_name = _name_in_leaf(sans) or servername
    try:
        builder.build_server_verifier(_verify_subject(own_name)).verify(leaf, intermediates)
    except VerificationError as exc:
        return _why_untrusted(leaf, intermediates, trust, now, str(exc))
    except (ValueError, TypeError) as exc:
        return VerifyError.INVALID, str(exc)
    try:
        builder.build_server_verifier(_verify_subject(servername)).verify(leaf, intermediates)
    except (VerificationError, ValueError, TypeError):
        return VerifyError.HOSTNAME_MISMATCH, f"certificate is not valid for {servername}"
    return None, ""


def _why_untrusted(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    trust: TrustStore,
    now: datetime,
    detail: str,
) -> tuple[VerifyError, str]:
    dates = _date_problem([leaf, *intermediates], now)
    if dates is not None:
        return dates
    if leaf.issuer == leaf.subject and leaf.issuer.public_bytes() not in trust.subjects:
        return VerifyError.SELF_SIGNED, "self-signed certificate"
    if not any(_is_ca(c) for c in intermediates) and (
        leaf.issuer.public_bytes() not in trust.subjects
    ):
        # Only the leaf was sent and no anchor issued it: the intermediate is missing.
        return VerifyError.INCOMPLETE_CHAIN, f"issuer not sent and not trusted: {detail}"
    return VerifyError.UNTRUSTED, detail


#: Chains whose analysis each trust store keeps.
_ANALYSES_KEPT = 2048
#: The longest an analysis is reused, even while every date still holds.
_REUSE = timedelta(hours=1)


def analyze(
    ders: Sequence[bytes],
    servername: str,
    trust: TrustStore,
    now: datetime | None = None,
) -> CertificateInfo | None:
    """Facts about the leaf and chain, and whether it verifies for `servername`.

    Returns None when no certificate was sent; raises ValueError when the leaf cannot
    be parsed at all. The same chain, name and store give the same facts while every
    certificate sent stays within its dates, so that analysis is reused (up to `_REUSE`).
    """
    if not ders:
        return None
    now = now or datetime.now(UTC)
    key = _analysis_key(ders[:_MAX_KEPT], servername)
    kept = trust.analyses.get(key)
    if kept is not None and kept.since <= now < kept.until:
        trust.analyses.move_to_end(key)
        return kept.info
    info, parsed = _analyze(ders, servername, trust, now)
    since = max(c.not_valid_before_utc for c in parsed)
    until = min(min(c.not_valid_after_utc for c in parsed), now + _REUSE)
    if since <= now < until:
        trust.analyses[key] = _Analysis(info, since, until)
        trust.analyses.move_to_end(key)
        if len(trust.analyses) > _ANALYSES_KEPT:
            trust.analyses.popitem(last=False)
    return info


def _analysis_key(ders: Sequence[bytes], servername: str) -> bytes:
    digest = hashlib.sha256(servername.encode("utf-8", "replace") + b"\0")
    for der in ders:
        digest.update(len(der).to_bytes(4, "big"))
        digest.update(der)
    return digest.digest()


def _analyze(
    ders: Sequence[bytes], servername: str, trust: TrustStore, now: datetime
) -> tuple[CertificateInfo, list[x509.Certificate]]:
    parsed: list[x509.Certificate] = []
    for der in ders[:_MAX_KEPT]:
        try:
            parsed.append(x509.load_der_x509_certificate(der))
        except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
            if not parsed:
                raise ValueError(f"the server's certificate could not be parsed: {exc}") from None
            break
    leaf = parsed[0]
    key_type, key_bits = _key_facts(leaf)
    try:
        verify_error, detail = _verify(parsed, servername, trust, now)
    except Exception as exc:  # the verifier is strict; never let a certificate end a probe
        verify_error, detail = VerifyError.INVALID, f"{type(exc).__name__}: {exc}"
    info = CertificateInfo(
        subject=_subject(leaf),
        issuer=_issuer(leaf),
        serial=format(leaf.serial_number, "x"),
        sans=_sans(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        key_type=key_type,
        key_bits=key_bits,
        signature_algorithm=_signature_algorithm(leaf),
        fingerprint_sha256=fingerprint(ders[0]),
        chain=tuple(summarize(der, c) for der, c in zip(ders, parsed, strict=False)),
        verified=verify_error is None,
        verify_error=verify_error,
        verify_detail=detail[:512],
    )
    return info, parsed

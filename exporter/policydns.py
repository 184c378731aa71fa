"""The DNS side of mail transport policy: the `_mta-sts` and `_smtp._tls` TXT records (RFC
8461, 8460), the TLSA records of MX hosts with their DNSSEC status (DANE, RFC 7672), and
whether a domain's MX answer is signed.

DNSSEC is judged by the resolver's AD bit, and only a resolver named in `dns.servers` is
believed: the system's resolv.conf usually names a resolver across a network the AD bit
crosses unprotected, or one that does not validate, so through it records are `unknown`,
never `secure`. Whoever runs a validating resolver of their own names it in `dns.servers`.
A SERVFAIL from a trusted resolver is told apart: bogus when its extended error (RFC 8914)
names a DNSSEC failure, or when, without one, the same query answers with checking disabled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Generic, TypeVar

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from exporter import dane, mtasts, mx, tlsrpt
from exporter.mx import DnsFailure, MxStatus

#: TXT records kept from one name: more is no policy, but an attack on the look-up.
MAX_TXT_RECORDS: Final = 64
#: Extended DNS errors (RFC 8914) that say validation failed: 6 DNSSEC Bogus, 7 Signature
#: Expired, 8 Signature Not Yet Valid, 9 DNSKEY Missing, 10 RRSIGs Missing, 11 No Zone Key
#: Bit Set, 12 NSEC Missing. 1 and 2 (algorithms unsupported) make a zone insecure instead.
_BOGUS_EDE: Final = frozenset(range(6, 13))
#: Characters kept of a resolver's explanation of an extended error.
_EDE_TEXT: Final = 200


class RecordStatus(StrEnum):
    """A policy TXT record as looked up; the values are label values."""

    VALID = "valid"
    ABSENT = "absent"
    """No record: the name or its TXT records do not exist, or none has the version tag."""
    INVALID = "invalid"
    """A record with the version tag that senders cannot use (they act as if there were none)."""
    DNS_FAILURE = "dns_failure"
    """The DNS did not answer (SERVFAIL, timeout, ...): `failure` says how."""


R = TypeVar("R", mtasts.StsRecord, tlsrpt.TlsRptRecord)


@dataclass(frozen=True, slots=True)
class RecordLookup(Generic[R]):
    """A domain's `_mta-sts` or `_smtp._tls` record: the parsed record when valid, what is
    wrong with it, or the DNS failure."""

    domain: str
    status: RecordStatus
    record: R | None = None
    failure: MxStatus | None = None
    detail: str = ""


class DnssecStatus(StrEnum):
    """What DNSSEC says of an answer; the values are label values."""

    SECURE = "secure"
    INSECURE = "insecure"
    """Answered, not signed (or not signed all the way from the trust anchor)."""
    BOGUS = "bogus"
    """Signed, but validation fails: a validating resolver answers SERVFAIL."""
    UNKNOWN = "unknown"
    """Answered by the system's resolver, whose AD bit is not believed."""
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class DnssecLookup:
    """Whether a domain's MX answer (records, or their absence) is signed."""

    domain: str
    status: DnssecStatus
    failure: MxStatus | None = None
    detail: str = ""


class TlsaStatus(StrEnum):
    """An MX host's TLSA look-up; the values are label values."""

    SECURE = "secure"
    """Records found and validated, the host's addresses too: DANE applies."""
    INSECURE = "insecure"
    """Records found, not signed: DANE does not apply (RFC 7672 2.2)."""
    BOGUS = "bogus"
    NO_RECORDS = "no_records"
    UNKNOWN = "unknown"
    """Records found through the system's resolver: whether they are signed is not known."""
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class TlsaLookup:
    """The TLSA records of one MX host and port, and whether DANE applies to them."""

    host: str
    port: int
    status: TlsaStatus
    records: tuple[dane.Tlsa, ...] = ()
    base_domain: str = ""
    """Where the records are: the host, or the name its CNAMEs lead to (RFC 7672 2.2.2)."""
    validated: bool = False
    """A trusted resolver proved the answer, records or their absence, by DNSSEC."""
    failure: MxStatus | None = None
    detail: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """The names a DANE-TA leaf may carry: the base domain, then the MX host (3.2.2)."""
        return tuple(dict.fromkeys(n for n in (self.base_domain, self.host) if n))

    @property
    def dane_applies(self) -> bool:
        """Senders authenticate the host by these records: secure, with a usable one."""
        return self.status is TlsaStatus.SECURE and any(r.usable for r in self.records)


def trusted(resolver: mx.Resolver) -> bool:
    """Whether the resolver's AD bit is believed: only for servers the user named."""
    return bool(resolver.servers)


def _ad(message: dns.message.Message | None) -> bool:
    return message is not None and bool(message.flags & dns.flags.AD)


async def txt(name: str, resolver: mx.Resolver) -> list[str]:
    """The TXT records at `name`, each record's strings joined without a space (RFC 8461
    3.1, RFC 8460 3), at most MAX_TXT_RECORDS; empty when the name or its TXT records do not
    exist. DnsFailure for a DNS that does not answer."""
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise DnsFailure(MxStatus.ERROR, f"{name!r} is not a DNS name ({exc})") from exc
    try:
        answer = await resolver.query(qname, dns.rdatatype.TXT)
    except DnsFailure as failure:
        if failure.status is MxStatus.NXDOMAIN:
            return []
        raise
    if answer.rrset is None:
        return []
    # Bytes outside ASCII are no part of either record: replaced, they fail its parser.
    texts = sorted(b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset)
    return texts[:MAX_TXT_RECORDS]


async def mta_sts_record(domain: str, resolver: mx.Resolver) -> RecordLookup[mtasts.StsRecord]:
    """The domain's `_mta-sts` record (RFC 8461 3.1)."""
    return await _record(domain, "_mta-sts", mtasts.parse_record, resolver)


async def tlsrpt_record(domain: str, resolver: mx.Resolver) -> RecordLookup[tlsrpt.TlsRptRecord]:
    """The domain's `_smtp._tls` record (RFC 8460 3)."""
    return await _record(domain, "_smtp._tls", tlsrpt.parse_record, resolver)


async def _record(
    domain: str,
    prefix: str,
    parse: Callable[[list[str]], R | None],
    resolver: mx.Resolver,
) -> RecordLookup[R]:
    name, qname, problem = mx.domain_name(domain)
    if qname is None:
        detail = f"{domain!r} {problem}"
        return RecordLookup(domain, RecordStatus.DNS_FAILURE, None, MxStatus.ERROR, detail)
    where = f"{prefix}.{name}"
    try:
        texts = await txt(where, resolver)
    except DnsFailure as failure:
        return RecordLookup(name, RecordStatus.DNS_FAILURE, None, failure.status, failure.detail)
    try:
        record = parse(texts)
    except ValueError as exc:  # each parser's RecordInvalid
        return RecordLookup(name, RecordStatus.INVALID, detail=f"{where}: {exc}")
    if record is None:
        return RecordLookup(name, RecordStatus.ABSENT, detail=f"no record at {where}")
    return RecordLookup(name, RecordStatus.VALID, record)


async def dnssec_secure(domain: str, resolver: mx.Resolver) -> DnssecLookup:
    """Whether the domain's MX answer is secure: its records, or their proven absence."""
    name, qname, problem = mx.domain_name(domain)
    if qname is None:
        return DnssecLookup(domain, DnssecStatus.ERROR, MxStatus.ERROR, f"{domain!r} {problem}")
    try:
        answer = await resolver.query(qname, dns.rdatatype.MX, dnssec=True)
    except DnsFailure as failure:
        if failure.status is MxStatus.NXDOMAIN:
            status = _answered(resolver, failure.response)
            return DnssecLookup(name, status, detail=f"{failure.detail}; {_says(status)}")
        status, detail = await _failed(failure, qname, dns.rdatatype.MX, resolver)
        return DnssecLookup(name, status, failure.status, detail)
    status = _answered(resolver, answer.response)
    return DnssecLookup(name, status, detail=f"MX of {name}: {_says(status)}")


def _answered(resolver: mx.Resolver, response: dns.message.Message | None) -> DnssecStatus:
    if not trusted(resolver):
        return DnssecStatus.UNKNOWN
    return DnssecStatus.SECURE if _ad(response) else DnssecStatus.INSECURE


def _says(status: DnssecStatus) -> str:
    if status is DnssecStatus.UNKNOWN:
        return "not validated (the system's resolver; name a validating one in dns.servers)"
    return "signed and validated" if status is DnssecStatus.SECURE else "not signed"


async def _failed(
    failure: DnsFailure,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    resolver: mx.Resolver,
) -> tuple[DnssecStatus, str]:
    """BOGUS when a trusted resolver's SERVFAIL is a failed validation, else ERROR."""
    if failure.status is not MxStatus.SERVFAIL or not trusted(resolver):
        return DnssecStatus.ERROR, failure.detail
    errors = failure.response.extended_errors() if failure.response is not None else []
    if errors:
        said = "; ".join(_ede_text(e) for e in errors[:4])
        if any(e.code in _BOGUS_EDE for e in errors):
            return DnssecStatus.BOGUS, f"{failure.detail}: DNSSEC validation failed ({said})"
        return DnssecStatus.ERROR, f"{failure.detail} ({said})"
    try:
        await resolver.query(qname, rdtype, dnssec=True, checking_disabled=True)
    except DnsFailure as unchecked:
        if unchecked.status is not MxStatus.NXDOMAIN:
            return DnssecStatus.ERROR, failure.detail
    detail = f"{failure.detail}, answered with checking disabled: DNSSEC validation failed"
    return DnssecStatus.BOGUS, detail


def _ede_text(option: dns.edns.EDEOption) -> str:
    """`dnssec bogus: <the resolver's words, cut short>`."""
    try:
        name = dns.edns.EDECode(option.code).name.replace("_", " ").lower()
    except ValueError:
        name = f"extended error {option.code}"
    return f"{name}: {option.text[:_EDE_TEXT]}" if option.text else name


async def tlsa(mx_host: str, port: int, resolver: mx.Resolver) -> TlsaLookup:
    """The TLSA records of `_<port>._tcp.<mx_host>` as a DANE sender finds them.

    The host's address records come first: a sender looks for TLSA records only where they
    are secure, and then first at the name its CNAMEs lead to, then at the host itself (RFC
    7672 2.2.2). Behind insecure address records the host's own name is still looked at, and
    what is found there reported as insecure, so TLSA records published unsigned are seen."""
    host, qname, problem = mx.domain_name(mx_host)
    if qname is None:
        detail = f"{mx_host!r} {problem}"
        return TlsaLookup(mx_host, port, TlsaStatus.ERROR, failure=MxStatus.ERROR, detail=detail)
    try:
        address = await resolver.query(qname, dns.rdatatype.A, dnssec=True)
    except DnsFailure as failure:
        if failure.status is MxStatus.NXDOMAIN:
            validated = trusted(resolver) and _ad(failure.response)
            detail = "the MX host does not exist (NXDOMAIN)"
            return TlsaLookup(host, port, TlsaStatus.NO_RECORDS, validated=validated, detail=detail)
        return await _tlsa_failed(host, port, failure, qname, dns.rdatatype.A, resolver)
    secure_host = trusted(resolver) and _ad(address.response)
    bases = [address.canonical_name, qname] if secure_host else [qname]
    return await _tlsa_at(host, port, tuple(dict.fromkeys(bases)), secure_host, resolver)


async def _tlsa_at(
    host: str,
    port: int,
    bases: tuple[dns.name.Name, ...],
    secure_host: bool,
    resolver: mx.Resolver,
) -> TlsaLookup:
    """The first of `bases` with TLSA records, or none."""
    proven = trusted(resolver)
    for base in bases:
        qname = dns.name.Name((f"_{port}".encode(), b"_tcp")).concatenate(base)
        try:
            answer = await resolver.query(qname, dns.rdatatype.TLSA, dnssec=True)
        except DnsFailure as failure:
            if failure.status is not MxStatus.NXDOMAIN:
                return await _tlsa_failed(host, port, failure, qname, dns.rdatatype.TLSA, resolver)
            proven = proven and _ad(failure.response)
            continue
        if answer.rrset is None:
            proven = proven and _ad(answer.response)
            continue
        return _found(host, port, base, answer, secure_host, resolver)
    where = " or ".join(f"_{port}._tcp.{b.to_text(omit_final_dot=True)}" for b in bases)
    detail = f"no TLSA records at {where}"
    return TlsaLookup(host, port, TlsaStatus.NO_RECORDS, validated=proven, detail=detail)


def _found(
    host: str,
    port: int,
    base: dns.name.Name,
    answer: dns.resolver.Answer,
    secure_host: bool,
    resolver: mx.Resolver,
) -> TlsaLookup:
    assert answer.rrset is not None
    records = tuple(
        dane.Tlsa(r.usage, r.selector, r.mtype, r.cert)
        for r in sorted(answer.rrset, key=lambda r: (r.usage, r.selector, r.mtype, r.cert))
    )[: dane.MAX_RECORDS]
    base_text = base.to_text(omit_final_dot=True).lower()
    where = f"_{port}._tcp.{base_text}"
    signed = trusted(resolver) and _ad(answer.response)
    if not trusted(resolver):
        status = TlsaStatus.UNKNOWN
        detail = f"{where}: {_says(DnssecStatus.UNKNOWN)}"
    elif signed and secure_host:
        status, detail = TlsaStatus.SECURE, f"{where}: signed and validated"
    elif signed:
        status = TlsaStatus.INSECURE
        detail = f"{where}: the MX host's address records are not signed, so DANE does not apply"
    else:
        status = TlsaStatus.INSECURE
        detail = f"{where}: not signed, so DANE does not apply (RFC 7672 2.2)"
    return TlsaLookup(host, port, status, records, base_text, signed, detail=detail)


async def _tlsa_failed(
    host: str,
    port: int,
    failure: DnsFailure,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    resolver: mx.Resolver,
) -> TlsaLookup:
    status, detail = await _failed(failure, qname, rdtype, resolver)
    kind = TlsaStatus.BOGUS if status is DnssecStatus.BOGUS else TlsaStatus.ERROR
    return TlsaLookup(host, port, kind, failure=failure.status, detail=detail)

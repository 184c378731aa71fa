"""A mail domain's transport policies, looked up with its MX records every interval:
MTA-STS (record and policy), TLS-RPT, whether DNSSEC signs the domain, and each MX host's
TLSA records. What senders will do with the domain's mail depends on all of them together.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from exporter import mtasts, mx, policydns, tlsrpt
from exporter.mtasts import Policy, Result
from exporter.mtastsfetch import PolicyFetch, fetch_policy
from exporter.policydns import (
    DnssecLookup,
    RecordLookup,
    RecordStatus,
    TlsaLookup,
)
from exporter.target import DaneExpectation

#: Seconds a policy fetch may take, connection and body.
_FETCH_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class DomainPolicy:
    """What a domain publishes about TLS to it, as senders find it."""

    sts_record: RecordLookup[mtasts.StsRecord]
    #: The policy fetched, where a valid record says there is one.
    sts_fetch: PolicyFetch | None
    #: The policy changed while the record's `id` did not: senders keep the old one.
    sts_changed_without_id: bool
    #: The record id and policy the current id was first seen with.
    sts_baseline: tuple[str, Policy] | None
    tlsrpt: RecordLookup[tlsrpt.TlsRptRecord]
    dnssec: DnssecLookup
    #: Each MX host's TLSA look-up, by host name.
    tlsa: tuple[tuple[str, TlsaLookup], ...]

    @property
    def policy(self) -> Policy | None:
        """The valid MTA-STS policy senders use, if any."""
        return None if self.sts_fetch is None else self.sts_fetch.policy

    def dane_for(self, host: str) -> DaneExpectation | None:
        """The TLSA records senders check `host` against, where DANE applies to it."""
        lookup = dict(self.tlsa).get(host)
        if lookup is None or not lookup.dane_applies:
            return None
        records = tuple((r.usage, r.selector, r.matching, r.data) for r in lookup.records)
        return DaneExpectation(records, lookup.names)


async def look_up(
    domain: str,
    hosts: tuple[str, ...],
    port: int,
    resolver: mx.Resolver,
    *,
    ca_file: str | None,
    previous: DomainPolicy | None,
) -> DomainPolicy:
    """Every policy of `domain` and its MX `hosts` (on `port`), all at once."""
    sts, rpt, signed, tlsa = await asyncio.gather(
        policydns.mta_sts_record(domain, resolver),
        policydns.tlsrpt_record(domain, resolver),
        policydns.dnssec_secure(domain, resolver),
        asyncio.gather(*(policydns.tlsa(host, port, resolver) for host in hosts)),
    )
    fetched = None
    if sts.status is RecordStatus.VALID:
        fetched = await _fetch(domain, resolver, ca_file)
    baseline, changed = _baseline(sts, fetched, previous)
    return DomainPolicy(
        sts_record=sts,
        sts_fetch=fetched,
        sts_changed_without_id=changed,
        sts_baseline=baseline,
        tlsrpt=rpt,
        dnssec=signed,
        tlsa=tuple(zip(hosts, tlsa, strict=True)),
    )


async def _fetch(domain: str, resolver: mx.Resolver, ca_file: str | None) -> PolicyFetch:
    """The policy from `mta-sts.<domain>`, whose addresses come from the same DNS."""
    host = f"mta-sts.{domain}"
    addresses: tuple[str, ...] = ()
    with contextlib.suppress(mx.DnsFailure):
        addresses = await mx.addresses(host, resolver)
    if not addresses:
        return PolicyFetch(Result.FETCH_ERROR, detail=f"{host} has no address")
    return await fetch_policy(domain, addresses, ca_file=ca_file, timeout=_FETCH_TIMEOUT)


def _baseline(
    sts: RecordLookup[mtasts.StsRecord], fetched: PolicyFetch | None, previous: DomainPolicy | None
) -> tuple[tuple[str, Policy] | None, bool]:
    """The (id, policy) first seen with the current id, and whether the policy changed
    since without a new id (RFC 8461 3.1: senders refetch only when the id changes)."""
    record, policy = sts.record, None if fetched is None else fetched.policy
    if record is None or policy is None:
        return (previous.sts_baseline if previous else None), False
    old = previous.sts_baseline if previous else None
    if old is None or old[0] != record.id:
        return (record.id, policy), False
    return old, old[1] != policy

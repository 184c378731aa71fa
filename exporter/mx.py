"""MX look-ups for mail domains: the hosts a sender delivers a domain's mail to.

The rules senders follow decide the answer: MX records in order of preference; no MX at all
means the domain's own address (RFC 5321 5.1); a single MX "." means the domain accepts no
mail (null MX, RFC 7505). DNS failures stay apart (NXDOMAIN, SERVFAIL, timeout), because
each points at a different fix. Every look-up asks the DNS anew: no cache, so a changed MX
is seen at the next round.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset

from exporter import names

#: MX hosts kept per domain, the most preferred first; a domain naming more is cut short.
MAX_HOSTS: Final = 64
#: Addresses kept per host name (both families together).
MAX_ADDRESSES: Final = 64
#: Seconds a whole look-up (one query, every server and retry) may take by default.
DEFAULT_TIMEOUT: Final = 5.0
#: Seconds one server gets at most before the next is tried (or the same one again).
_TRY_TIMEOUT: Final = 2.0
#: EDNS buffer size (the DNS Flag Day 2020 value): large MX sets need no TCP retry.
_EDNS_PAYLOAD: Final = 1232


class MxStatus(StrEnum):
    """What the look-up found; the values are label values."""

    OK = "ok"
    NULL_MX = "null_mx"
    """The domain publishes a null MX: it accepts no mail (RFC 7505)."""
    NO_MX = "no_mx"
    """No MX records: mail goes to the domain's own address (RFC 5321 5.1)."""
    NO_MAIL_HOST = "no_mail_host"
    """Neither MX nor A/AAAA records: nothing receives the domain's mail."""
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"
    ERROR = "error"


#: The statuses of a look-up that got an answer from the DNS.
_ANSWERED: Final = frozenset({MxStatus.OK, MxStatus.NULL_MX, MxStatus.NO_MX, MxStatus.NO_MAIL_HOST})


@dataclass(frozen=True, slots=True)
class MxHost:
    """One host that receives the domain's mail: a lowercase A-label name, no final dot."""

    name: str
    preference: int
    note: str = ""
    """What a mail administrator should know about this MX record, e.g. it names a CNAME."""


@dataclass(frozen=True, slots=True)
class MxLookup:
    """A domain's MX look-up: its status, the hosts to probe and what is wrong with the
    records (`problems`: records that name no host that can be probed)."""

    domain: str
    status: MxStatus
    hosts: tuple[MxHost, ...] = ()
    detail: str = ""
    problems: tuple[str, ...] = ()

    @property
    def answered(self) -> bool:
        """True when the DNS answered, also with "no MX" or a null MX."""
        return self.status in _ANSWERED


class DnsFailure(Exception):
    """A query the DNS did not answer, classified like a look-up's status; `response` is the
    server's NXDOMAIN or SERVFAIL message where there was one (its AD bit and extended
    errors say more about DNSSEC)."""

    def __init__(
        self, status: MxStatus, detail: str, response: dns.message.Message | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.response = response


def parse_server(text: str) -> tuple[str, int]:
    """(address, port) from `IP`, `IP:PORT` or `[IPv6]:PORT`; ValueError names the problem.

    Only addresses: a resolver given by name would need a resolver to find it."""
    host, port = names.split_host_port(text.strip())
    if not names.is_ip_address(host):
        raise ValueError(f"DNS server {text!r} is not an IP address (with an optional :PORT)")
    return host, 53 if port is None else names.parse_port(port)


class Resolver:
    """The DNS servers look-ups ask: the system's (from /etc/resolv.conf), or `servers`.

    `timeout` bounds one query, every server and retry included. The system's configuration
    is read once, at the first query, so a missing one fails look-ups rather than the start.
    """

    __slots__ = ("_resolvers", "servers", "timeout")

    def __init__(self, servers: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT) -> None:
        if timeout <= 0:
            raise ValueError(f"DNS timeout must be positive, got {timeout}")
        self.servers: tuple[tuple[str, int], ...] = tuple(parse_server(s) for s in servers)
        self.timeout = timeout
        self._resolvers: dict[int, dns.asyncresolver.Resolver] = {}

    def _dnspython(self, flags: int = 0) -> dns.asyncresolver.Resolver:
        """The dnspython resolver for queries with these header `flags` (AD, CD) besides RD;
        with AD or CD the DO bit is set too, so the server validates and says so."""
        resolver = self._resolvers.get(flags)
        if resolver is None:
            resolver = dns.asyncresolver.Resolver(configure=not self.servers)
            if self.servers:
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(address, port) for address, port in self.servers
                ]
            resolver.lifetime = self.timeout
            # every server gets its turn within the timeout, even when the first never answers
            share = self.timeout / max(1, len(resolver.nameservers))
            resolver.timeout = min(_TRY_TIMEOUT, share)
            resolver.use_edns(0, dns.flags.DO if flags else 0, _EDNS_PAYLOAD)
            if flags:
                resolver.flags = dns.flags.RD | flags
            self._resolvers[flags] = resolver
        return resolver

    def describe(self) -> str:
        """The servers asked, as `IP:PORT` text for details."""
        if self.servers:
            return ", ".join(names.format_address(host, port) for host, port in self.servers)
        return "the system's DNS servers"

    async def query(
        self,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        *,
        dnssec: bool = False,
        checking_disabled: bool = False,
    ) -> dns.resolver.Answer:
        """The answer (its `rrset` None when the name has no records of the type), or
        DnsFailure.

        `dnssec` asks the server to validate (DO and AD set): its answer's AD bit then says
        whether it found the records secure. `checking_disabled` (CD) asks for the records
        even where validation fails, which tells a bogus answer from a broken server."""
        what = f"{rdtype.name} of {name.to_text(omit_final_dot=True)}"
        flags = (dns.flags.AD if dnssec else 0) | (dns.flags.CD if checking_disabled else 0)
        try:
            return await self._dnspython(flags).resolve(
                name, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.exception.DNSException as exc:
            raise self._failure(exc, what) from exc
        except OSError as exc:  # e.g. no route to the server
            raise DnsFailure(MxStatus.ERROR, f"{what}: {exc.strerror or exc}") from exc

    def _failure(self, exc: dns.exception.DNSException, what: str) -> DnsFailure:
        if isinstance(exc, dns.resolver.NXDOMAIN):
            response = next(iter(exc.kwargs.get("responses", {}).values()), None)
            detail = f"{what}: the name does not exist (NXDOMAIN)"
            return DnsFailure(MxStatus.NXDOMAIN, detail, response)
        if isinstance(exc, dns.exception.Timeout):
            return DnsFailure(
                MxStatus.TIMEOUT,
                f"{what}: no answer within {self.timeout:g}s from {self.describe()}",
            )
        if isinstance(exc, dns.resolver.NoNameservers):
            return _no_nameservers(exc, what)
        if isinstance(exc, dns.resolver.NoResolverConfiguration):
            return DnsFailure(MxStatus.ERROR, f"{what}: no DNS server configured ({exc})")
        return DnsFailure(MxStatus.ERROR, f"{what}: {exc}")


def _no_nameservers(exc: dns.resolver.NoNameservers, what: str) -> DnsFailure:
    """Every server failed: SERVFAIL when one said so, else each server's own answer."""
    said: list[str] = []
    servfail: dns.message.Message | None = None
    for server, _tcp, port, error, response in exc.kwargs.get("errors", []):
        if response is not None:
            if servfail is None and response.rcode() == dns.rcode.SERVFAIL:
                servfail = response
            error = dns.rcode.to_text(response.rcode())
        said.append(f"{error} from {_server_address(server, port)}")
    text = "; ".join(dict.fromkeys(said)) or "no server answered"
    status = MxStatus.ERROR if servfail is None else MxStatus.SERVFAIL
    return DnsFailure(status, f"{what}: {text}", servfail)


def _server_address(server: str | None, port: int) -> str:
    """`IP:PORT` from dnspython's name for a server (`Do53:127.0.0.1@53`)."""
    address = (server or "?").partition(":")[2].rpartition("@")[0] or (server or "?")
    return names.format_address(address, port)


def domain_name(text: str) -> tuple[str, dns.name.Name | None, str | None]:
    """(lowercase A-label name without the final dot, DNS name, problem) from a domain as
    written, Unicode or A-labels; the problem says why it is no domain name."""
    name = text.strip().rstrip(".")
    if not name:
        return text, None, "is empty"
    if _address_literal(name):
        return text, None, "is an IP address, not a domain name"
    ascii_name, problem = names.to_a_labels(name)
    problem = problem or names.hostname_problem(ascii_name)
    if problem is not None:
        return text, None, problem
    ascii_name = ascii_name.lower()
    try:
        return ascii_name, dns.name.from_text(ascii_name), None
    except dns.exception.DNSException as exc:
        return text, None, f"is not a DNS name ({exc})"


def _address_literal(text: str) -> bool:
    """True for `192.0.2.1`, `[192.0.2.1]`, `2001:db8::1` or `[IPv6:2001:db8::1]`."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    return names.is_ip_address(inner)


async def lookup(domain: str, resolver: Resolver) -> MxLookup:
    """The hosts that receive `domain`'s mail, most preferred first, as senders find them."""
    name_text, name, problem = domain_name(domain)
    if name is None:
        return MxLookup(domain, MxStatus.ERROR, detail=f"{domain!r} {problem}")
    try:
        answer = await resolver.query(name, dns.rdatatype.MX)
    except DnsFailure as failure:
        return MxLookup(name_text, failure.status, detail=failure.detail)
    if answer.rrset is None:
        return await _without_mx(name_text, resolver)
    return await _from_records(name_text, answer.rrset, resolver)


async def _without_mx(domain: str, resolver: Resolver) -> MxLookup:
    """No MX records: the domain's own address receives its mail, if it has one."""
    try:
        own = await addresses(domain, resolver)
    except DnsFailure as failure:
        return MxLookup(domain, failure.status, detail=f"no MX records; {failure.detail}")
    if not own:
        detail = "no MX records and no A/AAAA records: nothing receives the domain's mail"
        return MxLookup(domain, MxStatus.NO_MAIL_HOST, detail=detail)
    note = "no MX records: the domain's own address receives its mail (RFC 5321 5.1)"
    return MxLookup(domain, MxStatus.NO_MX, hosts=(MxHost(domain, 0, note),), detail=note)


async def _from_records(domain: str, rrset: dns.rrset.RRset, resolver: Resolver) -> MxLookup:
    """The MX records as hosts: null MX, IP literals and bad names taken out, duplicates
    kept once at their lowest preference, at most MAX_HOSTS, each target checked."""
    records = sorted((int(r.preference), r.exchange) for r in rrset)
    if len(records) == 1 and records[0][1] == dns.name.root:
        preference = records[0][0]
        problems = () if preference == 0 else (f"null MX with preference {preference}, not 0",)
        detail = "null MX (RFC 7505): the domain accepts no mail"
        return MxLookup(domain, MxStatus.NULL_MX, detail=detail, problems=problems)
    best: dict[str, int] = {}
    problems_found: list[str] = []
    for preference, exchange in records:
        target = exchange.to_text(omit_final_dot=True).lower()
        problem = _target_problem(exchange, target)
        if problem is not None:
            problems_found.append(f"MX {preference} {target}: {problem}; not probed")
        elif target not in best:
            best[target] = preference
    kept = sorted(best.items(), key=lambda item: (item[1], item[0]))
    if len(kept) > MAX_HOSTS:
        problems_found.append(f"{len(kept)} MX hosts; only the {MAX_HOSTS} most preferred kept")
        kept = kept[:MAX_HOSTS]
    notes = await asyncio.gather(*(_target_note(target, resolver) for target, _ in kept))
    hosts = tuple(
        MxHost(target, preference, note)
        for (target, preference), note in zip(kept, notes, strict=True)
    )
    detail = "" if hosts else "no MX record names a host that can be probed"
    return MxLookup(domain, MxStatus.OK, hosts, detail, tuple(problems_found))


def _target_problem(exchange: dns.name.Name, target: str) -> str | None:
    """Why an MX target is no host to deliver to, or None."""
    if exchange == dns.name.root:
        return "a null MX among other MX records (RFC 7505 allows it only alone)"
    if _address_literal(target):
        return "an IP address, not a host name (RFC 5321 5.1); mail servers refuse such an MX"
    problem = names.hostname_problem(target)
    return None if problem is None else f"not a valid host name: {problem}"


async def _target_note(target: str, resolver: Resolver) -> str:
    """What the DNS says about an MX target that senders may trip over: a CNAME (RFC 5321
    5.1 forbids it, most senders follow it) or a name that does not exist."""
    try:
        answer = await resolver.query(dns.name.from_text(target), dns.rdatatype.CNAME)
    except DnsFailure as failure:
        if failure.status is MxStatus.NXDOMAIN:
            return "MX target does not exist (NXDOMAIN)"
        return ""  # the probe's own address look-up reports it
    if answer.rrset is None:
        return ""
    alias = next(iter(answer.rrset)).target.to_text(omit_final_dot=True).lower()
    return f"MX target is a CNAME to {alias} (RFC 5321 5.1 forbids it; most senders follow it)"


async def addresses(host: str, resolver: Resolver) -> tuple[str, ...]:
    """IPv6 then IPv4 addresses of `host` (an IP literal is its own address), each family
    sorted, at most MAX_ADDRESSES; empty when it has none. DnsFailure when neither family
    answered; when one did, its addresses are what there is to probe."""
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if names.is_ip_address(literal):
        return (literal,)
    _, name, problem = domain_name(host)
    if name is None:
        raise DnsFailure(MxStatus.ERROR, f"{host!r} {problem}")
    answers = await asyncio.gather(
        resolver.query(name, dns.rdatatype.AAAA),
        resolver.query(name, dns.rdatatype.A),
        return_exceptions=True,
    )
    found: list[str] = []
    failures: list[DnsFailure] = []
    for answer in answers:
        if isinstance(answer, DnsFailure):
            failures.append(answer)
        elif isinstance(answer, BaseException):
            raise answer
        elif answer.rrset is not None:
            found.extend(sorted({r.address for r in answer.rrset}, key=ipaddress.ip_address))
    if failures and not found:
        raise failures[0]
    return tuple(dict.fromkeys(found))[:MAX_ADDRESSES]

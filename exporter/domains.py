"""Mail domains at run time: their MX hosts, looked up every interval, become targets.

Each domain is looked up at a stable point of its interval (from a hash of its name, like
a target's probe), and once at once when it first appears. When a look-up changes the set
of hosts, the target list is applied again: a new host is probed at once, a host no domain
names any more loses its series. An MX host named by many domains (hosted mail) is one
target, probed once per round; a host also listed as a target of its own keeps that
target's settings. A look-up that fails (SERVFAIL, timeout) keeps the hosts found last, so
a DNS hiccup does not make series and alerts come and go; NXDOMAIN and a null MX are
answers, and leave the domain with no hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Final

from exporter import mx, policies
from exporter.clock import Clock, SystemClock
from exporter.results import ProbeResult
from exporter.store import DomainStatus, MxEntry, ResultStore
from exporter.target import DnsSettings, MailDomain, Target

log = logging.getLogger("exporter.domains")

#: Look-ups running at once: DNS answers fast, and resolvers rate-limit bursts.
_AT_ONCE: Final = 16
#: Statuses after which the hosts found last are kept: the DNS did not answer.
_KEEP_HOSTS: Final = frozenset({mx.MxStatus.SERVFAIL, mx.MxStatus.TIMEOUT, mx.MxStatus.ERROR})

ApplyTargets = Callable[[tuple[Target, ...]], None]


@dataclass(slots=True)
class _Domain:
    domain: MailDomain
    phase: float
    due: float
    status: DomainStatus
    #: Addresses of each host, where the configured DNS was asked for them.
    addresses: dict[str, tuple[str, ...]]


class DomainWatcher:
    """Keeps every domain's MX hosts current and the scheduler's targets with them."""

    def __init__(self, store: ResultStore, apply: ApplyTargets, clock: Clock | None = None) -> None:
        self._store = store
        self._apply = apply
        self._clock = clock or SystemClock()
        self._static: tuple[Target, ...] = ()
        self._domains: dict[str, _Domain] = {}
        self._resolver = mx.Resolver()
        self._resolve_hosts = False
        self._wake = asyncio.Event()
        self._applied: tuple[Target, ...] | None = None

    def configure(
        self, static: tuple[Target, ...], domains: tuple[MailDomain, ...], dns: DnsSettings
    ) -> None:
        """Take a (re)loaded config: hosts of unchanged domains are kept, new domains are
        looked up at once, and the targets are applied now."""
        now = self._clock.monotonic()
        resolver = mx.Resolver(dns.servers, dns.timeout)
        dns_changed = (resolver.servers, resolver.timeout) != (
            self._resolver.servers,
            self._resolver.timeout,
        )
        self._resolver = resolver
        self._resolve_hosts = bool(dns.servers)
        old = self._domains
        self._domains = {}
        for domain in domains:
            previous = old.get(domain.domain)
            if previous is not None and not dns_changed:
                previous.domain = domain
                previous.status = replace(previous.status, domain=domain)
                if previous.domain.template.interval != domain.template.interval:
                    previous.phase = _phase(domain.domain, domain.template.interval)
                    previous.due = now
                self._domains[domain.domain] = previous
                continue
            phase = _phase(domain.domain, domain.template.interval)
            status = DomainStatus(domain, None, None, ())
            self._domains[domain.domain] = _Domain(domain, phase, now, status, {})
        self._static = static
        self._publish()
        self._wake.set()

    def targets(self) -> tuple[Target, ...]:
        """The targets of the config and every domain's MX hosts, each name once."""
        found = list(self._static)
        taken = {target.name for target in found}
        for entry in self._domains.values():
            policy = entry.status.policy
            for host in entry.status.hosts:
                dane = None if policy is None else policy.dane_for(host.host)
                addresses = entry.addresses.get(host.host, ())
                target = entry.domain.target_for(host.host, addresses, dane)
                if target.name not in taken:
                    taken.add(target.name)
                    found.append(target)
        return tuple(found)

    async def run(self) -> None:
        """Look domains up when they are due, for as long as the exporter runs."""
        gate = asyncio.Semaphore(_AT_ONCE)
        while True:
            now = self._clock.monotonic()
            due = [entry for entry in self._domains.values() if entry.due <= now]
            if due:
                await asyncio.gather(*(self._refresh(entry, gate) for entry in due))
                self._publish()
                continue
            self._wake.clear()
            wait = min((entry.due for entry in self._domains.values()), default=None)
            timeout = None if wait is None else max(0.0, wait - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def lookup_all(self) -> None:
        """Look every domain up now, once (for `check` and tests)."""
        gate = asyncio.Semaphore(_AT_ONCE)
        await asyncio.gather(*(self._refresh(e, gate) for e in self._domains.values()))
        self._publish()

    async def _refresh(self, entry: _Domain, gate: asyncio.Semaphore) -> None:
        interval = entry.domain.template.interval
        async with gate:
            try:
                lookup = await mx.lookup(entry.domain.domain, self._resolver)
            except Exception as exc:  # a bug costs this look-up, reported, nothing more
                fields = {"domain": entry.domain.domain}
                log.exception("MX look-up failed", extra={"fields": fields})
                lookup = mx.MxLookup(entry.domain.domain, mx.MxStatus.ERROR, detail=repr(exc))
            hosts = entry.status.hosts
            if lookup.status not in _KEEP_HOSTS:
                hosts = tuple(MxEntry(h.name, h.preference, h.note) for h in lookup.hosts)
                if self._resolve_hosts:
                    entry.addresses = await self._addresses(hosts)
            policy = await self._policy(entry, hosts)
        now = self._clock.monotonic()
        entry.due = _next_due(now, entry.phase, interval)
        entry.status = DomainStatus(entry.domain, lookup, time.time(), hosts, policy)
        if not lookup.answered or lookup.problems:
            log.info(
                "MX look-up",
                extra={"fields": {"domain": entry.domain.domain, "status": lookup.status.value,
                                  "detail": lookup.detail, "problems": list(lookup.problems)}},
            )  # fmt: skip

    async def _policy(
        self, entry: _Domain, hosts: tuple[MxEntry, ...]
    ) -> policies.DomainPolicy | None:
        """The domain's transport policies; the last ones where a bug stopped the look-up."""
        template = entry.domain.template
        try:
            return await policies.look_up(
                entry.domain.domain,
                tuple(host.host for host in hosts),
                template.port,
                self._resolver,
                ca_file=template.ca_file,
                previous=entry.status.policy,
            )
        except Exception:  # a bug costs this look-up, reported, nothing more
            fields = {"domain": entry.domain.domain}
            log.exception("policy look-up failed", extra={"fields": fields})
            return entry.status.policy

    async def _addresses(self, hosts: tuple[MxEntry, ...]) -> dict[str, tuple[str, ...]]:
        """Each host's addresses from the configured DNS; none where it did not answer
        (the probe then looks the host up itself, and says what it found)."""
        found: dict[str, tuple[str, ...]] = {}
        for host in hosts:
            try:
                found[host.host] = await mx.addresses(host.host, self._resolver)
            except mx.DnsFailure:
                found[host.host] = ()
        return found

    def _publish(self) -> None:
        """Hand the domains' state to the store and the targets to the scheduler."""
        self._store.set_domains(tuple(entry.status for entry in self._domains.values()))
        targets = self.targets()
        if targets != self._applied:
            self._applied = targets
            self._apply(targets)


def _phase(name: str, interval: float) -> float:
    """Where in its interval a domain is looked up: stable, from its name."""
    return (zlib.crc32(name.encode()) / 2**32) * interval


def _next_due(now: float, phase: float, interval: float) -> float:
    """The next point at `phase` within the interval after `now`."""
    base = now - (now % interval) + phase
    return base if base > now else base + interval


@dataclass(frozen=True, slots=True)
class DomainCheck:
    """One domain checked once (`check --domain`): its look-up, and each MX host's target
    with the result of probing it."""

    lookup: mx.MxLookup
    hosts: tuple[tuple[mx.MxHost, Target, ProbeResult], ...]

    @property
    def success(self) -> bool:
        """The look-up answered and every MX host's probe succeeded."""
        return self.lookup.answered and all(result.success for _, _, result in self.hosts)


async def check_domain(
    domain: MailDomain, dns: DnsSettings, probe: Callable[[Target], Awaitable[ProbeResult]]
) -> DomainCheck:
    """Look `domain` up and probe each of its MX hosts once, all at once."""
    resolver = mx.Resolver(dns.servers, dns.timeout)
    lookup = await mx.lookup(domain.domain, resolver)
    targets = []
    for host in lookup.hosts:
        addresses: tuple[str, ...] = ()
        if dns.servers:
            with contextlib.suppress(mx.DnsFailure):
                addresses = await mx.addresses(host.name, resolver)
        targets.append(domain.target_for(host.name, addresses))
    results = await asyncio.gather(*(probe(target) for target in targets))
    return DomainCheck(lookup, tuple(zip(lookup.hosts, targets, results, strict=True)))


async def is_mail_domain(name: str, dns: DnsSettings) -> bool:
    """Whether `name`, given as a server, is rather a mail domain: it has no address of its
    own but MX records naming hosts (`check example.org` for `check --domain example.org`)."""
    resolver = mx.Resolver(dns.servers, dns.timeout)
    try:
        if await mx.addresses(name, resolver):
            return False
    except mx.DnsFailure as failure:
        if failure.status in _KEEP_HOSTS:
            return False  # the DNS did not answer: probe the name as given
    lookup = await mx.lookup(name, resolver)
    return lookup.status is mx.MxStatus.OK and bool(lookup.hosts)


async def host_addresses(target: Target, dns: DnsSettings) -> tuple[str, ...]:
    """The target's addresses from the configured name servers; none where they did not
    answer (the probe then looks the host up itself and says what it found)."""
    with contextlib.suppress(mx.DnsFailure):
        return await mx.addresses(target.host, mx.Resolver(dns.servers, dns.timeout))
    return ()

"""Who may be probed through /probe: the rules of `on_demand.allow`, and the addresses a
name may not lead to unless they are allowed themselves.

/probe makes the exporter connect where a request says, so nothing is admitted unless a rule
says so. A name rule admits a name; the addresses it resolves to are checked too, because a
name its owner controls can point anywhere (DNS rebinding): loopback, private, link-local,
metadata and other internal addresses are refused unless an address rule admits them. Pure:
no DNS, no sockets; the caller resolves and connects to exactly the addresses checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from exporter import defaults
from exporter.names import is_ip_address, parse_host
from exporter.target import Target

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Addresses that lead inside: to this machine, its network, or a cloud's metadata service.
#: The most specific first; each with the word a refusal uses for it.
SPECIAL: Final[tuple[tuple[Network, str], ...]] = tuple(
    (ipaddress.ip_network(network), kind)
    for network, kind in (
        ("169.254.169.254/32", "cloud metadata"),
        ("fd00:ec2::254/128", "cloud metadata"),
        ("100.100.100.200/32", "cloud metadata"),
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "private (unique local)"),
        ("fec0::/10", "private (site-local)"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
        ("64:ff9b:1::/48", "private (local NAT64)"),
        ("::/8", "reserved"),
    )
)
#: IPv6 prefixes that carry an IPv4 address, which is where the packets end up.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class Special:
    """Why an address is special: its kind and the range it lies in (a rule admits it only
    from within that range)."""

    kind: str
    network: Network


def plain_address(text: str) -> Address:
    """The address, an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) as its IPv4 address:
    connecting to one reaches the other."""
    address = ipaddress.ip_address(text.strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def special(address: Address) -> Special | None:
    """Whether `address` leads inside, and why; None for an ordinary public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = special(embedded)
            if inner is None:
                return None  # a public IPv4 address, reached through NAT64 or 6to4
            # Only a rule naming this very address admits it.
            return Special(f"{inner.kind}, embedded", ipaddress.ip_network(address))
    for network, kind in SPECIAL:
        if address.version == network.version and address in network:
            return Special(kind, network)
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address stands for."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True, slots=True)
class AllowRule:
    """One entry of `on_demand.allow`: a host name (`mx.example.org`), every name under a
    domain (`*.example.org`: one or more labels before it, not the domain itself), or an IP
    address or network (`192.0.2.0/24`, `2001:db8::/32`)."""

    text: str
    #: The name (exact), or the domain under which every name is admitted (wildcard).
    name: str = ""
    wildcard: bool = False
    network: Network | None = None

    def admits_name(self, host: str) -> bool:
        if self.network is not None:
            return False
        return host.endswith("." + self.name) if self.wildcard else host == self.name


def normal_name(host: str) -> str:
    """A host name as rules compare it: lowercase A-labels, no final dot."""
    return host.rstrip(".").lower()


def parse_rule(text: str) -> AllowRule:
    """A rule from its text; ValueError says what is wrong, as `'text' is ...`."""
    written = text.strip()
    if not written:
        raise ValueError("must not be empty")
    if "/" in written and "://" not in written:
        return AllowRule(written, network=_network(written))
    if written.startswith("*."):
        domain = _name(written, written[2:])
        return AllowRule(written, name=domain, wildcard=True)
    if "*" in written:
        raise ValueError(
            f"{written!r}: a wildcard is '*.' before a domain, as in '*.example.org'"
            " (every name under example.org)"
        )
    host, problem = parse_host(written.rstrip("."), unicode=True)
    if problem is not None:
        raise ValueError(f"{written!r} {_without_port(problem)}")
    if is_ip_address(host):
        return AllowRule(written, network=ipaddress.ip_network(plain_address(host)))
    return AllowRule(written, name=normal_name(host))


def _without_port(problem: str) -> str:
    """A host name's problem, worded for a rule: rules name hosts, never ports."""
    return "has a port; a rule admits a host on every port" if "port" in problem else problem


def _name(written: str, domain: str) -> str:
    """The domain of a wildcard rule: a name (`*.test` admits every name under test)."""
    host, problem = parse_host(domain.rstrip("."), unicode=True)
    if problem is None and is_ip_address(host):
        problem = "takes a domain after '*.', not an address (write a network: 192.0.2.0/24)"
    if problem is not None:
        raise ValueError(f"{written!r} {problem}")
    return normal_name(host)


def _network(written: str) -> Network:
    """A network in CIDR notation; an IPv4-mapped IPv6 network as its IPv4 network."""
    try:
        network = ipaddress.ip_network(written, strict=False)
    except ValueError:
        raise ValueError(
            f"{written!r} is not an IP network like 192.0.2.0/24 or 2001:db8::/32"
        ) from None
    try:
        ipaddress.ip_network(written)
    except ValueError:
        raise ValueError(
            f"{written!r} has bits set past its prefix; did you mean '{network}'?"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The rules of `on_demand.allow`; with none, nothing is admitted."""

    rules: tuple[AllowRule, ...] = ()

    @classmethod
    def of(cls, texts: Iterable[str]) -> AccessPolicy:
        return cls(tuple(parse_rule(text) for text in texts))

    def admits_name(self, host: str) -> bool:
        """Whether a name rule admits the host name `host` (before it is resolved)."""
        name = normal_name(host)
        return any(rule.admits_name(name) for rule in self.rules)

    def admits_address(self, text: str) -> bool:
        """Whether an address rule admits the address. A special address (see `SPECIAL`)
        only by a rule within its own range: `10.0.0.0/8` admits 10.1.2.3, `0.0.0.0/0`
        does not, and only the address itself admits a metadata address."""
        address = plain_address(text)
        inside = special(address)
        for rule in self.rules:
            network = rule.network
            if network is None or network.version != address.version or address not in network:
                continue
            if inside is None or network.subnet_of(inside.network):  # type: ignore[arg-type]
                return True
        return False

    def host_refusal(self, host: str) -> str | None:
        """Why `host` (a name or an IP address, as asked for) is refused, or None."""
        if is_ip_address(host.strip("[]")):
            if self.admits_address(host):
                return None
            return _refused_address(host, special(plain_address(host)))
        if self.admits_name(host):
            return None
        return f"{host} is not in on_demand.allow"

    def address_refusal(self, host: str, addresses: Iterable[str]) -> str | None:
        """Why the addresses an admitted name resolved to are refused, or None: every
        special address among them must be admitted by an address rule of its own."""
        for address in addresses:
            inside = special(plain_address(address))
            if inside is not None and not self.admits_address(address):
                return (
                    f"{host} resolves to {address} ({inside.kind}), which on_demand.allow"
                    " does not list"
                )
        return None


def _refused_address(host: str, inside: Special | None) -> str:
    if inside is None:
        return f"{host} is not in on_demand.allow"
    return f"{host} ({inside.kind}) is not in on_demand.allow"


@dataclass(frozen=True, slots=True)
class OnDemandSettings:
    """The config's `on_demand`: who may be probed, how often, how many at once; the probe's
    own settings (timeout, ehlo_name, ca_file, versions, connections, labels) are those of
    `defaults`, carried by `template`."""

    policy: AccessPolicy = field(default_factory=AccessPolicy)
    min_interval: float = defaults.DEFAULT_ON_DEMAND_MIN_INTERVAL
    max_concurrent: int = defaults.DEFAULT_ON_DEMAND_MAX_CONCURRENT
    template: Target = field(default_factory=lambda: Target(host="localhost"))

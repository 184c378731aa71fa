"""What to probe: one SMTP endpoint and how to talk to it, or a mail domain whose MX hosts
become such endpoints."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exporter import defaults
from exporter.names import format_address

if TYPE_CHECKING:  # the profiles' module needs this one's types at import time
    from exporter.senders import SenderProfile


class TLSMode(enum.Enum):
    """How TLS starts: after the SMTP STARTTLS command, or at once (port 465)."""

    STARTTLS = "starttls"
    IMPLICIT = "implicit"


class TLSVersion(enum.Enum):
    """Protocol versions the probe can test; the value is the `version` label."""

    SSL2 = "ssl2"
    SSL3 = "ssl3"
    TLS1_0 = "1.0"
    TLS1_1 = "1.1"
    TLS1_2 = "1.2"
    TLS1_3 = "1.3"

    @property
    def wire(self) -> int:
        """The two-byte protocol version on the wire."""
        return _WIRE[self]

    @property
    def display(self) -> str:
        """The name people know it by (`TLSv1.2`)."""
        return _DISPLAY[self]

    @classmethod
    def from_wire(cls, value: int) -> TLSVersion | None:
        for version, wire in _WIRE.items():
            if wire == value:
                return version
        return None


_WIRE = {
    TLSVersion.SSL2: 0x0002,
    TLSVersion.SSL3: 0x0300,
    TLSVersion.TLS1_0: 0x0301,
    TLSVersion.TLS1_1: 0x0302,
    TLSVersion.TLS1_2: 0x0303,
    TLSVersion.TLS1_3: 0x0304,
}
_DISPLAY = {
    TLSVersion.SSL2: "SSLv2",
    TLSVersion.SSL3: "SSLv3",
    TLSVersion.TLS1_0: "TLSv1.0",
    TLSVersion.TLS1_1: "TLSv1.1",
    TLSVersion.TLS1_2: "TLSv1.2",
    TLSVersion.TLS1_3: "TLSv1.3",
}

#: The versions `legacy_interval` tests less often: they change rarely, and are half the
#: connections of a probe.
LEGACY_VERSIONS: frozenset[TLSVersion] = frozenset(
    {TLSVersion.SSL2, TLSVersion.SSL3, TLSVersion.TLS1_0, TLSVersion.TLS1_1}
)

#: The versions tested when none are configured (SSLv2 only on request).
DEFAULT_VERSIONS: tuple[TLSVersion, ...] = (
    TLSVersion.SSL3,
    TLSVersion.TLS1_0,
    TLSVersion.TLS1_1,
    TLSVersion.TLS1_2,
    TLSVersion.TLS1_3,
)


@dataclass(frozen=True, slots=True)
class DaneExpectation:
    """TLSA records (usage, selector, matching type, data) a sender checks the host's
    chain against, and the names a DANE-TA leaf may carry (RFC 7672)."""

    records: tuple[tuple[int, int, int, bytes], ...]
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Target:
    """One SMTP endpoint with everything the probe and the scheduler need."""

    host: str
    port: int = defaults.DEFAULT_PORT
    tls: TLSMode = TLSMode.STARTTLS
    name: str = ""
    servername: str = ""
    ehlo_name: str = "localhost"
    timeout: float = defaults.DEFAULT_TIMEOUT
    interval: float = defaults.DEFAULT_INTERVAL
    versions: tuple[TLSVersion, ...] = DEFAULT_VERSIONS
    ca_file: str | None = None
    labels: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    #: At most this many connections to the host at once within one probe.
    connections: int = defaults.DEFAULT_CONNECTIONS
    #: How often SSLv2/SSLv3/TLS 1.0/1.1 (and the senders) are tested again; None: every
    #: `interval`.
    legacy_interval: float | None = None
    #: The senders whose ClientHello is tried on the server, one connection each.
    senders: tuple[SenderProfile, ...] = ()
    #: The senders (of the config's `important_senders`) whose incompatibility alerts.
    important_senders: tuple[str, ...] = ()
    #: At most this many connections started per minute to each of the host's addresses,
    #: counted over every target on that address.
    max_connections_per_minute: int = defaults.DEFAULT_MAX_CONNECTIONS_PER_MINUTE
    #: The host's addresses, already looked up (an MX host, through the configured DNS);
    #: empty: the probe looks the host up itself.
    addresses: tuple[str, ...] = ()
    #: The host's DNSSEC-validated TLSA records, where senders authenticate it by DANE.
    dane: DaneExpectation | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.address)
        if not self.servername:
            object.__setattr__(self, "servername", self.host)

    @property
    def address(self) -> str:
        """`host:port`, with IPv6 literals in brackets."""
        return format_address(self.host, self.port)


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """The resolver for MX and MX hosts' address look-ups: the system's, or `servers`
    (`IP` or `IP:PORT`, IPv6 in brackets with a port)."""

    servers: tuple[str, ...] = ()
    timeout: float = defaults.DEFAULT_DNS_TIMEOUT


@dataclass(frozen=True, slots=True)
class MailDomain:
    """A mail domain to watch. Its MX hosts, found anew every `interval`, are each probed
    as a target made from `template` (the settings of the domain's entry); the domain's
    `labels` go on the domain's own series, since one MX host may serve many domains."""

    domain: str
    template: Target
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The domain: what shards are chosen by."""
        return self.domain

    def target_for(
        self, host: str, addresses: tuple[str, ...] = (), dane: DaneExpectation | None = None
    ) -> Target:
        """The target that probes MX host `host`: named `host:port`, `host` as servername."""
        return dataclasses.replace(
            self.template,
            host=host,
            name=format_address(host, self.template.port),
            servername=host,
            labels=(),
            addresses=addresses,
            dane=dane,
        )

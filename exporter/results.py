"""What a probe found: frozen result types and the reasons a step can fail."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from exporter.dane import DaneResult
from exporter.target import TLSVersion


class Reason(enum.Enum):
    """Why a probe did not reach a verdict; the value is the `reason` label."""

    RESOLVE_FAILED = "resolve_failed"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_ERROR = "connect_error"
    GREETING_TIMEOUT = "greeting_timeout"
    GREETING_REJECTED = "greeting_rejected"
    EHLO_REJECTED = "ehlo_rejected"
    STARTTLS_REJECTED = "starttls_rejected"
    #: The server said to come back later (421, or a 4xx about too many connections).
    RATE_LIMITED = "rate_limited"
    SMTP_PROTOCOL_ERROR = "smtp_protocol_error"
    CONNECTION_CLOSED = "connection_closed"
    READ_TIMEOUT = "read_timeout"
    TLS_PROTOCOL_ERROR = "tls_protocol_error"
    TLS_BROKEN = "tls_broken"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    PROBE_DEADLINE = "probe_deadline"
    #: The exporter's own budget of connections to the address had no room in time.
    CONNECTION_BUDGET = "connection_budget"
    INTERNAL_ERROR = "internal_error"


class Verdict(enum.Enum):
    """Whether the server accepts one protocol version."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    UNKNOWN = "unknown"


class VerifyError(enum.Enum):
    """Why the certificate chain does not verify; the value is the `reason` label."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    SELF_SIGNED = "self_signed"
    INCOMPLETE_CHAIN = "incomplete_chain"
    UNTRUSTED = "untrusted"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class VersionResult:
    """The verdict for one version, with the detail that explains it."""

    version: TLSVersion
    verdict: Verdict
    detail: str = ""
    #: The cipher suite the server chose (IANA number), when it accepted.
    cipher: int | None = None
    #: Unix time the verdict was reached, when an earlier probe reached it (a version
    #: tested on the slower `legacy_interval`); None: by the probe it is part of.
    checked: float | None = None

    @property
    def supported(self) -> bool | None:
        """True accepted, False refused, None unknown."""
        if self.verdict is Verdict.UNKNOWN:
            return None
        return self.verdict is Verdict.ACCEPTED


@dataclass(frozen=True, slots=True)
class SenderResult:
    """Whether one sender's ClientHello gets a handshake the sender would go on with."""

    profile: str
    #: `compatible`, `incompatible` or `unknown`.
    compatibility: str
    #: What failed, when incompatible: version, suite, group, signature, alert,
    #: no_starttls, dropped.
    failure: str = ""
    detail: str = ""
    #: What the server chose for this sender (wire version, IANA suite), as far as known.
    version: int | None = None
    suite: int | None = None
    #: Unix time the verdict was reached, when an earlier probe reached it.
    checked: float | None = None

    @property
    def compatible(self) -> bool | None:
        """True compatible, False incompatible, None unknown."""
        if self.compatibility == "unknown":
            return None
        return self.compatibility == "compatible"


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What a default modern client (the local TLS library) ends up with."""

    version: str
    cipher: str


@dataclass(frozen=True, slots=True)
class ChainCertificate:
    """The few facts kept about every certificate the server sent."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """The leaf certificate, its chain and whether it verifies."""

    subject: str
    issuer: str
    serial: str
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    key_type: str
    key_bits: int
    signature_algorithm: str
    fingerprint_sha256: str
    chain: tuple[ChainCertificate, ...]
    verified: bool
    verify_error: VerifyError | None = None
    verify_detail: str = ""

    @property
    def chain_not_after(self) -> datetime:
        """The earliest notAfter of any certificate the server sent."""
        return min((c.not_after for c in self.chain), default=self.not_after)


@dataclass(frozen=True, slots=True)
class AddressResult:
    """One address of a host that has both IPv4 and IPv6 addresses, probed on its own:
    senders take either path, and the two may be different servers."""

    address: str
    success: bool
    error: Reason | None
    versions: tuple[VersionResult, ...]
    #: Whether this address's chain matched the host's TLSA records, where DANE applies.
    dane_matched: bool | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Everything one probe of one target found."""

    target: str
    started: float
    duration: float
    success: bool
    error: Reason | None
    error_detail: str
    starttls_advertised: bool | None
    versions: tuple[VersionResult, ...]
    negotiated: Negotiated | None
    certificate: CertificateInfo | None
    #: Why the default client's handshake failed, where it got as far as trying.
    default_client_error: str = ""
    #: For a host with addresses of both families: the first address of each, probed on
    #: its own (the first is the one the rest of the result describes); else empty.
    addresses: tuple[AddressResult, ...] = ()
    #: The chain against the host's TLSA records, where DANE applies to it.
    dane: DaneResult | None = None
    #: Each sender's verdict, in the order the target lists its senders.
    senders: tuple[SenderResult, ...] = ()
    #: While the server rate-limits the probes: seconds from this probe's start to the
    #: next one's (the interval, doubled for each rate-limited probe in a row); else 0.
    backoff: float = 0.0
    #: What every connection said and did, packed (`exporter.transcript`); for people.
    transcript: bytes = b""

    @property
    def finished(self) -> float:
        """Unix time the probe ended."""
        return self.started + self.duration

    @classmethod
    def unreached(
        cls,
        target: str,
        versions: tuple[TLSVersion, ...],
        *,
        started: float,
        duration: float,
        reason: Reason,
        detail: str,
        transcript: bytes = b"",
    ) -> ProbeResult:
        """A probe that reached no verdict at all: every version unknown, for `reason`."""
        return cls(
            target=target,
            started=started,
            duration=duration,
            success=False,
            error=reason,
            error_detail=detail,
            starttls_advertised=None,
            versions=tuple(VersionResult(v, Verdict.UNKNOWN, detail) for v in versions),
            negotiated=None,
            certificate=None,
            transcript=transcript,
        )

    def carried_over(
        self,
        previous: ProbeResult | None,
        versions: tuple[TLSVersion, ...],
        senders: tuple[str, ...] = (),
    ) -> ProbeResult:
        """This result with every one of `versions` (and `senders`) it did not test taken
        from `previous` (with when it was tested), or unknown where no probe has tested it
        yet."""
        tested = {v.version: v for v in self.versions}
        earlier = {} if previous is None else {v.version: v for v in previous.versions}
        merged = []
        for version in versions:
            found = tested.get(version)
            if found is None:
                old = earlier.get(version)
                if old is None or previous is None:
                    found = VersionResult(version, Verdict.UNKNOWN, "not tested yet")
                else:
                    when = old.checked if old.checked is not None else previous.finished
                    found = replace(old, checked=when)
            merged.append(found)
        return replace(self, versions=tuple(merged), senders=self._senders_from(previous, senders))

    def _senders_from(
        self, previous: ProbeResult | None, names: tuple[str, ...]
    ) -> tuple[SenderResult, ...]:
        tested = {s.profile: s for s in self.senders}
        earlier = {} if previous is None else {s.profile: s for s in previous.senders}
        found = []
        for name in names:
            result = tested.get(name)
            if result is None and previous is not None and name in earlier:
                old = earlier[name]
                when = old.checked if old.checked is not None else previous.finished
                result = replace(old, checked=when)
            found.append(result or SenderResult(name, "unknown", detail="not tested yet"))
        return tuple(found)

    def version(self, version: TLSVersion) -> VersionResult | None:
        for result in self.versions:
            if result.version is version:
                return result
        return None

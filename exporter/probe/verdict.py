"""From what every connection of a probe found to the probe's verdict; no I/O.

No single connection decides: a reset is a refusal only when another connection shows the
server speaks TLS, the chain comes from whichever connection carried one, and the error
reported is the one that says most about why the probe fell short.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from exporter import dane
from exporter.dane import DaneResult, Tlsa
from exporter.probe import certs
from exporter.probe.outcomes import (
    Accepted,
    DefaultOutcome,
    Dropped,
    Failed,
    Handshake,
    NotOffered,
    Refused,
    VersionOutcome,
)
from exporter.probe.profile import ProfileFailure, ProfileOutcome
from exporter.results import (
    AddressResult,
    CertificateInfo,
    Negotiated,
    ProbeResult,
    Reason,
    SenderResult,
    Verdict,
    VersionResult,
)
from exporter.target import Target, TLSMode, TLSVersion

#: Where the chain is looked for first: TLS 1.2, the newest version whose Certificate
#: message travels in plaintext (a TLS 1.3 answer never carries one), then older ones.
_CHAIN_ORDER: Final = (
    TLSVersion.TLS1_2,
    TLSVersion.TLS1_3,
    TLSVersion.TLS1_1,
    TLSVersion.TLS1_0,
    TLSVersion.SSL3,
)

#: Errors that a failure met on a connection replaces: it says more about the cause.
_WEAK_ERRORS: Final = (Reason.TLS_BROKEN, Reason.PROBE_DEADLINE)


@dataclass(frozen=True, slots=True)
class Findings:
    """What a probe's connections add up to: its result, less the timing."""

    versions: tuple[VersionResult, ...]
    starttls_advertised: bool | None
    negotiated: Negotiated | None
    certificate: CertificateInfo | None
    #: Why the probe did not reach a verdict for everything; None for success.
    error: Failed | None
    #: Why the default client's handshake failed, where it got as far as trying.
    default_client_error: str = ""
    #: The chain against the target's TLSA records, where DANE applies.
    dane: DaneResult | None = None
    #: Each sender's verdict, in the target's order.
    senders: tuple[SenderResult, ...] = ()

    def at(self, address: str) -> AddressResult:
        """What these findings say about one address."""
        reason = self.error.reason if self.error else None
        matched = None if self.dane is None else self.dane.matched
        return AddressResult(address, self.error is None, reason, self.versions, matched)

    def result(
        self,
        target: str,
        *,
        started: float,
        duration: float,
        transcript: bytes = b"",
        addresses: tuple[AddressResult, ...] = (),
    ) -> ProbeResult:
        return ProbeResult(
            target=target,
            started=started,
            duration=duration,
            success=self.error is None,
            error=self.error.reason if self.error else None,
            error_detail=self.error.detail if self.error else "",
            starttls_advertised=self.starttls_advertised,
            versions=self.versions,
            negotiated=self.negotiated,
            certificate=self.certificate,
            default_client_error=self.default_client_error,
            addresses=addresses,
            dane=self.dane,
            senders=self.senders,
            transcript=transcript,
        )


def decide(
    target: Target,
    outcomes: Mapping[TLSVersion, VersionOutcome],
    default: DefaultOutcome,
    trust: certs.TrustStore,
    senders: Mapping[str, ProfileOutcome] | None = None,
) -> Findings:
    """The verdict for every version of `target`, the certificate and the error, if any.

    `outcomes` holds the versions whose connection finished; a version missing from it
    was never tested (the probe stopped early, or ran out of time).
    """
    not_offered = any(isinstance(o, NotOffered) for o in (*outcomes.values(), default))
    if not_offered:
        versions = tuple(
            VersionResult(v, Verdict.REFUSED, "STARTTLS not offered") for v in target.versions
        )
        error = None
    else:
        versions, error = _version_verdicts(target.versions, outcomes, default)
        error = error or _no_handshake(outcomes, default)
    certificate, certificate_error = _certificate(target.servername, outcomes, default, trust)
    return Findings(
        senders=_senders(target, outcomes, default, senders or {}),
        dane=_dane(target, outcomes, default),
        versions=versions,
        starttls_advertised=_starttls_advertised(target, outcomes, default),
        negotiated=default.negotiated if isinstance(default, Handshake) else None,
        certificate=certificate,
        error=error or certificate_error,
        default_client_error=(
            default.detail or default.reason.value
            if isinstance(default, Failed) and default.in_handshake
            else ""
        ),
    )


def _starttls_advertised(
    target: Target, outcomes: Mapping[TLSVersion, VersionOutcome], default: DefaultOutcome
) -> bool | None:
    """Whether EHLO listed STARTTLS; None where no EHLO answer was seen (or none is sent).

    A refused STARTTLS command still counts as advertised: EHLO listed it.
    """
    if target.tls is not TLSMode.STARTTLS:
        return None
    everything = (*outcomes.values(), default)
    if any(isinstance(o, NotOffered) for o in everything):
        return False
    reached_tls = any(isinstance(o, Accepted | Refused | Dropped | Handshake) for o in everything)
    listed = any(isinstance(o, Failed) and o.starttls_advertised for o in everything)
    return True if reached_tls or listed else None


def _version_verdicts(
    versions: tuple[TLSVersion, ...],
    outcomes: Mapping[TLSVersion, VersionOutcome],
    default: DefaultOutcome,
) -> tuple[tuple[VersionResult, ...], Failed | None]:
    """Each version's verdict, and the error that explains the unknown ones."""
    # Evidence that the server speaks TLS: then a reset on one version is a refusal.
    # Only when every attempt ends in a reset (and the library's own handshake fails
    # too) is TLS itself broken there.
    speaks_tls = isinstance(default, Handshake) or any(
        isinstance(o, Accepted | Refused) for o in outcomes.values()
    )
    # A version never tested shares the fate of the failure that stopped the probe.
    stopped = next(
        (o for o in (*outcomes.values(), default) if isinstance(o, Failed) and o.holds_back),
        None,
    )
    results: list[VersionResult] = []
    error: Failed | None = None
    for version in versions:
        result, problem = _version_verdict(version, outcomes.get(version), speaks_tls, stopped)
        results.append(result)
        error = _weightier(error, problem)
    return tuple(results), error


def _version_verdict(
    version: TLSVersion,
    outcome: VersionOutcome | None,
    speaks_tls: bool,
    stopped: Failed | None,
) -> tuple[VersionResult, Failed | None]:
    """One version's verdict, and the problem it stands for when it is unknown."""
    if isinstance(outcome, Accepted):
        return VersionResult(version, Verdict.ACCEPTED, "", outcome.cipher), None
    if isinstance(outcome, Refused) or (isinstance(outcome, Dropped) and speaks_tls):
        return VersionResult(version, Verdict.REFUSED, outcome.detail), None
    if isinstance(outcome, Dropped):
        broken = Failed(
            Reason.TLS_BROKEN,
            f"{outcome.detail} on every ClientHello: TLS does not work on this server",
        )
        return VersionResult(version, Verdict.UNKNOWN, outcome.detail), broken
    failure = outcome if isinstance(outcome, Failed) else None
    failure = failure or stopped or Failed(Reason.PROBE_DEADLINE, "not reached")
    detail = failure.detail or failure.reason.value
    return VersionResult(version, Verdict.UNKNOWN, detail), failure


#: How the default client's handshake ends when the server answers but agrees to nothing.
_HANDSHAKE_ENDINGS: Final = (Reason.TLS_PROTOCOL_ERROR, Reason.CONNECTION_CLOSED)


def _no_handshake(
    outcomes: Mapping[TLSVersion, VersionOutcome], default: DefaultOutcome
) -> Failed | None:
    """The error when the server speaks TLS but no handshake gets anywhere: it refused
    every version and the local TLS library's own handshake failed too (a missing or
    broken certificate or key, as Postfix does when its chain file is missing). Mail to it
    goes in plain text or not at all, so the probe fails, though each version's verdict
    stays what the server said."""
    if not isinstance(default, Failed) or not default.in_handshake:
        return None
    if any(isinstance(o, Accepted) for o in outcomes.values()):
        return None
    if not any(isinstance(o, Refused) for o in outcomes.values()):
        return None
    if default.reason not in _HANDSHAKE_ENDINGS:
        return default  # timed out, say: that says more than a conclusion would
    return Failed(
        Reason.TLS_HANDSHAKE_FAILED,
        "every version refused and the default client's handshake failed: "
        + (default.detail or default.reason.value),
        starttls_advertised=default.starttls_advertised,
    )


def _weightier(current: Failed | None, candidate: Failed | None) -> Failed | None:
    """The error to report: the first one, unless a failure met on a connection comes
    after a weak one (tls_broken is only a conclusion; the deadline says little). A rate
    limit comes first: it explains the rest, and the scheduler backs off for it."""
    if current is None:
        return candidate
    if candidate is not None and candidate.reason is Reason.RATE_LIMITED:
        return current if current.reason is Reason.RATE_LIMITED else candidate
    if (
        candidate is not None
        and candidate.reason is not Reason.TLS_BROKEN
        and current.reason in _WEAK_ERRORS
    ):
        return candidate
    return current


def _certificate(
    servername: str,
    outcomes: Mapping[TLSVersion, VersionOutcome],
    default: DefaultOutcome,
    trust: certs.TrustStore,
) -> tuple[CertificateInfo | None, Failed | None]:
    """The analysed certificate, and the problem when a server that speaks TLS gave none."""
    chain = _best_chain(outcomes, default)
    if chain:
        try:
            return certs.analyze(chain, servername, trust), None
        except Exception as exc:  # a hostile certificate costs its facts, not the probe
            return None, Failed(Reason.TLS_PROTOCOL_ERROR, f"certificate: {exc}")
    accepted = any(isinstance(o, Accepted) for o in outcomes.values())
    if not accepted and not isinstance(default, Handshake):
        return None, None
    if isinstance(default, Failed):
        cause = default.detail or default.reason.value
        return None, Failed(default.reason, f"no certificate could be read: {cause}")
    return None, Failed(Reason.TLS_PROTOCOL_ERROR, "no certificate could be read")


def _senders(
    target: Target,
    outcomes: Mapping[TLSVersion, VersionOutcome],
    default: DefaultOutcome,
    found: Mapping[str, ProfileOutcome],
) -> tuple[SenderResult, ...]:
    """Each sender's verdict. A hello closed or reset is a refusal only where another
    connection shows the server speaks TLS (as for a version); else nobody knows."""
    speaks_tls = isinstance(default, Handshake) or any(
        isinstance(o, Accepted | Refused) for o in outcomes.values()
    )
    results = []
    for profile in target.senders:
        outcome = found.get(profile.name)
        if outcome is None:
            results.append(SenderResult(profile.name, "unknown", detail="not reached"))
            continue
        compatibility = outcome.compatibility.value
        if outcome.failure is ProfileFailure.DROPPED and not speaks_tls:
            compatibility = "unknown"
        results.append(
            SenderResult(
                profile=profile.name,
                compatibility=compatibility,
                failure=outcome.failure.value if outcome.failure else "",
                detail=outcome.detail,
                version=outcome.version,
                suite=outcome.suite,
            )
        )
    return tuple(results)


def _dane(
    target: Target, outcomes: Mapping[TLSVersion, VersionOutcome], default: DefaultOutcome
) -> DaneResult | None:
    """The chain the host presented against its TLSA records (RFC 7672), where it has
    DNSSEC-validated ones; unknown while no chain was read (the probe's error says why)."""
    chain = _best_chain(outcomes, default)
    if target.dane is None or not chain:
        return None
    records = [Tlsa(*record) for record in target.dane.records]
    return dane.check(chain, records, target.dane.names)


def _best_chain(
    outcomes: Mapping[TLSVersion, VersionOutcome], default: DefaultOutcome
) -> tuple[bytes, ...]:
    """The chain from the newest accepted plaintext flight, else from the real handshake,
    else from a flight in which the server picked another version, else from SSLv2."""
    for version in _CHAIN_ORDER:
        outcome = outcomes.get(version)
        if isinstance(outcome, Accepted) and outcome.certificates:
            return outcome.certificates
    if isinstance(default, Handshake) and default.certificates:
        return default.certificates
    for version in (*_CHAIN_ORDER, TLSVersion.SSL2):
        # The server answered with another version, but the chain came along.
        outcome = outcomes.get(version)
        if isinstance(outcome, Refused) and outcome.certificates:
            return outcome.certificates
    sslv2 = outcomes.get(TLSVersion.SSL2)
    if isinstance(sslv2, Accepted) and sslv2.certificates:
        return sslv2.certificates
    return ()

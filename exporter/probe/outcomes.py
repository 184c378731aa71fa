"""What one connection of a probe found, as plain values for the verdict to weigh.

A connection never decides the probe's verdict alone: a reset means "refused" only when
another connection shows the server speaks TLS, and a chain may come from any of them.
So each connection ends in one of these values and `verdict` looks at all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from exporter.probe.deadline import ProbeFailure
from exporter.results import Negotiated, Reason

#: Failures to reach an address: the next address of the host may answer.
CONNECT_FAILURES: Final = frozenset(
    {Reason.CONNECT_REFUSED, Reason.CONNECT_ERROR, Reason.CONNECT_TIMEOUT}
)
#: Failures that every other connection of the probe would meet too.
_FATAL: Final = CONNECT_FAILURES | {Reason.RESOLVE_FAILED}
#: Failures after which no further connection of the probe is opened, though those already
#: open finish: the server asked to be left alone, or the budget for its address ran out.
_HOLD_BACK: Final = _FATAL | {Reason.RATE_LIMITED, Reason.CONNECTION_BUDGET}


@dataclass(frozen=True, slots=True)
class Accepted:
    """The ServerHello selected exactly the version asked for."""

    cipher: int
    #: The chain, when the flight carried it in plaintext (up to TLS 1.2).
    certificates: tuple[bytes, ...] | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """An alert, or a ServerHello for another version."""

    detail: str
    #: A server that chose a lower version still sent its chain with that ServerHello.
    certificates: tuple[bytes, ...] | None = None


@dataclass(frozen=True, slots=True)
class Dropped:
    """Closed or reset on the ClientHello: refused, unless no version works at all."""

    detail: str


@dataclass(frozen=True, slots=True)
class NotOffered:
    """EHLO did not list STARTTLS."""


@dataclass(frozen=True, slots=True)
class Handshake:
    """The default client's real handshake: what it negotiated and the chain it was sent."""

    negotiated: Negotiated
    certificates: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Failed:
    """The connection reached no answer: why, in the server's words where it had any."""

    reason: Reason
    detail: str = ""
    #: What EHLO said about STARTTLS, where the failure came after it.
    starttls_advertised: bool | None = None
    #: True when the default client's TLS handshake itself failed (not the way there).
    in_handshake: bool = False

    @classmethod
    def of(cls, failure: ProbeFailure) -> Failed:
        return cls(
            failure.reason, failure.detail, failure.starttls_advertised, failure.in_handshake
        )

    @property
    def ends_probe(self) -> bool:
        """True when every other connection of the probe would fail alike."""
        return self.reason in _FATAL

    @property
    def holds_back(self) -> bool:
        """True when the probe should open no further connection after this one."""
        return self.reason in _HOLD_BACK


#: How the test of one version ended.
VersionOutcome = Accepted | Refused | Dropped | NotOffered | Failed
#: How the default client's connection ended.
DefaultOutcome = Handshake | NotOffered | Failed

"""One connection as a big sender would make it: would that sender get TLS with the host?

The SMTP dialogue as for a version test, then the sender's own ClientHello (its versions,
suites, groups, signature algorithms) and the server's first flight, read up to the key
exchange, judged by `hello.judge_profile`. No key exchange is done and the local TLS
library never decides. The connection ends in a frozen outcome, never in an exception.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter.probe import hello, smtp
from exporter.probe.connection import _read_budget, _read_chunk, _session, send_hello
from exporter.probe.deadline import Deadline, ProbeFailure
from exporter.probe.endpoint import Endpoint
from exporter.probe.hello import Compatibility
from exporter.probe.outcomes import Dropped, NotOffered
from exporter.probe.suites import group_name, suite_name
from exporter.results import Reason
from exporter.target import Target, TLSVersion
from exporter.transcript import ConnectionRecorder

if TYPE_CHECKING:  # only the type: `exporter.senders` imports this package's suites
    from exporter.senders import SenderProfile


class ProfileFailure(enum.Enum):
    """What kept a sender out: the judgement's `Mismatch`es, and the connection's own."""

    VERSION = "version"
    SUITE = "suite"
    GROUP = "group"
    SIGNATURE = "signature"
    ALERT = "alert"
    #: EHLO listed no STARTTLS: no sender gets TLS there.
    NO_STARTTLS = "no_starttls"
    #: Closed or reset on the ClientHello, the way Schannel refuses. Like a dropped version,
    #: that is "incompatible" only where other connections show the server speaks TLS.
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class ProfileOutcome:
    """How one sender's connection ended: compatible, incompatible (and why), or unknown."""

    profile: str
    compatibility: Compatibility
    #: What failed, when incompatible.
    failure: ProfileFailure | None = None
    detail: str = ""
    #: What the server chose (wire version, suite, group), as far as its answer went.
    version: int | None = None
    suite: int | None = None
    group: int | None = None
    #: Why the answer is unknown: timeout, network error, STARTTLS refused, ...
    reason: Reason | None = None

    @property
    def compatible(self) -> bool | None:
        """True or False as `smtp_tls_sender_compatible` says it; None when unknown."""
        if self.compatibility is Compatibility.UNKNOWN:
            return None
        return self.compatibility is Compatibility.COMPATIBLE


async def try_profile(
    target: Target,
    endpoint: Endpoint,
    profile: SenderProfile,
    deadline: Deadline,
    log: ConnectionRecorder,
) -> ProfileOutcome:
    """Whether `profile`'s sender would complete a TLS handshake with the target."""

    async def exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> hello.ProfileFlight | Dropped:
        record = hello.profile_client_hello(profile, target.servername)
        log.client(hello.describe_profile_hello(profile, target.servername, len(record)))
        dropped = await send_hello(writer, record)
        return dropped or await _read_flight(reader, deadline)

    try:
        flight = await _session(target, endpoint, deadline, log, exchange)
    except ProbeFailure as failure:
        return ProfileOutcome(
            profile.name, Compatibility.UNKNOWN, detail=failure.detail, reason=failure.reason
        )
    except hello.HelloParseError as exc:
        log.note(f"not TLS: {exc}")
        return ProfileOutcome(
            profile.name, Compatibility.UNKNOWN, detail=str(exc), reason=Reason.TLS_PROTOCOL_ERROR
        )
    outcome = _outcome(profile, flight, log)
    log.note(describe_outcome(outcome))
    return outcome


def _outcome(
    profile: SenderProfile,
    flight: hello.ProfileFlight | Dropped | NotOffered,
    log: ConnectionRecorder,
) -> ProfileOutcome:
    if isinstance(flight, NotOffered):
        detail = "EHLO does not offer STARTTLS"
        return ProfileOutcome(
            profile.name, Compatibility.INCOMPATIBLE, ProfileFailure.NO_STARTTLS, detail
        )
    if isinstance(flight, Dropped):
        return ProfileOutcome(
            profile.name, Compatibility.INCOMPATIBLE, ProfileFailure.DROPPED, flight.detail
        )
    log.server(describe_flight(flight))
    if flight.plaintext is not None:
        text = smtp.printable(flight.plaintext.splitlines()[0] if flight.plaintext else b"")
        return ProfileOutcome(
            profile.name,
            Compatibility.UNKNOWN,
            detail=f"plaintext answer to ClientHello: {text}",
            reason=Reason.STARTTLS_REJECTED,
        )
    judgement = hello.judge_profile(profile, flight)
    return ProfileOutcome(
        profile=profile.name,
        compatibility=judgement.compatibility,
        failure=ProfileFailure(judgement.mismatch.value) if judgement.mismatch else None,
        detail=judgement.detail,
        version=judgement.version,
        suite=judgement.suite,
        group=judgement.group,
        reason=Reason.TLS_PROTOCOL_ERROR
        if judgement.compatibility is Compatibility.UNKNOWN
        else None,
    )


def describe_flight(flight: hello.ProfileFlight) -> str:
    """The server's answer to a sender's ClientHello, in a line."""
    parts = []
    if flight.hello is not None:
        chosen = TLSVersion.from_wire(flight.hello.version)
        label = chosen.display if chosen else f"0x{flight.hello.version:04x}"
        retry = " (HelloRetryRequest)" if flight.hello.retry_request else ""
        parts.append(f"ServerHello {label} {suite_name(flight.hello.cipher)}{retry}")
    if flight.group is not None:
        parts.append(f"key share {group_name(flight.group)}")
    if flight.key_exchange is not None:
        parts.append(_describe_key_exchange(flight.key_exchange))
    if flight.alert is not None:
        level = "warning" if flight.alert.level == 1 else "fatal"
        parts.append(f"alert {level} {flight.alert.name}")
    return ", ".join(parts) or "nothing"


def _describe_key_exchange(exchange: hello.KeyExchange) -> str:
    if exchange.group is not None:
        what = f"ServerKeyExchange {group_name(exchange.group)}"
    elif exchange.dh_bits is not None:
        what = f"ServerKeyExchange DH {exchange.dh_bits} bits"
    else:
        what = "ServerKeyExchange"
    return what


def describe_outcome(outcome: ProfileOutcome) -> str:
    """The verdict for the transcript: `compatible: ...`, `incompatible (suite): ...`."""
    failure = f" ({outcome.failure.value})" if outcome.failure else ""
    reason = f" ({outcome.reason.value})" if outcome.reason else ""
    return f"{outcome.profile} {outcome.compatibility.value}{failure}{reason}: {outcome.detail}"


async def _read_flight(
    reader: asyncio.StreamReader, deadline: Deadline
) -> hello.ProfileFlight | Dropped:
    """The answer to the ClientHello, read until it says enough or the server stops.

    Bounded like the version tests' reads: in bytes by the parser's limits, in time by the
    deadline, and once the ServerHello is in, a short wait for the key exchange.
    """
    buffer = bytearray()
    records_end = 0
    hello_seen: float | None = None
    while True:
        try:
            chunk = await _read_chunk(reader, _read_budget(deadline, hello_seen), deadline)
        except ProbeFailure as failure:
            return _as_far_as_it_went(buffer, failure)
        if not chunk:
            return _ended(buffer, reset=chunk is None)
        buffer += chunk
        if len(buffer) > hello.MAX_FLIGHT_BYTES:
            return _as_far_as_it_went(
                buffer,
                ProbeFailure(Reason.TLS_PROTOCOL_ERROR, "server's first flight is too large"),
            )
        if buffer[0] in (hello.ALERT, hello.HANDSHAKE):
            end = hello.complete_records_end(buffer, records_end)
            if end == records_end:
                continue  # parse only when a record completed
            records_end = end
        flight = hello.parse_profile_flight(bytes(buffer))
        if flight.complete:
            return flight
        if flight.hello is not None and hello_seen is None:
            hello_seen = time.monotonic()


def _as_far_as_it_went(buffer: bytearray, failure: ProbeFailure) -> hello.ProfileFlight:
    """Stalled or oversized: a ServerHello already read is judged as far as it goes."""
    flight = hello.parse_profile_flight(bytes(buffer))
    if flight.hello is None and flight.alert is None:
        raise failure
    return flight


def _ended(buffer: bytearray, *, reset: bool) -> hello.ProfileFlight | Dropped:
    """Closed or reset: what came so far decides, and nothing at all is a dropped hello."""
    flight = hello.parse_profile_flight(bytes(buffer))
    if flight.hello or flight.alert or flight.plaintext:
        return flight
    if not buffer:
        return Dropped("connection reset" if reset else "connection closed")
    raise ProbeFailure(Reason.TLS_PROTOCOL_ERROR, "connection closed mid-record")

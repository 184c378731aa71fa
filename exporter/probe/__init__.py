"""One probe of one target: every configured version, the default client, the certificate.

Each version gets its own connection and SMTP dialogue, a ClientHello pinned to it and a
look at the server's answer. A few connections run at once (never many: mail servers
rate-limit) so greeting delays do not add up past the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from exporter.probe import certs, hello, smtp, tls
from exporter.probe.smtp import COMMAND_TIMEOUT, Deadline, ProbeFailure
from exporter.results import (
    CertificateInfo,
    Negotiated,
    ProbeResult,
    Reason,
    Verdict,
    VersionResult,
)
from exporter.target import Target, TLSMode, TLSVersion

__all__ = ["probe"]

_T = TypeVar("_T")

#: Failures that every other connection of the probe would meet too.
_FATAL = frozenset(
    {
        Reason.RESOLVE_FAILED,
        Reason.CONNECT_REFUSED,
        Reason.CONNECT_ERROR,
        Reason.CONNECT_TIMEOUT,
    }
)

_GRACE = 0.2
#: How long to wait for the certificate chain once the ServerHello decided the verdict.
_CHAIN_WAIT = 5.0

#: Order of the connections: the likeliest to succeed first, so the chain and the
#: STARTTLS answer come early.
_ORDER = (
    TLSVersion.TLS1_2,
    TLSVersion.TLS1_3,
    TLSVersion.TLS1_1,
    TLSVersion.TLS1_0,
    TLSVersion.SSL3,
    TLSVersion.SSL2,
)


@dataclass(frozen=True, slots=True)
class _Accepted:
    cipher: int
    certificates: tuple[bytes, ...] | None


@dataclass(frozen=True, slots=True)
class _Refused:
    detail: str
    #: A server that chose a lower version still sent its chain with that ServerHello.
    certificates: tuple[bytes, ...] | None = None


@dataclass(frozen=True, slots=True)
class _Dropped:
    """Closed or reset on the ClientHello: refused, unless no version works at all."""

    detail: str


@dataclass(frozen=True, slots=True)
class _NotOffered:
    """EHLO did not list STARTTLS."""


_Outcome = _Accepted | _Refused | _Dropped | _NotOffered | ProbeFailure
_DefaultOutcome = tls.Handshake | _NotOffered | ProbeFailure


class _Endpoint:
    """The target's addresses. Every connection of a probe goes to the first address that
    answered, so all verdicts describe one server; an address that fails (no route,
    refused, silence: broken IPv6 is common) makes way for the next."""

    def __init__(self, addresses: list[str], port: int) -> None:
        self.addresses = addresses
        self.port = port
        self.working: str | None = None

    async def connect(
        self, deadline: Deadline
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        order = [self.working] if self.working else self.addresses
        failure: ProbeFailure | None = None
        for address in order:
            try:
                streams = await smtp.connect(address, self.port, deadline)
            except ProbeFailure as exc:
                if (
                    exc.reason
                    not in (
                        Reason.CONNECT_REFUSED,
                        Reason.CONNECT_ERROR,
                        Reason.CONNECT_TIMEOUT,
                    )
                    or deadline.left() <= 0
                ):
                    raise
                failure = failure or exc
                continue
            self.working = address
            return streams
        assert failure is not None
        raise failure


async def _resolve(host: str, port: int, deadline: Deadline) -> _Endpoint:
    """Every address of the host, in the resolver's order of preference."""
    try:
        return _Endpoint([str(ipaddress.ip_address(host.strip("[]")))], port)
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    with deadline.phase(Reason.RESOLVE_FAILED):
        async with asyncio.timeout(deadline.budget(smtp.CONNECT_TIMEOUT)):
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise ProbeFailure(Reason.RESOLVE_FAILED, str(exc)) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ProbeFailure(Reason.RESOLVE_FAILED, "no address")
    return _Endpoint(addresses, port)


def _sni(servername: str) -> str | None:
    try:
        ipaddress.ip_address(servername.strip("[]"))
    except ValueError:
        return servername.rstrip(".") or None
    return None


async def _session(
    target: Target,
    endpoint: _Endpoint,
    deadline: Deadline,
    body: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[_T]],
) -> _T | _NotOffered:
    """Connect, do the SMTP dialogue where needed, run `body`, always close."""
    reader, writer = await endpoint.connect(deadline)
    try:
        if target.tls is TLSMode.STARTTLS:
            dialogue = await smtp.starttls(reader, writer, target.ehlo_name, deadline)
            if not dialogue.starttls_advertised:
                return _NotOffered()
        return await body(reader, writer)
    finally:
        writer.transport.abort()


async def _read_flight(
    reader: asyncio.StreamReader, want_certificates: bool, deadline: Deadline
) -> hello.ServerFlight | _Dropped:
    buffer = bytearray()
    records_end = 0
    hello_seen: float | None = None
    while True:
        budget = deadline.budget(COMMAND_TIMEOUT)
        if hello_seen is not None:
            # The verdict is in; the chain gets a short grace, not the whole deadline.
            budget = min(budget, max(0.0, hello_seen + _CHAIN_WAIT - time.monotonic()))
        try:
            with deadline.phase(Reason.READ_TIMEOUT):
                async with asyncio.timeout(budget):
                    chunk = await reader.read(65536)
        except OSError:  # reset, unreachable, ...: whatever came so far decides
            chunk, reset = b"", True
        except ProbeFailure:
            # Stalled after its ServerHello: the verdict stands, the chain is lost.
            flight = hello.parse_server_flight(bytes(buffer), want_certificates=False)
            if flight.hello is not None:
                return flight
            raise
        else:
            reset = False
        if not chunk:
            flight = hello.parse_server_flight(bytes(buffer), want_certificates=want_certificates)
            if flight.hello or flight.alert or flight.plaintext:
                return flight
            if not buffer:
                return _Dropped("connection reset" if reset else "connection closed")
            raise ProbeFailure(Reason.TLS_PROTOCOL_ERROR, "connection closed mid-record")
        buffer += chunk
        if len(buffer) > hello.MAX_FLIGHT_BYTES:
            flight = hello.parse_server_flight(bytes(buffer), want_certificates=want_certificates)
            if flight.hello:
                return flight
            raise ProbeFailure(Reason.TLS_PROTOCOL_ERROR, "server's first flight is too large")
        if buffer[0] in (hello.ALERT, hello.HANDSHAKE):
            # Parse only when a record completed: a trickling server costs no more.
            end = hello.complete_records_end(buffer, records_end)
            if end == records_end:
                continue
            records_end = end
        flight = hello.parse_server_flight(bytes(buffer), want_certificates=want_certificates)
        if flight.complete:
            return flight
        if flight.hello is not None and hello_seen is None:
            hello_seen = time.monotonic()


def _judge(version: TLSVersion, flight: hello.ServerFlight | _Dropped) -> _Outcome:
    if isinstance(flight, _Dropped):
        return flight
    if flight.plaintext is not None:
        text = smtp.printable(flight.plaintext.splitlines()[0] if flight.plaintext else b"")
        return ProbeFailure(
            Reason.STARTTLS_REJECTED,
            f"plaintext answer to ClientHello: {text}",
            starttls_advertised=True,
        )
    if flight.alert is not None:
        return _Refused(f"alert {flight.alert.name}")
    assert flight.hello is not None
    chosen = flight.hello.version
    if chosen == version.wire:
        return _Accepted(flight.hello.cipher, flight.certificates)
    name = TLSVersion.from_wire(chosen)
    label = name.display if name else f"0x{chosen:04x}"
    return _Refused(f"server chose {label}", flight.certificates)


async def _test_version(
    target: Target, endpoint: _Endpoint, version: TLSVersion, deadline: Deadline
) -> _Outcome:
    async def exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> hello.ServerFlight | _Dropped:
        writer.write(hello.client_hello(version, target.servername))
        try:
            await writer.drain()
        except OSError:
            return _Dropped("connection reset")
        return await _read_flight(reader, version is not TLSVersion.SSL2, deadline)

    try:
        flight = await _session(target, endpoint, deadline, exchange)
    except ProbeFailure as failure:
        return failure
    except hello.HelloParseError as exc:
        return ProbeFailure(Reason.TLS_PROTOCOL_ERROR, str(exc))
    if isinstance(flight, _NotOffered):
        return flight
    return _judge(version, flight)


async def _default_client(
    target: Target, endpoint: _Endpoint, deadline: Deadline
) -> _DefaultOutcome:
    async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tls.Handshake:
        return await tls.handshake(reader, writer, _sni(target.servername), deadline)

    try:
        return await _session(target, endpoint, deadline, upgrade)
    except ProbeFailure as failure:
        return failure


def _ends_probe(result: object) -> bool:
    """True for answers every other connection of the probe would get too."""
    return isinstance(result, _NotOffered) or (
        isinstance(result, ProbeFailure) and result.reason in _FATAL
    )


async def _gather(
    target: Target, endpoint: _Endpoint, deadline: Deadline
) -> tuple[dict[TLSVersion, _Outcome], _DefaultOutcome]:
    """Run every connection, a few at a time; stop early when all would fail alike."""
    gate = asyncio.Semaphore(max(1, target.connections))
    stop = asyncio.Event()

    async def gated(work: Callable[[], Awaitable[_T]]) -> _T:
        async with gate:
            if stop.is_set() or deadline.left() <= 0:
                # Decided before this connection got its turn: don't open it at all.
                raise asyncio.CancelledError
            result = await work()
            if _ends_probe(result):
                stop.set()
            return result

    def test(version: TLSVersion) -> Callable[[], Awaitable[_Outcome]]:
        return lambda: _test_version(target, endpoint, version, deadline)

    ordered = [v for v in _ORDER if v in target.versions]
    version_tasks = {asyncio.create_task(gated(test(v))): v for v in ordered[:1]}
    # The default client goes second: its chain is the one a TLS 1.3-only host gives.
    default_task = asyncio.create_task(gated(lambda: _default_client(target, endpoint, deadline)))
    version_tasks.update({asyncio.create_task(gated(test(v))): v for v in ordered[1:]})

    outcomes: dict[TLSVersion, _Outcome] = {}
    default: _DefaultOutcome = ProbeFailure(Reason.PROBE_DEADLINE, "probe deadline reached")
    pending: set[asyncio.Task[Any]] = {default_task, *version_tasks}
    try:
        # A little grace, so a step that times out at the deadline reports its own reason.
        async with asyncio.timeout(deadline.budget() + _GRACE):
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.cancelled():
                        continue
                    result: _Outcome | _DefaultOutcome = task.result()
                    if task is default_task:
                        default = task.result()
                    else:
                        outcomes[version_tasks[task]] = task.result()
                    if _ends_probe(result):
                        for other in pending:
                            other.cancel()
                        await asyncio.gather(*pending, return_exceptions=True)
                        pending = set()
                        if task is not default_task and isinstance(result, _NotOffered):
                            default = result
    except TimeoutError:
        pass
    finally:
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*pending, return_exceptions=True)
    return outcomes, default


def _summarize(
    target: Target,
    outcomes: dict[TLSVersion, _Outcome],
    default: _DefaultOutcome,
    trust: certs.TrustStore,
) -> tuple[
    tuple[VersionResult, ...],
    bool | None,
    Negotiated | None,
    CertificateInfo | None,
    ProbeFailure | None,
]:
    everything: list[object] = [*outcomes.values(), default]
    not_offered = any(isinstance(o, _NotOffered) for o in everything)
    reached_tls = not_offered or any(
        isinstance(o, _Accepted | _Refused | _Dropped | tls.Handshake) for o in everything
    )
    advertised: bool | None = None
    if target.tls is TLSMode.STARTTLS:
        listed = any(isinstance(o, ProbeFailure) and o.starttls_advertised for o in everything)
        advertised = False if not_offered else (True if reached_tls or listed else None)

    error: ProbeFailure | None = None
    stopped = next(
        (o for o in everything if isinstance(o, ProbeFailure) and o.reason in _FATAL), None
    )
    # Evidence that the server speaks TLS: then a reset on one version is a refusal.
    # Only when every attempt ends in a reset (and the library's own handshake fails
    # too) is TLS itself broken there.
    tls_works = isinstance(default, tls.Handshake) or any(
        isinstance(o, _Accepted | _Refused) for o in outcomes.values()
    )
    accepted_any = any(isinstance(o, _Accepted) for o in outcomes.values())
    versions: list[VersionResult] = []
    for version in target.versions:
        outcome = outcomes.get(version)
        if not_offered:
            versions.append(VersionResult(version, Verdict.REFUSED, "STARTTLS not offered"))
        elif isinstance(outcome, _Accepted):
            versions.append(VersionResult(version, Verdict.ACCEPTED, "", outcome.cipher))
        elif isinstance(outcome, _Refused) or (isinstance(outcome, _Dropped) and tls_works):
            versions.append(VersionResult(version, Verdict.REFUSED, outcome.detail))
        elif isinstance(outcome, _Dropped):
            versions.append(VersionResult(version, Verdict.UNKNOWN, outcome.detail))
            error = error or ProbeFailure(
                Reason.TLS_BROKEN,
                f"{outcome.detail} on every ClientHello: TLS does not work on this server",
            )
        else:
            failure = outcome or stopped or ProbeFailure(Reason.PROBE_DEADLINE, "not reached")
            assert isinstance(failure, ProbeFailure)
            versions.append(
                VersionResult(version, Verdict.UNKNOWN, failure.detail or failure.reason.value)
            )
            if error is None or error.reason in (Reason.TLS_BROKEN, Reason.PROBE_DEADLINE):
                error = failure

    negotiated = default.negotiated if isinstance(default, tls.Handshake) else None
    chain = _best_chain(target, outcomes, default)
    certificate: CertificateInfo | None = None
    if chain:
        try:
            certificate = certs.analyze(chain, target.servername, trust)
        except Exception as exc:  # a hostile certificate costs its facts, not the probe
            error = error or ProbeFailure(Reason.TLS_PROTOCOL_ERROR, f"certificate: {exc}")
    elif (accepted_any or isinstance(default, tls.Handshake)) and error is None:
        cause = default if isinstance(default, ProbeFailure) else None
        error = ProbeFailure(
            cause.reason if cause else Reason.TLS_PROTOCOL_ERROR,
            "no certificate could be read"
            + (f": {cause.detail or cause.reason.value}" if cause else ""),
        )
    return tuple(versions), advertised, negotiated, certificate, error


def _best_chain(
    target: Target,
    outcomes: dict[TLSVersion, _Outcome],
    default: _DefaultOutcome,
) -> tuple[bytes, ...]:
    """The chain from the newest accepted plaintext flight, else from the real handshake,
    else from a flight in which the server picked another version."""
    for version in _ORDER:
        outcome = outcomes.get(version)
        if (
            version is not TLSVersion.SSL2
            and isinstance(outcome, _Accepted)
            and outcome.certificates
        ):
            return outcome.certificates
    if isinstance(default, tls.Handshake) and default.certificates:
        return default.certificates
    for version in _ORDER:
        # The server answered with another version, but the chain came along.
        outcome = outcomes.get(version)
        if isinstance(outcome, _Refused) and outcome.certificates:
            return outcome.certificates
    sslv2 = outcomes.get(TLSVersion.SSL2)
    if isinstance(sslv2, _Accepted) and sslv2.certificates:
        return sslv2.certificates
    return ()


async def probe(target: Target, trust: certs.TrustStore | None = None) -> ProbeResult:
    """Probe one target within its timeout; never raises for anything the server does."""
    started = time.time()
    clock = time.monotonic()
    deadline = Deadline.after(target.timeout)
    trust = trust or certs.trust_store(target.ca_file)
    try:
        endpoint = await _resolve(target.host, target.port, deadline)
        outcomes, default = await _gather(target, endpoint, deadline)
    except ProbeFailure as failure:
        outcomes, default = {}, failure
    except Exception as exc:  # a bug costs this probe, reported as such, nothing more
        outcomes, default = {}, ProbeFailure(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
    versions, advertised, negotiated, certificate, error = _summarize(
        target, outcomes, default, trust
    )
    return ProbeResult(
        target=target.name,
        started=started,
        duration=time.monotonic() - clock,
        success=error is None,
        error=error.reason if error else None,
        error_detail=error.detail if error else "",
        starttls_advertised=advertised,
        versions=versions,
        negotiated=negotiated,
        certificate=certificate,
    )

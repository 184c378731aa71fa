"""One connection of a probe: connect, SMTP dialogue, one test, always close.

A version test sends a ClientHello pinned to that version, reads the server's first flight
and judges it; the default client's connection makes a real handshake instead. Either way
the connection ends in an outcome value, never in an exception: what the server did is
for the verdict to weigh, together with every other connection of the probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from exporter.names import format_address, sni_name
from exporter.probe import default_client, hello, smtp
from exporter.probe.deadline import COMMAND_TIMEOUT, Deadline, ProbeFailure
from exporter.probe.endpoint import Endpoint
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
from exporter.probe.suites import suite_name
from exporter.results import Reason
from exporter.target import Target, TLSMode, TLSVersion
from exporter.transcript import ConnectionRecorder

_T = TypeVar("_T")

#: How long to wait for the certificate chain once the ServerHello decided the verdict.
_CHAIN_WAIT: Final = 5.0
#: The most one read takes from the socket; the flight as a whole is bounded by the parser.
_READ_SIZE: Final = 65536

_Body = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[_T]]


async def _session(
    target: Target,
    endpoint: Endpoint,
    deadline: Deadline,
    log: ConnectionRecorder,
    body: _Body[_T],
) -> _T | NotOffered:
    """Connect, do the SMTP dialogue where needed, run `body`, always close."""
    try:
        reader, writer = await endpoint.connect(deadline)
    except ProbeFailure as failure:
        log.note(_failure_text("no connection", failure))
        raise
    peer = writer.get_extra_info("peername")
    log.note(f"connected to {format_address(peer[0], peer[1])}" if peer else "connected")
    try:
        if target.tls is TLSMode.STARTTLS:
            advertised = await smtp.starttls(reader, writer, target.ehlo_name, deadline, log)
            if not advertised:
                return NotOffered()
        return await body(reader, writer)
    except ProbeFailure as failure:
        log.note(_failure_text("failed", failure))
        raise
    finally:
        endpoint.close(writer)


def _failure_text(what: str, failure: ProbeFailure) -> str:
    detail = f": {failure.detail}" if failure.detail else ""
    return f"{what} ({failure.reason.value}){detail}"


async def try_version(
    target: Target,
    endpoint: Endpoint,
    version: TLSVersion,
    deadline: Deadline,
    log: ConnectionRecorder,
) -> VersionOutcome:
    """Whether the server accepts `version`, from its answer to a ClientHello pinned to it."""

    async def exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> hello.ServerFlight | Dropped:
        record = hello.client_hello(version, target.servername)
        log.client(hello.describe_client_hello(version, target.servername, len(record)))
        dropped = await send_hello(writer, record)
        return dropped or await _read_flight(reader, version is not TLSVersion.SSL2, deadline)

    try:
        flight = await _session(target, endpoint, deadline, log, exchange)
    except ProbeFailure as failure:
        return Failed.of(failure)
    except hello.HelloParseError as exc:
        log.note(f"not TLS: {exc}")
        return Failed(Reason.TLS_PROTOCOL_ERROR, str(exc))
    if isinstance(flight, NotOffered):
        return flight
    if isinstance(flight, Dropped):
        log.note(flight.detail)
        return flight
    log.server(_describe_flight(flight))
    outcome = _judge(version, flight)
    log.note(_describe_outcome(outcome))
    return outcome


async def send_hello(writer: asyncio.StreamWriter, record: bytes) -> Dropped | None:
    """Send a ClientHello; a reset while sending it is the server's answer to it."""
    writer.write(record)
    try:
        await writer.drain()
    except OSError:
        return Dropped("connection reset")
    return None


async def try_default_client(
    target: Target, endpoint: Endpoint, deadline: Deadline, log: ConnectionRecorder
) -> DefaultOutcome:
    """What the local TLS library's own handshake ends up with, and the chain it was sent."""

    async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Handshake:
        sni = sni_name(target.servername)
        log.client(f"TLS handshake through the local TLS library (SNI {sni or 'none'})")
        done = await default_client.handshake(reader, writer, sni, deadline)
        negotiated = done.negotiated
        log.server(
            f"handshake done: {negotiated.version} {negotiated.cipher},"
            f" {len(done.certificates)} certificates"
        )
        return done

    try:
        return await _session(target, endpoint, deadline, log, upgrade)
    except ProbeFailure as failure:
        return Failed.of(failure)


def _describe_flight(flight: hello.ServerFlight) -> str:
    """The server's answer to a ClientHello, in a line."""
    if flight.plaintext is not None:
        text = smtp.printable(flight.plaintext.splitlines()[0] if flight.plaintext else b"")
        return f"plain text: {text}"
    parts = []
    if flight.hello is not None:
        chosen = TLSVersion.from_wire(flight.hello.version)
        label = chosen.display if chosen else f"0x{flight.hello.version:04x}"
        retry = " (HelloRetryRequest)" if flight.hello.retry_request else ""
        parts.append(f"ServerHello {label} {suite_name(flight.hello.cipher)}{retry}")
    if flight.certificates is not None:
        parts.append(f"Certificate ({len(flight.certificates)} certificates)")
    if flight.alert is not None:
        level = "warning" if flight.alert.level == 1 else "fatal"
        parts.append(f"alert {level} {flight.alert.name}")
    return ", ".join(parts) or "nothing"


def _describe_outcome(outcome: VersionOutcome) -> str:
    if isinstance(outcome, Accepted):
        return f"accepted: {suite_name(outcome.cipher)}"
    if isinstance(outcome, Refused):
        return f"refused: {outcome.detail}"
    if isinstance(outcome, Failed):
        return _failure_text("failed", ProbeFailure(outcome.reason, outcome.detail))
    return type(outcome).__name__.lower()


def _judge(version: TLSVersion, flight: hello.ServerFlight) -> VersionOutcome:
    """The outcome of asking for `version`, from the server's complete (or final) flight."""
    if flight.plaintext is not None:
        text = smtp.printable(flight.plaintext.splitlines()[0] if flight.plaintext else b"")
        return Failed(
            Reason.STARTTLS_REJECTED,
            f"plaintext answer to ClientHello: {text}",
            starttls_advertised=True,
        )
    if flight.alert is not None:
        return Refused(f"alert {flight.alert.name}")
    assert flight.hello is not None
    chosen = flight.hello.version
    if chosen == version.wire:
        return Accepted(flight.hello.cipher, flight.certificates)
    name = TLSVersion.from_wire(chosen)
    label = name.display if name else f"0x{chosen:04x}"
    return Refused(f"server chose {label}", flight.certificates)


async def _read_flight(
    reader: asyncio.StreamReader, want_certificates: bool, deadline: Deadline
) -> hello.ServerFlight | Dropped:
    """The server's first flight, read until it is complete or the server stops sending.

    Bounded in bytes (the parser's limits) and time (the deadline; once the ServerHello is
    in, only a short wait for the chain).
    """
    buffer = bytearray()
    records_end = 0
    hello_seen: float | None = None
    while True:
        try:
            chunk = await _read_chunk(reader, _read_budget(deadline, hello_seen), deadline)
        except ProbeFailure as failure:
            return _stalled(buffer, failure)
        if not chunk:
            return _ended(buffer, reset=chunk is None, want_certificates=want_certificates)
        buffer += chunk
        if len(buffer) > hello.MAX_FLIGHT_BYTES:
            return _oversized(buffer, want_certificates)
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


def _read_budget(deadline: Deadline, hello_seen: float | None) -> float:
    budget = deadline.budget(COMMAND_TIMEOUT)
    if hello_seen is None:
        return budget
    # The verdict is in; the chain gets a short grace, not the whole deadline.
    return min(budget, max(0.0, hello_seen + _CHAIN_WAIT - time.monotonic()))


async def _read_chunk(
    reader: asyncio.StreamReader, budget: float, deadline: Deadline
) -> bytes | None:
    """The next bytes (empty at the end of the stream), None when the server reset."""
    try:
        with deadline.phase(Reason.READ_TIMEOUT):
            async with asyncio.timeout(budget):
                return await reader.read(_READ_SIZE)
    except OSError:  # reset, unreachable, ...: whatever came so far decides
        return None


def _stalled(buffer: bytearray, failure: ProbeFailure) -> hello.ServerFlight:
    """Timed out: a ServerHello already read keeps its verdict (the chain is lost)."""
    flight = hello.parse_server_flight(bytes(buffer), want_certificates=False)
    if flight.hello is None:
        raise failure
    return flight


def _ended(
    buffer: bytearray, *, reset: bool, want_certificates: bool
) -> hello.ServerFlight | Dropped:
    """Closed or reset: what came so far decides, and nothing at all is a dropped hello."""
    flight = hello.parse_server_flight(bytes(buffer), want_certificates=want_certificates)
    if flight.hello or flight.alert or flight.plaintext:
        return flight
    if not buffer:
        return Dropped("connection reset" if reset else "connection closed")
    raise ProbeFailure(Reason.TLS_PROTOCOL_ERROR, "connection closed mid-record")


def _oversized(buffer: bytearray, want_certificates: bool) -> hello.ServerFlight:
    """Over the size limit: a ServerHello keeps its verdict, anything else is hostile."""
    flight = hello.parse_server_flight(bytes(buffer), want_certificates=want_certificates)
    if flight.hello:
        return flight
    raise ProbeFailure(Reason.TLS_PROTOCOL_ERROR, "server's first flight is too large")

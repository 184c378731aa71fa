"""The server's first flight as a hostile server sends it: arbitrary bytes and valid flights
changed at random, through `parse_server_flight`, `complete_records_end` and the real
connection (`try_version` over a scripted server).

Only HelloParseError may leave the parser; a connection always ends in an outcome. Results
hang together: a complete flight has a verdict, the record walk agrees with an independent
one, and more bytes after a prefix never make an error go away or change a verdict.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.probe import connection
from exporter.probe.deadline import Deadline
from exporter.probe.hello import HELLO_RETRY_REQUEST_RANDOM, HelloParseError, ServerFlight
from exporter.probe.outcomes import Accepted, Dropped, Failed, NotOffered, Refused
from exporter.results import Reason
from exporter.target import Target, TLSMode, TLSVersion
from exporter.transcript import ConnectionRecorder
from tests.support import tlsbytes
from tests.support.certs import der_chain
from tests.support.flightcheck import check_prefixes, check_records_end, flight_or_error
from tests.support.mutate import mutated
from tests.support.scripted import ScriptedEndpoint, chunked

#: Far above what a scripted server needs, far below the probe's deadline.
QUICK = 3.0


@cache
def _real_chain() -> tuple[bytes, ...]:
    ca = trustme.CA()
    return der_chain(ca.issue_cert("mx.test"))


@dataclass(frozen=True)
class Expected:
    """What a valid flight must read as."""

    version: TLSVersion
    hello: tuple[int, int] | None = None  # (wire version, cipher)
    alert: int | None = None
    certificates: tuple[bytes, ...] | None = None
    plaintext: bool = False


def _records(content_type: int, payload: bytes, cut: int, version: int) -> bytes:
    return b"".join(
        tlsbytes.record(content_type, payload[i : i + cut], version)
        for i in range(0, len(payload), cut)
    )


_WARNING = tlsbytes.record(21, bytes([1, 112]))  # unrecognized_name, as a warning
_CCS = tlsbytes.record(20, b"\x01")


@st.composite
def valid_flights(draw: st.DrawFn) -> tuple[bytes, Expected]:
    """A flight as real servers send it, with what it must read as."""
    kind = draw(st.sampled_from(["legacy", "tls13", "retry", "alert", "sslv2", "text"]))
    warnings = _WARNING * draw(st.integers(0, 2))
    cipher = draw(st.sampled_from([0x002F, 0xC02F, 0x1301, 0x000A]) | st.integers(0, 0xFFFF))
    if kind == "legacy":
        wire = draw(st.sampled_from([0x0300, 0x0301, 0x0302, 0x0303]))
        chain = draw(
            st.just(_real_chain()) | st.lists(st.binary(min_size=1, max_size=200), max_size=3)
        )
        messages = (
            tlsbytes.server_hello(wire, cipher)
            + tlsbytes.certificate(*chain)
            + tlsbytes.SERVER_HELLO_DONE
        )
        cut = draw(st.integers(-(-len(messages) // 48), len(messages)))  # <= 48 records
        record_version = draw(st.sampled_from([0x0300, 0x0301, wire]))
        data = warnings + _records(22, messages, cut, record_version)
        version = TLSVersion.from_wire(wire)
        assert version is not None
        return data, Expected(version, (wire, cipher), certificates=tuple(chain))
    if kind in ("tls13", "retry"):
        random = HELLO_RETRY_REQUEST_RANDOM if kind == "retry" else b"\x22" * 32
        body = tlsbytes.record(22, tlsbytes.server_hello(0x0304, cipher, random))
        rest = _CCS + tlsbytes.record(23, draw(st.binary(min_size=1, max_size=100)))
        return warnings + body + rest, Expected(TLSVersion.TLS1_3, (0x0304, cipher))
    if kind == "alert":
        description = draw(st.integers(0, 255))
        version = draw(st.sampled_from(list(TLSVersion)[1:]))
        return warnings + tlsbytes.alert(description), Expected(version, alert=description)
    if kind == "sslv2":
        cert = draw(st.binary(min_size=1, max_size=300))
        body = struct.pack("!BBBHHHH", 4, 0, 1, 0x0002, len(cert), 3, 16)
        body += cert + b"\x07\x00\xc0" + bytes(16)
        data = struct.pack("!H", 0x8000 | len(body)) + body
        return data, Expected(TLSVersion.SSL2, (0x0002, 0x0700C0), certificates=(cert,))
    return b"454 4.7.0 TLS not available due to local problem\r\n", Expected(
        TLSVersion.TLS1_2, plaintext=True
    )


# --- the parser -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_flights())
def test_valid_flights_read_as_built(flight: tuple[bytes, Expected]) -> None:
    data, expected = flight
    result = flight_or_error(data)
    assert isinstance(result, ServerFlight), result
    assert result.complete
    got = (result.hello.version, result.hello.cipher) if result.hello else None
    assert got == expected.hello
    assert (result.alert.description if result.alert else None) == expected.alert
    assert (result.plaintext is not None) == expected.plaintext
    if expected.certificates is not None:
        assert result.certificates == expected.certificates
    check_prefixes(data, want=True)
    check_records_end(data)


@st.composite
def mutated_flights(draw: st.DrawFn) -> bytes:
    data, _ = draw(valid_flights())
    return draw(mutated(data, max_edits=4))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_flights() | st.binary(max_size=600), st.booleans())
def test_mutated_flights_give_a_flight_or_a_parse_error(data: bytes, want: bool) -> None:
    flight_or_error(data, want)
    check_records_end(data)
    check_prefixes(data, want)


def test_the_record_limit_holds_however_small_the_records() -> None:
    messages = tlsbytes.server_hello(0x0303) + tlsbytes.certificate(b"x" * 5000)
    data = _records(22, messages, 1, 0x0303)
    assert isinstance(flight_or_error(data), HelloParseError)


# --- the real connection ----------------------------------------------------------------

TARGETS = {
    TLSMode.IMPLICIT: Target("mx.test", 465, TLSMode.IMPLICIT, ehlo_name="probe.test"),
    TLSMode.STARTTLS: Target("mx.test", 25, TLSMode.STARTTLS, ehlo_name="probe.test"),
}
SMTP_UP_TO_TLS = b"220 mx.test ESMTP\r\n250-mx.test\r\n250 STARTTLS\r\n220 go ahead\r\n"


async def _try(version: TLSVersion, mode: TLSMode, chunks: Sequence[bytes], reset: bool) -> object:
    endpoint = ScriptedEndpoint(chunks, reset=reset)
    log = ConnectionRecorder(time.monotonic())
    outcome = await connection.try_version(
        TARGETS[mode], endpoint, version, Deadline.after(10), log
    )
    await endpoint.finished()
    return outcome


def try_version(
    version: TLSVersion, mode: TLSMode, data: bytes, cuts: Sequence[int], reset: bool = False
) -> object:
    """The outcome of one pinned connection to a server sending `data`: never an exception."""
    prefix = SMTP_UP_TO_TLS if mode is TLSMode.STARTTLS else b""
    started = time.monotonic()
    outcome = asyncio.run(_try(version, mode, chunked(prefix + data, cuts), reset))
    assert time.monotonic() - started < QUICK
    assert isinstance(outcome, Accepted | Refused | Dropped | Failed | NotOffered)
    return outcome


cuts = st.lists(st.integers(1, 300), min_size=1, max_size=4)
modes = st.sampled_from([TLSMode.IMPLICIT, TLSMode.STARTTLS])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_flights(), modes, cuts)
def test_valid_flights_decide_the_connection_whatever_the_cuts(
    flight: tuple[bytes, Expected], mode: TLSMode, sizes: list[int]
) -> None:
    data, expected = flight
    outcome = try_version(expected.version, mode, data, sizes)
    if expected.plaintext:
        assert isinstance(outcome, Failed)
        assert outcome.reason is Reason.STARTTLS_REJECTED
    elif expected.alert is not None:
        assert isinstance(outcome, Refused)
    else:
        assert isinstance(outcome, Accepted), outcome
        assert expected.hello is not None
        assert outcome.cipher == expected.hello[1]
        if expected.certificates is not None:
            assert outcome.certificates == expected.certificates


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutated_flights() | st.binary(max_size=600),
    st.sampled_from(list(TLSVersion)),
    modes,
    cuts,
    st.booleans(),
)
def test_any_answer_ends_the_connection_in_an_outcome(
    data: bytes, version: TLSVersion, mode: TLSMode, sizes: list[int], reset: bool
) -> None:
    try_version(version, mode, data, sizes, reset)

"""What any answer to a ClientHello must read as, checked the same way by the fuzz tests
and the coverage-guided harness (`bench/fuzz`): only HelloParseError leaves the parser, a
finished flight has a verdict, the record walk agrees with an independent one, and more
records after a prefix never make an error go away or change a verdict."""

from __future__ import annotations

from exporter.probe import hello
from exporter.probe.hello import HelloParseError, ServerFlight


def flight_or_error(data: bytes, want: bool = True) -> ServerFlight | HelloParseError:
    """The parse of `data`, its invariants checked; only HelloParseError may escape."""
    try:
        flight = hello.parse_server_flight(data, want_certificates=want)
    except HelloParseError as error:
        return error
    _sound(flight, data)
    return flight


def _sound(flight: ServerFlight, data: bytes) -> None:
    if flight.complete:
        # connection._judge relies on it: a finished flight says something.
        assert flight.hello or flight.alert or flight.plaintext is not None
    if flight.plaintext is not None:
        assert flight.plaintext == data
        assert flight.hello is None
        assert flight.alert is None
    if flight.hello is not None:
        assert 0 <= flight.hello.version <= 0xFFFF
        assert 0 <= flight.hello.cipher <= 0xFFFFFF
    if flight.alert is not None:
        assert 0 <= flight.alert.level <= 255
        assert flight.alert.name
    if flight.certificates is not None:
        assert sum(len(c) for c in flight.certificates) <= len(data)


def record_ends(data: bytes, start: int = 0) -> list[int]:
    """The end of every whole record from `start`, walked independently of the parser."""
    ends = []
    pos = start
    while len(data) - pos >= 5:
        end = pos + 5 + int.from_bytes(data[pos + 3 : pos + 5], "big")
        if end > len(data):
            break
        ends.append(end)
        pos = end
    return ends


def check_records_end(data: bytes) -> None:
    ends = record_ends(data)
    assert hello.complete_records_end(data) == (ends[-1] if ends else 0)
    # As the connection calls it: from where the last call ended, over a longer buffer.
    for cut in (0, len(data) // 3, len(data) // 2, len(data) - 1):
        partial = hello.complete_records_end(data[: max(cut, 0)])
        assert hello.complete_records_end(bytearray(data), partial) == (ends[-1] if ends else 0)


def _same_verdict(first: ServerFlight, later: ServerFlight) -> bool:
    return first.hello == later.hello and first.alert == later.alert


def check_prefixes(data: bytes, want: bool) -> None:
    """Cut where records end, as the connection parses: a prefix's error stays an error,
    and once a prefix completes, more records never change its verdict."""
    if not data or data[0] not in (hello.ALERT, hello.HANDSHAKE):
        return
    done: ServerFlight | None = None
    failed = False
    for end in [*record_ends(data)[: hello.MAX_FLIGHT_RECORDS + 2], len(data)]:
        result = flight_or_error(data[:end], want)
        if failed:
            assert isinstance(result, HelloParseError), (end, result)
        elif isinstance(result, HelloParseError):
            failed = True
        elif done is not None:
            assert _same_verdict(done, result), (end, done, result)
        elif result.complete:
            done = result

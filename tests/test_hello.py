"""The ClientHello builder and the ServerHello/alert parser, byte for byte."""

from __future__ import annotations

import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from exporter.probe import hello, suites
from exporter.probe.hello import (
    HELLO_RETRY_REQUEST_RANDOM,
    HelloParseError,
    client_hello,
    parse_server_flight,
)
from exporter.target import TLSVersion
from tests.support import tlsbytes


def _fields(record: bytes) -> dict[str, object]:
    """Decode a ClientHello record into the fields the builder promises."""
    assert record[0] == 22
    length = struct.unpack("!H", record[3:5])[0]
    assert len(record) == 5 + length
    handshake = record[5:]
    assert handshake[0] == 1
    body_length = int.from_bytes(handshake[1:4], "big")
    assert body_length == len(handshake) - 4
    pos = 4
    legacy = struct.unpack("!H", handshake[pos : pos + 2])[0]
    pos += 2 + 32
    sid_len = handshake[pos]
    pos += 1 + sid_len
    n = struct.unpack("!H", handshake[pos : pos + 2])[0]
    ciphers = [struct.unpack("!H", handshake[pos + 2 + i : pos + 4 + i])[0] for i in range(0, n, 2)]
    pos += 2 + n
    comp_len = handshake[pos]
    pos += 1 + comp_len
    extensions: dict[int, bytes] = {}
    if pos < len(handshake):
        total = struct.unpack("!H", handshake[pos : pos + 2])[0]
        pos += 2
        end = pos + total
        assert end == len(handshake)
        while pos < end:
            kind, size = struct.unpack("!HH", handshake[pos : pos + 4])
            extensions[kind] = handshake[pos + 4 : pos + 4 + size]
            pos += 4 + size
    return {
        "record_version": struct.unpack("!H", record[1:3])[0],
        "legacy": legacy,
        "session_id_len": sid_len,
        "ciphers": ciphers,
        "extensions": extensions,
        "handshake_length": len(handshake),
    }


@pytest.mark.parametrize(
    "version", [TLSVersion.SSL3, TLSVersion.TLS1_0, TLSVersion.TLS1_1, TLSVersion.TLS1_2]
)
def test_legacy_hellos_pin_their_version(version: TLSVersion) -> None:
    fields = _fields(client_hello(version, "mx.example.org"))
    assert fields["legacy"] == version.wire
    ciphers = fields["ciphers"]
    assert isinstance(ciphers, list)
    assert 0x00FF in ciphers
    assert len(ciphers) <= 128
    # Legacy servers often accept only static-RSA CBC suites: they must be offered.
    assert 0x002F in ciphers
    assert 0x0035 in ciphers
    assert 0x000A in ciphers
    extensions = fields["extensions"]
    assert isinstance(extensions, dict)
    assert 43 not in extensions  # no supported_versions below 1.3
    if version is TLSVersion.SSL3:
        assert extensions == {}
        assert fields["record_version"] == 0x0300
    else:
        assert fields["record_version"] == 0x0301
        assert (13 in extensions) == (version is TLSVersion.TLS1_2)
        assert b"mx.example.org" in extensions[0]


def test_tls13_hello_has_what_rfc8446_requires() -> None:
    fields = _fields(client_hello(TLSVersion.TLS1_3, "mx.example.org"))
    assert fields["legacy"] == 0x0303
    assert fields["session_id_len"] == 32
    extensions = fields["extensions"]
    assert isinstance(extensions, dict)
    assert extensions[43] == b"\x02\x03\x04"
    for required in (10, 13, 45, 51):
        assert required in extensions
    key_share = extensions[51]
    assert key_share[2:4] == b"\x00\x1d"
    assert key_share[4:6] == b"\x00\x20"
    ciphers = fields["ciphers"]
    assert isinstance(ciphers, list)
    assert {0x1301, 0x1302, 0x1303} <= set(ciphers)


@pytest.mark.parametrize("version", list(TLSVersion))
@pytest.mark.parametrize("servername", ["", "a.example", "x" * 60 + ".example.org", "192.0.2.1"])
def test_hello_length_avoids_the_f5_range(version: TLSVersion, servername: str) -> None:
    record = client_hello(version, servername)
    if version is TLSVersion.SSL2:
        assert record[0] & 0x80
        return
    length = _fields(record)["handshake_length"]
    assert isinstance(length, int)
    assert not 256 <= length < 512


@pytest.mark.parametrize("address", ["192.0.2.1", "2001:db8::1", "[2001:db8::1]"])
def test_no_sni_for_ip_literals(address: str) -> None:
    extensions = _fields(client_hello(TLSVersion.TLS1_2, address))["extensions"]
    assert isinstance(extensions, dict)
    assert 0 not in extensions


def test_sni_without_the_root_dot() -> None:
    extensions = _fields(client_hello(TLSVersion.TLS1_2, "mx.example.org."))["extensions"]
    assert isinstance(extensions, dict)
    assert extensions[0].endswith(b"\x00\x0emx.example.org")


def test_suite_names() -> None:
    assert suites.suite_name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert suites.suite_name(0xABCD) == "0xABCD"


_server_hello = tlsbytes.server_hello
_certificate = tlsbytes.certificate
_record = tlsbytes.record
_DONE = tlsbytes.SERVER_HELLO_DONE


def test_tls12_flight_with_chain() -> None:
    messages = _server_hello(0x0303, 0xC02F) + _certificate(b"leaf", b"intermediate") + _DONE
    flight = parse_server_flight(_record(22, messages))
    assert flight.complete
    assert flight.hello is not None
    assert flight.hello.version == 0x0303
    assert flight.hello.cipher == 0xC02F
    assert flight.certificates == (b"leaf", b"intermediate")


def test_flight_split_across_records_and_reads() -> None:
    messages = _server_hello(0x0301) + _certificate(b"leaf") + _DONE
    data = _record(22, messages[:10], 0x0301) + _record(22, messages[10:], 0x0301)
    for cut in range(len(data)):
        partial = parse_server_flight(data[:cut])
        assert not partial.complete
    whole = parse_server_flight(data)
    assert whole.complete
    assert whole.certificates == (b"leaf",)


def test_tls13_server_hello_and_hello_retry_request() -> None:
    flight = parse_server_flight(_record(22, _server_hello(0x0304)))
    assert flight.complete
    assert flight.hello is not None
    assert flight.hello.version == 0x0304
    retry = parse_server_flight(
        _record(22, _server_hello(0x0304, random=HELLO_RETRY_REQUEST_RANDOM))
    )
    assert retry.hello is not None
    assert retry.hello.retry_request


def test_alert_before_server_hello() -> None:
    flight = parse_server_flight(_record(21, b"\x02\x46"))
    assert flight.complete
    assert flight.alert is not None
    assert flight.alert.name == "protocol_version"


def test_plaintext_smtp_answer() -> None:
    flight = parse_server_flight(b"421 4.7.0 Too many errors\r\n")
    assert flight.complete
    assert flight.plaintext is not None


def test_sslv2_server_hello() -> None:
    cert = b"certificate-bytes"
    body = (
        b"\x04\x00\x01"
        + struct.pack("!HHHH", 2, len(cert), 3, 16)
        + cert
        + b"\x07\x00\xc0"
        + b"\x00" * 16
    )
    flight = parse_server_flight(struct.pack("!H", 0x8000 | len(body)) + body)
    assert flight.hello is not None
    assert flight.hello.version == 0x0002
    assert flight.certificates == (cert,)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x02\x03\x04\x05",
        _record(22, b"\x0b\x00\x00\x00"),  # Certificate before ServerHello
        _record(22, b"\x02\x00\x00\x05\x03\x03\x00\x00\x00"),  # truncated ServerHello body
        _record(21, b"\x02"),  # one-byte alert
        _record(23, b"secret"),  # application data first
        struct.pack("!BHH", 22, 0x0303, 40000) + b"x",  # oversized record
    ],
)
def test_malformed_flights_raise_parse_error(data: bytes) -> None:
    with pytest.raises(HelloParseError):
        parse_server_flight(data)


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=2048), st.booleans())
def test_any_bytes_give_a_flight_or_a_parse_error(data: bytes, want: bool) -> None:
    try:
        flight = parse_server_flight(data, want_certificates=want)
    except HelloParseError:
        return
    assert isinstance(flight, hello.ServerFlight)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([0x0300, 0x0301, 0x0302, 0x0303, 0x0304]),
    st.integers(0, 0xFFFF),
    st.lists(st.binary(min_size=1, max_size=300), max_size=4),
    st.integers(1, 64),
)
def test_well_formed_flights_parse_whatever_the_record_cuts(
    version: int, cipher: int, chain: list[bytes], chunk: int
) -> None:
    messages = _server_hello(version, cipher) + _certificate(*chain) + _DONE
    assume(-(-len(messages) // chunk) <= hello.MAX_FLIGHT_RECORDS)
    data = b"".join(_record(22, messages[i : i + chunk]) for i in range(0, len(messages), chunk))
    flight = parse_server_flight(data)
    assert flight.complete
    assert flight.hello is not None
    assert flight.hello.version == version
    assert flight.hello.cipher == cipher
    if version < 0x0304:
        assert flight.certificates == tuple(chain)


def test_too_many_tiny_records_is_hostile() -> None:
    messages = _server_hello(0x0303) + _certificate(b"x" * 200) + _DONE
    data = b"".join(_record(22, messages[i : i + 1]) for i in range(len(messages)))
    with pytest.raises(HelloParseError):
        parse_server_flight(data)


def test_complete_records_end() -> None:
    data = _record(22, b"abc") + _record(21, b"\x02\x28")
    assert hello.complete_records_end(data) == len(data)
    assert hello.complete_records_end(data[:-1]) == 8
    assert hello.complete_records_end(data, 8) == len(data)
    assert hello.complete_records_end(data[:4]) == 0


def test_warning_alert_before_server_hello_is_skipped() -> None:
    warning = _record(21, b"\x01\x70")  # unrecognized_name, level warning
    messages = _server_hello(0x0303, 0xC02F) + _certificate(b"leaf") + _DONE
    flight = parse_server_flight(warning + _record(22, messages))
    assert flight.alert is None
    assert flight.hello is not None
    assert flight.hello.version == 0x0303
    assert flight.certificates == (b"leaf",)
    fatal = parse_server_flight(_record(21, b"\x02\x28") + _record(22, messages))
    assert fatal.alert is not None
    assert fatal.alert.name == "handshake_failure"
    with pytest.raises(HelloParseError):
        parse_server_flight(warning * 10 + _record(22, messages))


def test_malformed_certificate_message_keeps_the_verdict() -> None:
    broken = b"\x0b\x00\x00\x04\x00\x00\x09\x00"  # chain length says 9, has 1 byte
    flight = parse_server_flight(_record(22, _server_hello(0x0301) + broken + _DONE))
    assert flight.complete
    assert flight.hello is not None
    assert flight.hello.version == 0x0301
    assert flight.certificates == ()


def test_sslv2_error_is_a_refusal() -> None:
    body = b"\x00\x00\x01"  # ERROR, NO-CIPHER-ERROR
    flight = parse_server_flight(struct.pack("!H", 0x8000 | len(body)) + body)
    assert flight.complete
    assert flight.alert is not None
    assert flight.hello is None

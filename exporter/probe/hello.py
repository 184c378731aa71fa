"""ClientHello bytes built by hand, and the server's first flight parsed without a TLS library.

Version detection must not depend on the local OpenSSL, which refuses SSLv3 and (at its
default security level) TLS 1.0/1.1 outright. So the probe sends a ClientHello pinned to one
version and reads only the plaintext ServerHello (or alert) that answers it; no key exchange
is ever done. Up to TLS 1.2 the server's Certificate message is plaintext too, so the chain
comes for free.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from exporter.names import sni_name
from exporter.probe import suites
from exporter.target import TLSVersion

# Record content types.
CHANGE_CIPHER_SPEC: Final = 20
ALERT: Final = 21
HANDSHAKE: Final = 22
APPLICATION_DATA: Final = 23

# Handshake message types.
_SERVER_HELLO: Final = 2
_CERTIFICATE: Final = 11
_SERVER_HELLO_DONE: Final = 14

# Extension numbers.
_EXT_SERVER_NAME: Final = 0
_EXT_SUPPORTED_GROUPS: Final = 10
_EXT_EC_POINT_FORMATS: Final = 11
_EXT_SIGNATURE_ALGORITHMS: Final = 13
_EXT_PADDING: Final = 21
_EXT_EXTENDED_MASTER_SECRET: Final = 23
_EXT_SESSION_TICKET: Final = 35
_EXT_SUPPORTED_VERSIONS: Final = 43
_EXT_PSK_KEY_EXCHANGE_MODES: Final = 45
_EXT_KEY_SHARE: Final = 51

_X25519: Final = 0x001D
_GROUPS: Final = (_X25519, 0x0017, 0x0018, 0x0019, 0x001E, 0x0100, 0x0101, 0x0102)
_SIGNATURE_ALGORITHMS: Final = (
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0804, 0x0805, 0x0806,
    0x0809, 0x080A, 0x080B, 0x0401, 0x0501, 0x0601, 0x0303, 0x0203, 0x0201,
)  # fmt: skip

#: ServerHello.random of a HelloRetryRequest (RFC 8446, 4.1.3).
HELLO_RETRY_REQUEST_RANDOM: Final = bytes.fromhex(
    "CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C"
)

#: SSLv2 cipher kinds (3 bytes each) offered in an SSLv2 CLIENT-HELLO.
_SSL2_CIPHERS: Final = (0x0700C0, 0x050080, 0x030080, 0x010080, 0x060040, 0x040080, 0x020080)

#: The most the first flight may take: a long certificate chain fits comfortably.
MAX_FLIGHT_BYTES: Final = 256 * 1024
_MAX_RECORD: Final = 16384 + 2048

_WARNING: Final = 1
_CLOSE_NOTIFY: Final = 0

_ALERT_NAMES: Final = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}


class HelloParseError(ValueError):
    """The server's answer is neither a well-formed TLS flight nor plain text."""


@dataclass(frozen=True, slots=True)
class ServerHello:
    """The fields of a ServerHello that decide a version verdict."""

    #: The version the server chose: supported_versions when present, else legacy_version.
    version: int
    cipher: int
    retry_request: bool = False


@dataclass(frozen=True, slots=True)
class Alert:
    level: int
    description: int

    @property
    def name(self) -> str:
        return _ALERT_NAMES.get(self.description, f"alert {self.description}")

    @property
    def is_warning(self) -> bool:
        """A warning other than close_notify: clients carry on past it."""
        return self.level == _WARNING and self.description != _CLOSE_NOTIFY


@dataclass(frozen=True, slots=True)
class ServerFlight:
    """What the server's answer to a ClientHello says so far."""

    #: True once nothing more needs to be read.
    complete: bool
    hello: ServerHello | None = None
    alert: Alert | None = None
    #: DER certificates in the order sent, when the flight carried them in plaintext.
    certificates: tuple[bytes, ...] | None = None
    #: The server answered in plain text (an SMTP reply), not TLS.
    plaintext: bytes | None = None


def _u8(value: int) -> bytes:
    return struct.pack("!B", value)


def _u16(value: int) -> bytes:
    return struct.pack("!H", value)


def _u24(value: int) -> bytes:
    return struct.pack("!I", value)[1:]


def _vec8(data: bytes) -> bytes:
    return _u8(len(data)) + data


def _vec16(data: bytes) -> bytes:
    return _u16(len(data)) + data


@functools.cache
def _u16_list(values: tuple[int, ...]) -> bytes:
    """The numbers as two-byte fields; the lists are constants, so each is packed once."""
    return struct.pack(f"!{len(values)}H", *values)


def _extension(kind: int, body: bytes) -> bytes:
    return _u16(kind) + _vec16(body)


def _server_name(servername: str) -> bytes | None:
    """The server_name extension, or None where SNI must not be sent (IP literals)."""
    name = sni_name(servername)
    if name is None:
        return None
    encoded = name.encode("ascii")
    if len(encoded) > 253:
        return None
    entry = _u8(0) + _vec16(encoded)
    return _extension(_EXT_SERVER_NAME, _vec16(entry))


def _extensions(version: TLSVersion, servername: str) -> bytes:
    exts = []
    sni = _server_name(servername)
    if sni is not None:
        exts.append(sni)
    exts.append(_extension(_EXT_SUPPORTED_GROUPS, _vec16(_u16_list(_GROUPS))))
    exts.append(_extension(_EXT_EC_POINT_FORMATS, _vec8(b"\x00")))
    exts.append(_extension(_EXT_SESSION_TICKET, b""))
    if version in (TLSVersion.TLS1_2, TLSVersion.TLS1_3):
        exts.append(_extension(_EXT_SIGNATURE_ALGORITHMS, _vec16(_u16_list(_SIGNATURE_ALGORITHMS))))
        exts.append(_extension(_EXT_EXTENDED_MASTER_SECRET, b""))
    if version is TLSVersion.TLS1_3:
        exts.append(_extension(_EXT_SUPPORTED_VERSIONS, _vec8(_u16(0x0304))))
        exts.append(_extension(_EXT_PSK_KEY_EXCHANGE_MODES, _vec8(b"\x01")))
        share = _u16(_X25519) + _vec16(os.urandom(32))
        exts.append(_extension(_EXT_KEY_SHARE, _vec16(share)))
    return b"".join(exts)


def _sslv2_client_hello() -> bytes:
    ciphers = b"".join(struct.pack("!I", c)[1:] for c in _SSL2_CIPHERS)
    challenge = os.urandom(16)
    body = _u8(1) + _u16(0x0002) + _u16(len(ciphers)) + _u16(0) + _u16(16) + ciphers + challenge
    return _u16(0x8000 | len(body)) + body


def client_hello(version: TLSVersion, servername: str = "") -> bytes:
    """One ClientHello record that offers exactly `version` and a broad set of suites.

    SSLv3 gets no extensions (SSLv3 servers may choke on them); TLS 1.3 uses the
    middlebox-compatible form (legacy version 1.2, a 32-byte session id). A hello whose
    length falls in 256-511 bytes is padded to 512 (RFC 7685): some load balancers hang
    on that range.
    """
    if version is TLSVersion.SSL2:
        return _sslv2_client_hello()
    legacy = min(version.wire, 0x0303)
    session_id = os.urandom(32) if version is TLSVersion.TLS1_3 else b""
    offered = suites.suites_for(version.wire)
    body = (
        _u16(legacy)
        + os.urandom(32)
        + _vec8(session_id)
        + _vec16(_u16_list(offered))
        + _vec8(b"\x00")  # compression: null only
    )
    if version is not TLSVersion.SSL3:
        extensions = _extensions(version, servername)
        length = 4 + len(body) + 2 + len(extensions)
        if 256 <= length < 512:
            pad = 512 - length - 4
            extensions += _extension(_EXT_PADDING, bytes(max(pad, 0)))
        body += _vec16(extensions)
    handshake = _u8(1) + _u24(len(body)) + body
    record_version = 0x0300 if version is TLSVersion.SSL3 else 0x0301
    return _u8(HANDSHAKE) + _u16(record_version) + _vec16(handshake)


def describe_client_hello(version: TLSVersion, servername: str, size: int) -> str:
    """What a ClientHello of `client_hello` offers, in a line, for the transcript."""
    if version is TLSVersion.SSL2:
        return f"SSLv2 ClientHello: {len(_SSL2_CIPHERS)} cipher kinds, {size} bytes"
    offered = len(suites.suites_for(version.wire))
    sni = "no SNI" if version is TLSVersion.SSL3 else f"SNI {sni_name(servername) or 'none'}"
    return f"ClientHello for {version.display} only: {offered} cipher suites, {sni}, {size} bytes"


class _Cursor:
    """Bounds-checked reads through one message body; every overrun is a HelloParseError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise HelloParseError("message is shorter than its length fields say")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _parse_server_hello(body: bytes) -> ServerHello:
    cursor = _Cursor(body)
    legacy = cursor.u16()
    random = cursor.take(32)
    cursor.take(cursor.u8())  # session id
    cipher = cursor.u16()
    cursor.u8()  # compression method
    chosen = legacy
    if cursor.left:
        extensions = _Cursor(cursor.take(cursor.u16()))
        while extensions.left:
            kind = extensions.u16()
            data = extensions.take(extensions.u16())
            if kind == _EXT_SUPPORTED_VERSIONS:
                if len(data) != 2:
                    raise HelloParseError("supported_versions in ServerHello is not 2 bytes")
                chosen = struct.unpack("!H", data)[0]
    return ServerHello(
        version=chosen,
        cipher=cipher,
        retry_request=random == HELLO_RETRY_REQUEST_RANDOM,
    )


def _parse_certificates(body: bytes) -> tuple[bytes, ...]:
    cursor = _Cursor(body)
    chain = _Cursor(cursor.take(cursor.u24()))
    certificates = []
    while chain.left:
        certificates.append(chain.take(chain.u24()))
    return tuple(certificates)


def _looks_like_text(data: bytes) -> bool:
    sample = data[:64]
    return bool(sample) and all(32 <= b < 127 or b in (9, 10, 13) for b in sample)


def _parse_sslv2(data: bytes) -> ServerFlight:
    if len(data) < 2:
        return ServerFlight(complete=False)
    length = ((data[0] & 0x7F) << 8) | data[1]
    if len(data) < 2 + length:
        return ServerFlight(complete=False)
    cursor = _Cursor(data[2 : 2 + length])
    kind = cursor.u8()
    if kind == 0:  # SSLv2 ERROR (no cipher, ...): the SSLv2 way to refuse
        return ServerFlight(complete=True, alert=Alert(2, 40))
    if kind != 4:
        raise HelloParseError("SSLv2 answer is not a SERVER-HELLO")
    cursor.u8()  # session id hit
    cursor.u8()  # certificate type
    version = cursor.u16()
    cert_length, ciphers_length, _ = cursor.u16(), cursor.u16(), cursor.u16()
    certificate = cursor.take(cert_length)
    ciphers = cursor.take(ciphers_length)
    if ciphers_length % 3:
        raise HelloParseError("SSLv2 cipher list is not a multiple of 3 bytes")
    if not ciphers:
        # An SSLv2 server with every SSLv2 cipher disabled still answers, with none.
        return ServerFlight(complete=True, alert=Alert(2, 40))
    hello = ServerHello(version=version, cipher=int.from_bytes(ciphers[:3]))
    return ServerFlight(
        complete=True, hello=hello, certificates=(certificate,) if certificate else ()
    )


_RECORD_TYPES: Final = frozenset({CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA})
_MAX_WARNINGS: Final = 4

#: More records than this before the flight is complete is a hostile server, not TLS.
MAX_FLIGHT_RECORDS: Final = 64


def complete_records_end(data: bytes | bytearray, start: int = 0) -> int:
    """Where the last whole TLS record in `data` ends, walking headers from `start`.

    Cheap enough to run on every read, so a server that trickles its answer byte by byte
    costs a header walk per read, and a full parse only when a record completes.
    """
    pos = start
    while pos + 5 <= len(data):
        end = pos + 5 + ((data[pos + 3] << 8) | data[pos + 4])
        if end > len(data):
            break
        pos = end
    return pos


def parse_server_flight(data: bytes, *, want_certificates: bool = True) -> ServerFlight:
    """Read the server's answer to a ClientHello as far as it goes.

    Returns a flight that is `complete` once the verdict (and, when wanted and sent in
    plaintext, the certificate chain) is known; an incomplete one means "read more".
    Raises HelloParseError for anything that is neither TLS nor an SMTP-style text reply.
    """
    if not data:
        return ServerFlight(complete=False)
    if data[0] & 0x80:
        return _parse_sslv2(data)
    if data[0] not in _RECORD_TYPES:
        if _looks_like_text(data):
            return ServerFlight(complete=b"\n" in data, plaintext=data)
        raise HelloParseError(f"not a TLS record (first byte 0x{data[0]:02x})")
    return _parse_records(data, want_certificates)


def _parse_records(data: bytes, want_certificates: bool) -> ServerFlight:
    handshake = bytearray()
    hello: ServerHello | None = None
    warnings = 0
    for content_type, payload, end in _whole_records(data):
        if content_type == ALERT:
            alert = _parse_alert(payload)
            if hello is None and alert.is_warning:
                # e.g. unrecognized_name from servers without a matching vhost: clients
                # carry on, and so does the probe (a few times, as OpenSSL does).
                warnings += 1
                if warnings > _MAX_WARNINGS:
                    raise HelloParseError("too many warning alerts before ServerHello")
                continue
            if hello is None:
                return ServerFlight(complete=True, alert=alert)
            return ServerFlight(complete=True, hello=hello)
        if content_type != HANDSHAKE:
            if hello is None:
                raise HelloParseError(f"record type {content_type} before ServerHello")
            # Encrypted or CCS records follow: nothing more is plaintext.
            return ServerFlight(complete=True, hello=hello)
        handshake += payload
        if _next_is_handshake(data, end):
            continue  # walk the messages once the run of handshake records ends
        hello, done, certificates = _walk_handshake(bytes(handshake))
        flight = _flight_so_far(hello, done, certificates, want_certificates)
        if flight is not None:
            return flight
    return ServerFlight(complete=False, hello=hello)


def _whole_records(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(content type, payload, end) of every whole record, up to the first partial one.

    Each header is checked as soon as it is there, before its record completes, so a
    hostile header fails at once instead of being waited for.
    """
    pos = 0
    records = 0
    while pos + 5 <= len(data):
        records += 1
        if records > MAX_FLIGHT_RECORDS:
            raise HelloParseError(f"over {MAX_FLIGHT_RECORDS} records before the flight ended")
        content_type, _version, length = struct.unpack("!BHH", data[pos : pos + 5])
        if content_type not in _RECORD_TYPES:
            raise HelloParseError(f"unknown TLS record type {content_type}")
        if length > _MAX_RECORD:
            raise HelloParseError(f"TLS record of {length} bytes is over the limit")
        end = pos + 5 + length
        if end > len(data):
            return
        yield content_type, data[pos + 5 : end], end
        pos = end


def _parse_alert(payload: bytes) -> Alert:
    if len(payload) < 2:
        raise HelloParseError("alert record shorter than 2 bytes")
    return Alert(payload[0], payload[1])


def _flight_so_far(
    hello: ServerHello | None,
    done: bool,
    certificates: tuple[bytes, ...] | None,
    want_certificates: bool,
) -> ServerFlight | None:
    """The finished flight once the handshake messages say all that is wanted, else None."""
    if hello is None:
        return None
    if hello.version >= 0x0304 or hello.retry_request or not want_certificates:
        # TLS 1.3 encrypts everything after the ServerHello: the verdict is all there is.
        return ServerFlight(complete=True, hello=hello)
    if certificates is not None or done:
        return ServerFlight(complete=True, hello=hello, certificates=certificates)
    return None


def _next_is_handshake(data: bytes, pos: int) -> bool:
    """Whether another whole handshake record follows at `pos`."""
    if pos + 5 > len(data) or data[pos] != HANDSHAKE:
        return False
    return pos + 5 + ((data[pos + 3] << 8) | data[pos + 4]) <= len(data)


def _walk_handshake(
    stream: bytes,
) -> tuple[ServerHello | None, bool, tuple[bytes, ...] | None]:
    """The ServerHello, whether ServerHelloDone was seen, and the chain, from whole messages."""
    hello: ServerHello | None = None
    certificates: tuple[bytes, ...] | None = None
    pos = 0
    while pos + 4 <= len(stream):
        kind = stream[pos]
        length = int.from_bytes(stream[pos + 1 : pos + 4], "big")
        if length > MAX_FLIGHT_BYTES:
            raise HelloParseError(f"handshake message of {length} bytes is over the limit")
        if pos + 4 + length > len(stream):
            break
        body = stream[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if hello is None:
            if kind != _SERVER_HELLO:
                raise HelloParseError(f"handshake message {kind} before ServerHello")
            hello = _parse_server_hello(body)
        elif kind == _CERTIFICATE:
            try:
                certificates = _parse_certificates(body)
            except HelloParseError:
                certificates = ()  # the verdict stands on the ServerHello; the chain is lost
        elif kind == _SERVER_HELLO_DONE:
            return hello, True, certificates
    return hello, False, certificates

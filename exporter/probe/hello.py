"""ClientHello bytes built by hand, and the server's first flight parsed without a TLS library.

Version detection must not depend on the local OpenSSL, which refuses SSLv3 and (at its
default security level) TLS 1.0/1.1 outright. So the probe sends a ClientHello pinned to one
version and reads only the plaintext ServerHello (or alert) that answers it; no key exchange
is ever done. Up to TLS 1.2 the server's Certificate message is plaintext too, so the chain
comes for free.
"""

from __future__ import annotations

import enum
import functools
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from exporter.names import sni_name
from exporter.probe import suites
from exporter.target import TLSVersion

if TYPE_CHECKING:  # only the type: `exporter.senders` imports this package's suites
    from exporter.senders import SenderProfile

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
    for kind, body in _handshake_messages(stream):
        if hello is None:
            hello = _parse_server_hello(body)
        elif kind == _CERTIFICATE:
            try:
                certificates = _parse_certificates(body)
            except HelloParseError:
                certificates = ()  # the verdict stands on the ServerHello; the chain is lost
        elif kind == _SERVER_HELLO_DONE:
            return hello, True, certificates
    return hello, False, certificates


def _handshake_messages(stream: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, body) of each whole handshake message in `stream`, the first a ServerHello;
    a message cut short ends the walk (more may come)."""
    pos = 0
    while pos + 4 <= len(stream):
        kind = stream[pos]
        length = int.from_bytes(stream[pos + 1 : pos + 4], "big")
        if length > MAX_FLIGHT_BYTES:
            raise HelloParseError(f"handshake message of {length} bytes is over the limit")
        if pos + 4 + length > len(stream):
            return
        if pos == 0 and kind != _SERVER_HELLO:
            raise HelloParseError(f"handshake message {kind} before ServerHello")
        yield kind, stream[pos + 4 : pos + 4 + length]
        pos += 4 + length


# --- A sender's ClientHello, and whether that sender gets on with the answer -----------------

_SERVER_KEY_EXCHANGE: Final = 12
_EXT_RENEGOTIATION_INFO: Final = 0xFF01
_NAMED_CURVE: Final = 3
_PROTOCOL_VERSION_ALERT: Final = 70

#: Public keys for a TLS 1.3 key_share. Nothing is ever derived from them (the probe stops
#: at the ServerHello), so each curve's generator point (private key 1) does: servers check
#: that a point is on the curve, never where it came from. X25519 and X448 take any bytes.
_GENERATORS: Final = {
    0x0017: bytes.fromhex(
        "046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
        "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"
    ),
    0x0018: bytes.fromhex(
        "04AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A385502F25DBF55296C"
        "3A545E3872760AB73617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C00A"
        "60B1CE1D7E819D7A431D7C90EA0E5F"
    ),
    0x0019: bytes.fromhex(
        "0400C6858E06B70404E9CD9E3ECB662395B4429C648139053FB521F828AF606B4D3DBAA14B5E77EFE7"
        "5928FE1DC127A2FFA8DE3348B3C1856A429BF97E7E31C2E5BD66011839296A789A3BC0045C8A5FB42C"
        "7D1BD998F54449579B446817AFBD17273E662C97EE72995EF42640C550B9013FAD0761353C7086A272"
        "C24088BE94769FD16650"
    ),
}
_RANDOM_SHARES: Final = {0x001D: 32, 0x001E: 56}


def _public_key(group: int) -> bytes | None:
    """A key_share public key for `group`, or None for groups the probe cannot make one for."""
    if group in _RANDOM_SHARES:
        return os.urandom(_RANDOM_SHARES[group])
    return _GENERATORS.get(group)


def _key_share(groups: tuple[int, ...]) -> bytes:
    """One share, for the first group the probe can make one for, as clients send their
    first choice; none at all asks the server to name its group in a HelloRetryRequest."""
    for group in groups:
        share = _public_key(group)
        if share is not None:
            return _u16(group) + _vec16(share)
    return b""


def _profile_extensions(profile: SenderProfile, servername: str) -> bytes:
    exts = []
    sni = _server_name(servername) if profile.sni else None
    if sni is not None:
        exts.append(sni)
    below_13 = profile.min_version is not TLSVersion.TLS1_3
    if profile.groups:
        exts.append(_extension(_EXT_SUPPORTED_GROUPS, _vec16(_u16_list(profile.groups))))
        if below_13:
            exts.append(_extension(_EXT_EC_POINT_FORMATS, _vec8(b"\x00")))
    if below_13:
        exts.append(_extension(_EXT_RENEGOTIATION_INFO, _vec8(b"")))
        exts.append(_extension(_EXT_SESSION_TICKET, b""))
    exts.append(_extension(_EXT_EXTENDED_MASTER_SECRET, b""))
    if profile.max_version.wire >= TLSVersion.TLS1_2.wire and profile.signature_algorithms:
        algorithms = _u16_list(profile.signature_algorithms)
        exts.append(_extension(_EXT_SIGNATURE_ALGORITHMS, _vec16(algorithms)))
    if profile.max_version is TLSVersion.TLS1_3:
        offered = b"".join(_u16(version.wire) for version in profile.versions)
        exts.append(_extension(_EXT_SUPPORTED_VERSIONS, _vec8(offered)))
        exts.append(_extension(_EXT_PSK_KEY_EXCHANGE_MODES, _vec8(b"\x01")))
        exts.append(_extension(_EXT_KEY_SHARE, _vec16(_key_share(profile.groups))))
    return b"".join(exts)


def profile_client_hello(profile: SenderProfile, servername: str = "") -> bytes:
    """One ClientHello record offering what the sender offers, and nothing else.

    Its versions (supported_versions when it offers TLS 1.3, the legacy version below),
    its suites in its order, its groups, its signature algorithms, SNI when it sends SNI.
    Secure renegotiation is signalled by the extension, as most clients do, so the suite
    list stays the sender's own. Padded out of 256-511 bytes like the version hellos.
    """
    tls13 = profile.max_version is TLSVersion.TLS1_3
    body = (
        _u16(min(profile.max_version.wire, TLSVersion.TLS1_2.wire))
        + os.urandom(32)
        + _vec8(os.urandom(32) if tls13 else b"")
        + _vec16(_u16_list(profile.suites))
        + _vec8(b"\x00")  # compression: null only
    )
    extensions = _profile_extensions(profile, servername)
    length = 4 + len(body) + 2 + len(extensions)
    if 256 <= length < 512:
        extensions += _extension(_EXT_PADDING, bytes(max(512 - length - 4, 0)))
    body += _vec16(extensions)
    handshake = _u8(1) + _u24(len(body)) + body
    return _u8(HANDSHAKE) + _u16(TLSVersion.TLS1_0.wire) + _vec16(handshake)


def describe_profile_hello(profile: SenderProfile, servername: str, size: int) -> str:
    """What a ClientHello of `profile_client_hello` offers, in a line, for the transcript."""
    sni = f"SNI {sni_name(servername) or 'none'}" if profile.sni else "no SNI"
    return (
        f"ClientHello as {profile.name}: {_version_span(profile)},"
        f" {len(profile.suites)} cipher suites, {len(profile.groups)} groups, {sni},"
        f" {size} bytes"
    )


def _version_span(profile: SenderProfile) -> str:
    if profile.min_version is profile.max_version:
        return profile.max_version.display
    return f"{profile.min_version.display} to {profile.max_version.display}"


@dataclass(frozen=True, slots=True)
class KeyExchange:
    """What a ServerKeyExchange (TLS 1.2 and below) says about the key exchange."""

    #: The curve of an ECDHE key exchange (0xFF01/0xFF02: explicit curve parameters).
    group: int | None = None
    #: The size of the prime of a finite-field DHE key exchange, in bits.
    dh_bits: int | None = None
    #: Whether the server signed it (every suite but the anonymous ones).
    signed: bool = False
    #: The signature scheme (TLS 1.2); below TLS 1.2 the hash is MD5+SHA-1 or SHA-1.
    signature: int | None = None


@dataclass(frozen=True, slots=True)
class ProfileFlight:
    """What the server's answer to a sender's ClientHello says so far."""

    #: True once nothing more needs to be read.
    complete: bool
    hello: ServerHello | None = None
    #: TLS 1.3: the group of the ServerHello's key_share, or the one a HelloRetryRequest
    #: asks for.
    group: int | None = None
    key_exchange: KeyExchange | None = None
    alert: Alert | None = None
    #: The server answered in plain text (an SMTP reply), not TLS.
    plaintext: bytes | None = None


def parse_profile_flight(data: bytes) -> ProfileFlight:
    """Read the answer to a sender's ClientHello as far as the judgement needs it.

    Complete at an alert, at a TLS 1.3 ServerHello or HelloRetryRequest, and below TLS 1.3
    at the ServerKeyExchange (or the ServerHelloDone, when there is none): unlike the
    version test, the group and signature of the key exchange matter here.
    Raises HelloParseError for anything that is neither TLS nor an SMTP-style text reply.
    """
    if not data:
        return ProfileFlight(complete=False)
    if data[0] not in _RECORD_TYPES:
        if _looks_like_text(data):
            return ProfileFlight(complete=b"\n" in data, plaintext=data)
        raise HelloParseError(f"not a TLS record (first byte 0x{data[0]:02x})")
    return _profile_records(data)


def _profile_records(data: bytes) -> ProfileFlight:
    handshake = bytearray()
    flight = ProfileFlight(complete=False)
    warnings = 0
    for content_type, payload, end in _whole_records(data):
        if content_type == ALERT:
            alert = _parse_alert(payload)
            if not alert.is_warning:
                return replace(flight, complete=True, alert=alert)
            warnings += 1
            if warnings > _MAX_WARNINGS:
                raise HelloParseError("too many warning alerts")
            continue
        if content_type != HANDSHAKE:
            if flight.hello is None:
                raise HelloParseError(f"record type {content_type} before ServerHello")
            return replace(flight, complete=True)  # nothing more is plaintext
        handshake += payload
        if _next_is_handshake(data, end):
            continue
        flight = _profile_messages(bytes(handshake))
        if flight.complete:
            return flight
    return flight


def _profile_messages(stream: bytes) -> ProfileFlight:
    """The flight so far, from the whole handshake messages in `stream`."""
    hello: ServerHello | None = None
    for kind, body in _handshake_messages(stream):
        if hello is None:
            hello = _parse_server_hello(body)
            if hello.version >= TLSVersion.TLS1_3.wire or hello.retry_request:
                return ProfileFlight(complete=True, hello=hello, group=_key_share_group(body))
        elif kind == _SERVER_KEY_EXCHANGE:
            exchange = _parse_key_exchange(body, hello)
            return ProfileFlight(complete=True, hello=hello, key_exchange=exchange)
        elif kind == _SERVER_HELLO_DONE:
            return ProfileFlight(complete=True, hello=hello)
    return ProfileFlight(complete=False, hello=hello)


def _key_share_group(body: bytes) -> int | None:
    """The group of a ServerHello's key_share, or of a HelloRetryRequest's selected_group."""
    cursor = _Cursor(body)
    cursor.take(2 + 32)
    cursor.take(cursor.u8())  # session id
    cursor.take(3)  # cipher suite, compression method
    if not cursor.left:
        return None
    extensions = _Cursor(cursor.take(cursor.u16()))
    while extensions.left:
        kind = extensions.u16()
        data = _Cursor(extensions.take(extensions.u16()))
        if kind == _EXT_KEY_SHARE:
            return data.u16()
    return None


def _parse_key_exchange(body: bytes, hello: ServerHello) -> KeyExchange:
    """The group and signature of a ServerKeyExchange, as the suite says to read it."""
    kind = suites.key_exchange(hello.cipher) or ""
    cursor = _Cursor(body)
    group: int | None = None
    dh_bits: int | None = None
    if kind.startswith("ECDH"):
        curve_type = cursor.u8()
        group = cursor.u16() if curve_type == _NAMED_CURVE else 0xFF00 | curve_type
        if curve_type == _NAMED_CURVE:
            cursor.take(cursor.u8())  # the server's public point
    elif kind.startswith("DH"):
        prime = cursor.take(cursor.u16())
        dh_bits = int.from_bytes(prime, "big").bit_length()
        cursor.take(cursor.u16())  # generator
        cursor.take(cursor.u16())  # the server's public value
    else:
        return KeyExchange()  # a suite this parser cannot read the parameters of
    signed = not kind.endswith("_anon")
    signature = cursor.u16() if signed and hello.version >= TLSVersion.TLS1_2.wire else None
    return KeyExchange(group=group, dh_bits=dh_bits, signed=signed, signature=signature)


class Compatibility(enum.Enum):
    """Whether a sender could complete a handshake with the server."""

    COMPATIBLE = "compatible"
    INCOMPATIBLE = "incompatible"
    UNKNOWN = "unknown"


class Mismatch(enum.Enum):
    """What kept a sender and the server apart."""

    VERSION = "version"
    SUITE = "suite"
    GROUP = "group"
    SIGNATURE = "signature"
    ALERT = "alert"


@dataclass(frozen=True, slots=True)
class ProfileJudgement:
    """A sender's verdict on the server's answer, with what the server chose."""

    compatibility: Compatibility
    #: What failed, when incompatible.
    mismatch: Mismatch | None = None
    detail: str = ""
    version: int | None = None
    suite: int | None = None
    group: int | None = None


def judge_profile(profile: SenderProfile, flight: ProfileFlight) -> ProfileJudgement:
    """Whether the sender would go on with the server's answer to its ClientHello.

    Compatible: the server chose a version and suite the sender offers and, for TLS 1.3
    and (EC)DHE, a group it offers and a signature it accepts (a HelloRetryRequest for a
    group the sender offers is compatible: the sender sends that share next). Incompatible:
    an alert, or a choice the sender would abort on, named. Unknown: the answer ended
    before it said (plain text, or no ServerKeyExchange where one was due).
    """
    if flight.plaintext is not None:
        return ProfileJudgement(Compatibility.UNKNOWN, detail="plain text answer to ClientHello")
    if flight.alert is not None:
        mismatch = (
            Mismatch.VERSION
            if flight.alert.description == _PROTOCOL_VERSION_ALERT
            else Mismatch.ALERT
        )
        return ProfileJudgement(Compatibility.INCOMPATIBLE, mismatch, f"alert {flight.alert.name}")
    if flight.hello is None:
        return ProfileJudgement(Compatibility.UNKNOWN, detail="no ServerHello")
    return _judge_hello(profile, flight, flight.hello)


def _judge_hello(
    profile: SenderProfile, flight: ProfileFlight, hello: ServerHello
) -> ProfileJudgement:
    exchange = flight.key_exchange
    chosen = ProfileJudgement(
        Compatibility.COMPATIBLE,
        detail=_chosen_text(flight, hello),
        version=hello.version,
        suite=hello.cipher,
        group=flight.group if exchange is None else exchange.group,
    )
    for check in (_version_problem, _suite_problem, _group_problem, _signature_problem):
        problem = check(profile, flight, hello)
        if problem is not None:
            mismatch, detail = problem
            return replace(
                chosen, compatibility=Compatibility.INCOMPATIBLE, mismatch=mismatch, detail=detail
            )
    if _key_exchange_missing(flight, hello):
        detail = "the answer ended before the ServerKeyExchange"
        return replace(chosen, compatibility=Compatibility.UNKNOWN, detail=detail)
    return chosen


_Problem = tuple[Mismatch, str] | None


def _version_problem(
    profile: SenderProfile, _flight: ProfileFlight, hello: ServerHello
) -> _Problem:
    if profile.offers_version(hello.version):
        return None
    return Mismatch.VERSION, (
        f"server chose {_version_label(hello.version)}; {profile.name} offers"
        f" {_version_span(profile)}"
    )


def _suite_problem(profile: SenderProfile, _flight: ProfileFlight, hello: ServerHello) -> _Problem:
    name = suites.suite_name(hello.cipher)
    if hello.cipher not in profile.suites:
        return Mismatch.SUITE, f"server chose {name}, which {profile.name} does not offer"
    if suites.is_tls13(hello.cipher) != (hello.version >= TLSVersion.TLS1_3.wire):
        return Mismatch.SUITE, f"server chose {name} for {_version_label(hello.version)}"
    return None


def _group_problem(profile: SenderProfile, flight: ProfileFlight, hello: ServerHello) -> _Problem:
    exchange = flight.key_exchange
    if hello.version >= TLSVersion.TLS1_3.wire or hello.retry_request:
        if flight.group is None:
            return Mismatch.GROUP, "server sent no key_share"
        return _offered_group(profile, flight.group)
    if exchange is None:
        return None
    if exchange.group is not None:
        return _offered_group(profile, exchange.group)
    if exchange.dh_bits is not None and exchange.dh_bits < profile.min_dh_bits:
        return Mismatch.GROUP, (
            f"server's DH prime has {exchange.dh_bits} bits; {profile.name} needs"
            f" {profile.min_dh_bits}"
        )
    return None


def _offered_group(profile: SenderProfile, group: int) -> _Problem:
    if group in profile.groups:
        return None
    name = suites.group_name(group)
    return Mismatch.GROUP, f"server chose {name}, which {profile.name} does not offer"


def _signature_problem(
    profile: SenderProfile, flight: ProfileFlight, hello: ServerHello
) -> _Problem:
    exchange = flight.key_exchange
    if exchange is None or not exchange.signed:
        return None
    if exchange.signature is None and not profile.legacy_signatures:
        return Mismatch.SIGNATURE, (
            f"{_version_label(hello.version)} key exchange signed with MD5+SHA-1 or SHA-1,"
            f" which {profile.name} refuses"
        )
    if exchange.signature is not None and exchange.signature not in profile.signature_algorithms:
        name = suites.signature_name(exchange.signature)
        return Mismatch.SIGNATURE, f"server signed with {name}, which {profile.name} does not offer"
    return None


def _key_exchange_missing(flight: ProfileFlight, hello: ServerHello) -> bool:
    """True when the suite needs a ServerKeyExchange the answer did not carry."""
    if hello.version >= TLSVersion.TLS1_3.wire or hello.retry_request:
        return False
    kind = suites.key_exchange(hello.cipher) or ""
    return flight.key_exchange is None and kind.startswith(("ECDH", "DH"))


def _chosen_text(flight: ProfileFlight, hello: ServerHello) -> str:
    """What the server chose, in a line: `TLSv1.3 TLS_AES_128_GCM_SHA256 x25519`."""
    parts = [_version_label(hello.version), suites.suite_name(hello.cipher)]
    exchange = flight.key_exchange
    group = flight.group if exchange is None else exchange.group
    if group is not None:
        parts.append(suites.group_name(group))
    if exchange is not None and exchange.dh_bits is not None:
        parts.append(f"DH {exchange.dh_bits} bits")
    if hello.retry_request:
        parts.append("(HelloRetryRequest)")
    return " ".join(parts)


def _version_label(wire: int) -> str:
    version = TLSVersion.from_wire(wire)
    return version.display if version else f"0x{wire:04x}"

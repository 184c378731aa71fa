"""Server-side TLS bytes written by hand, for servers no TLS library would imitate."""

from __future__ import annotations

import struct


def record(content_type: int, payload: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", content_type, version, len(payload)) + payload


def server_hello(
    version: int, cipher: int = 0x002F, random: bytes = b"\x22" * 32, extensions: bytes = b""
) -> bytes:
    """A ServerHello handshake message; TLS 1.3 carries supported_versions."""
    body = (
        struct.pack("!H", min(version, 0x0303)) + random + b"\x00" + struct.pack("!HB", cipher, 0)
    )
    if version >= 0x0304:
        extensions += struct.pack("!HHH", 43, 2, version)
    if extensions:
        body += struct.pack("!H", len(extensions)) + extensions
    return b"\x02" + len(body).to_bytes(3, "big") + body


def certificate(*ders: bytes) -> bytes:
    chain = b"".join(len(d).to_bytes(3, "big") + d for d in ders)
    body = len(chain).to_bytes(3, "big") + chain
    return b"\x0b" + len(body).to_bytes(3, "big") + body


SERVER_HELLO_DONE = b"\x0e\x00\x00\x00"


def alert(description: int) -> bytes:
    return record(21, bytes([2, description]))


def offered_version(client_hello: bytes) -> int:
    """The version a hand-built ClientHello asks for (supported_versions wins)."""
    if client_hello[0] & 0x80:
        return 0x0002
    body = client_hello[9:]
    legacy = int.from_bytes(body[:2], "big")
    pos = 2 + 32
    pos += 1 + body[pos]
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 1 + body[pos]
    if pos >= len(body):
        return legacy
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    while pos < end:
        kind, size = struct.unpack("!HH", body[pos : pos + 4])
        if kind == 43:
            versions = body[pos + 5 : pos + 4 + size]
            return max(
                int.from_bytes(versions[i : i + 2], "big") for i in range(0, len(versions), 2)
            )
        pos += 4 + size
    return legacy


def flight(version: int, ders: tuple[bytes, ...], cipher: int = 0x002F) -> bytes:
    """ServerHello, Certificate and ServerHelloDone in one record, as an old server sends."""
    record_version = 0x0300 if version == 0x0300 else 0x0301
    messages = server_hello(version, cipher) + certificate(*ders) + SERVER_HELLO_DONE
    return record(22, messages, record_version)

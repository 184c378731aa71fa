"""What the responder sends back to a pinned ClientHello, learnt once from a real server.

For every profile and every pinned ClientHello the exporter sends, Python's ssl (OpenSSL)
is handed that very hello through a MemoryBIO and its answer is kept: an alert where it
refuses the version, its whole flight for TLS 1.3 (nothing after the ServerHello is
plaintext there), and the cipher suite it chose where it accepts TLS 1.2 or older. Those
flights are then built per connection (`tests/support/tlsbytes.py`: ServerHello with that
suite, Certificate with the target's own chain, ServerHelloDone), so each target shows its
own certificate. Answering a pinned hello costs a lookup and a few joins, not a handshake;
only the default client's hello, which offers TLS 1.2 and 1.3 together, gets a real one.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.fleet import SERVERNAME, Profile
from exporter.probe.hello import client_hello, parse_server_flight
from exporter.target import DEFAULT_VERSIONS, TLSVersion
from tests.support import tlsbytes

HANDSHAKE: Final = 22
_EXT_SUPPORTED_VERSIONS: Final = 43
#: Fatal protocol_version alert: what a server without the version sends.
PROTOCOL_VERSION_ALERT: Final = bytes([21, 3, 1, 0, 2, 2, 70])


@dataclass(frozen=True, slots=True)
class Identity:
    """The server's certificate chain (leaf first) and key, as PEM files."""

    chain: Path
    key: Path


def server_context(profile: Profile, identity: Identity) -> ssl.SSLContext:
    """A server context that speaks exactly the profile's versions, every cipher (security
    level 0, so TLS 1.0/1.1 work with OpenSSL 3), and issues no session tickets."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.chain, identity.key)
    context.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
        context.minimum_version = profile.minimum
        context.maximum_version = profile.maximum
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    return context


def record_flight(context: ssl.SSLContext, hello: bytes) -> bytes:
    """The server's whole answer to one ClientHello, up to where it waits for the client."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(hello)
    # It ends waiting for the client's next flight, or refusing with an alert.
    with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLError):
        server.do_handshake()
    return outgoing.read()


def record_flights(profile: Profile, identity: Identity) -> dict[int, bytes]:
    """Wire version -> the recorded answer to the exporter's hello pinned to it."""
    context = server_context(profile, identity)
    return {
        version.wire: record_flight(context, client_hello(version, SERVERNAME))
        for version in DEFAULT_VERSIONS
    }


@dataclass(frozen=True)
class Answers:
    """What one profile answers to each pinned hello."""

    #: Wire version -> the recorded answer (alerts, and TLS 1.3's flight).
    recorded: dict[int, bytes]
    #: Wire version -> the suite chosen, for accepted versions whose chain is plaintext.
    ciphers: dict[int, int]

    def flight(self, wire: int, chain: tuple[bytes, ...]) -> bytes:
        """The answer to a hello pinned to `wire`, with `chain` where the flight shows one."""
        cipher = self.ciphers.get(wire)
        if cipher is None:
            return self.recorded.get(wire, PROTOCOL_VERSION_ALERT)
        return tlsbytes.flight(wire, chain, cipher)


def answers(profile: Profile, identity: Identity) -> Answers:
    recorded = record_flights(profile, identity)
    ciphers = {}
    for wire, flight in recorded.items():
        hello = parse_server_flight(flight).hello
        if hello is not None and hello.version == wire and wire < TLSVersion.TLS1_3.wire:
            ciphers[wire] = hello.cipher
    return Answers(recorded, ciphers)


def is_alert(flight: bytes) -> bool:
    return bool(flight) and flight[0] == 21


def record_length(header: bytes) -> int:
    """The payload length in a TLS record header."""
    length: int = struct.unpack("!H", header[3:5])[0]
    return length


def offered_versions(record: bytes) -> tuple[int, ...]:
    """The versions a ClientHello record offers: its supported_versions extension, else
    its legacy version alone; () for anything that is not a readable ClientHello."""
    try:
        return _offered(record)
    except (IndexError, struct.error):
        return ()


def _offered(record: bytes) -> tuple[int, ...]:
    if record[0] != HANDSHAKE or record[5] != 1:
        return ()
    body = record[9:]
    legacy = int.from_bytes(body[:2], "big")
    pos = 2 + 32
    pos += 1 + body[pos]  # session id
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher suites
    pos += 1 + body[pos]  # compression methods
    if pos >= len(body):
        return (legacy,)
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    while pos + 4 <= end:
        kind, size = struct.unpack("!HH", body[pos : pos + 4])
        if kind == _EXT_SUPPORTED_VERSIONS:
            data = body[pos + 5 : pos + 4 + size]
            return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
        pos += 4 + size
    return (legacy,)

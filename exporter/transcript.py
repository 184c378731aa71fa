"""The transcript of one probe: every connection's SMTP lines and TLS exchange, with timings.

Every target keeps its last probe's transcript for the status page, so recording must be
cheap (a list append per line) and what is kept small: bounded in lines and characters,
and packed as zlib-compressed JSON (about a kilobyte a probe) until a page asks for it.
Server text is kept as the server sent it (made printable); escaping is the page's job.
"""

from __future__ import annotations

import enum
import json
import time
import zlib
from dataclasses import dataclass
from typing import Final

#: Lines kept per connection; an EHLO answer of a hundred lines is cut, with a note.
MAX_LINES: Final = 64
#: Characters kept per line.
MAX_TEXT: Final = 512
#: Connections kept per probe (a probe opens at most ten).
MAX_CONNECTIONS: Final = 16
#: The largest packed transcript unpacked: anything bigger is not one of ours.
_MAX_UNPACKED: Final = 1 << 20
#: What most transcripts say, as a preset dictionary for zlib: a transcript is too short
#: to teach the compressor much on its own, and with this one it packs 40% smaller.
_ZDICT: Final = "".join(
    (
        '[["resolve",[[',
        '"note","connected to ',
        '"server","220 ',
        " ESMTP Postfix",
        '"client","EHLO ',
        '"server","250-PIPELINING"',
        '"server","250-SIZE 10240000"',
        '"server","250-VRFY"',
        '"server","250-ETRN"',
        '"server","250-ENHANCEDSTATUSCODES"',
        '"server","250-8BITMIME"',
        '"server","250-DSN"',
        '"server","250-SMTPUTF8"',
        '"server","250-CHUNKING"',
        '"server","250-STARTTLS"',
        '"server","250 CHUNKING"',
        '"server","250 SMTPUTF8"',
        '"server","250 DSN"',
        '"client","STARTTLS"',
        '"server","220 2.0.0 Ready to start TLS"',
        '"client","ClientHello for TLSv1.2 only: ',
        " cipher suites, SNI ",
        ' bytes"',
        '"server","ServerHello TLSv1.2 ',
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, Certificate (2 certificates)",
        '"note","accepted: TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"',
        '"note","refused: alert protocol_version"',
        '"note","refused: alert handshake_failure"',
        '"note","connection closed"',
        '"client","TLS handshake through the local TLS library (SNI ',
        '"server","handshake done: TLSv1.3 TLS_AES_256_GCM_SHA384, 2 certificates"',
        '["default client",[[',
        '["TLSv1.3",[[',
        '["TLSv1.1",[[',
        '["TLSv1.0",[[',
        '["SSLv3",[[',
    )
).encode()


class Kind(enum.Enum):
    """Who a line comes from."""

    CLIENT = "client"
    SERVER = "server"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class Line:
    #: Seconds since the probe started.
    at: float
    kind: Kind
    text: str


@dataclass(frozen=True, slots=True)
class ConnectionLog:
    """One connection: what it was for (`TLSv1.2`, `default client`) and its lines."""

    purpose: str
    lines: tuple[Line, ...]


class ConnectionRecorder:
    """The lines of one connection, as they happen."""

    __slots__ = ("_lines", "_start", "dropped")

    def __init__(self, start: float) -> None:
        self._start = start
        self._lines: list[tuple[float, str, str]] = []
        self.dropped = 0

    def _add(self, kind: Kind, text: str) -> None:
        if len(self._lines) >= MAX_LINES:
            self.dropped += 1
            return
        at = round(time.monotonic() - self._start, 4)
        self._lines.append((at, kind.value, text[:MAX_TEXT]))

    def client(self, text: str) -> None:
        """What the probe sent."""
        self._add(Kind.CLIENT, text)

    def server(self, text: str) -> None:
        """What the server sent (already printable)."""
        self._add(Kind.SERVER, text)

    def note(self, text: str) -> None:
        """What happened on the connection: connected, closed, timed out, a summary."""
        self._add(Kind.NOTE, text)

    def rows(self) -> list[tuple[float, str, str]]:
        if not self.dropped:
            return self._lines
        at = self._lines[-1][0] if self._lines else 0.0
        return [*self._lines, (at, Kind.NOTE.value, f"{self.dropped} more lines not kept")]


class Recorder:
    """A probe's connections, in the order they were opened."""

    __slots__ = ("_connections", "start")

    def __init__(self) -> None:
        self.start = time.monotonic()
        self._connections: list[tuple[str, ConnectionRecorder]] = []

    def connection(self, purpose: str) -> ConnectionRecorder:
        """A recorder for a new connection; past the limit one that keeps nothing."""
        recorder = ConnectionRecorder(self.start)
        if len(self._connections) < MAX_CONNECTIONS:
            self._connections.append((purpose, recorder))
        return recorder

    def pack(self) -> bytes:
        """The transcript as stored with the result."""
        data = [[purpose, recorder.rows()] for purpose, recorder in self._connections]
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        packer = zlib.compressobj(6, zdict=_ZDICT)
        return packer.compress(text.encode("utf-8")) + packer.flush()


def unpack(packed: bytes) -> tuple[ConnectionLog, ...]:
    """The connections of a packed transcript; nothing for an empty or unreadable one."""
    if not packed:
        return ()
    try:
        inflater = zlib.decompressobj(zdict=_ZDICT)
        text = inflater.decompress(packed, _MAX_UNPACKED)
        data = json.loads(text)
        return tuple(
            ConnectionLog(
                str(purpose),
                tuple(Line(float(at), Kind(kind), str(line)) for at, kind, line in rows),
            )
            for purpose, rows in data
        )
    except (zlib.error, ValueError, TypeError, RecursionError):
        return ()

"""One real handshake through the local TLS library, as a default modern client makes it.

This says what mail from an up-to-date sender ends up with (version and cipher), and is
where a TLS 1.3-only server's certificate comes from: TLS 1.3 encrypts the Certificate
message, so the hand-built hello cannot read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl

from exporter.probe.deadline import COMMAND_TIMEOUT, Deadline, ProbeFailure
from exporter.probe.outcomes import Handshake
from exporter.results import Negotiated, Reason


@functools.cache
def _context() -> ssl.SSLContext:
    """OpenSSL's own client defaults (TLS 1.2 and newer, the DEFAULT cipher list), the way
    an MTA built on it connects; Python's narrower cipher list would miss the static-RSA
    suites that mail servers still offer and MTAs still use.

    No trust store is loaded: verification happens separately, on the chain as sent.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("DEFAULT")
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _chain(ssl_object: ssl.SSLObject) -> tuple[bytes, ...]:
    """Every certificate the server sent, leaf first, without verifying any."""
    public = getattr(ssl_object, "get_unverified_chain", None)  # Python 3.13+
    if public is not None:
        return tuple(bytes(c) for c in public())
    inner = getattr(ssl_object, "_sslobj", None)
    private = getattr(inner, "get_unverified_chain", None)  # 3.10-3.12, same code
    if private is not None:
        try:
            chain = private() or []
            return tuple(c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain)  # type: ignore[attr-defined]
        except (AttributeError, ValueError, ssl.SSLError):
            pass
    leaf = ssl_object.getpeercert(binary_form=True)
    return (leaf,) if leaf else ()


#: Most bytes a server may send during the handshake (its chain included) before the
#: default client gives up: OpenSSL's own limit on a certificate list is 100 KiB.
MAX_HANDSHAKE_BYTES = 256 * 1024
#: Bytes read from the socket at a time.
_CHUNK = 16 * 1024
#: How long the default client waits for the answer to its QUIT.
_QUIT_WAIT = 2.0


class _Session:
    """TLS over the connection's own streams through memory BIOs: the reads stay as bounded
    as the rest of the probe's (asyncio's own TLS transport keeps a 256 KiB buffer per
    connection, which thousands of probes at once turn into hundreds of megabytes)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sni: str | None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = _context().wrap_bio(self.incoming, self.outgoing, server_hostname=sni)
        self.received = 0

    async def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def receive(self) -> None:
        """More bytes from the server into the TLS object; EOFError when it closed."""
        chunk = await self.reader.read(_CHUNK)
        if not chunk:
            raise EOFError("connection closed by the server")
        self.received += len(chunk)
        if self.received > MAX_HANDSHAKE_BYTES:
            raise ProbeFailure(Reason.TLS_PROTOCOL_ERROR, "handshake larger than 256 KiB")
        self.incoming.write(chunk)

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                await self.flush()
                await self.receive()
            else:
                await self.flush()
                return

    async def quit(self, deadline: Deadline) -> None:
        """Say QUIT inside TLS and wait briefly for the answer (or the server's close);
        failures do not matter."""
        with contextlib.suppress(ssl.SSLError, OSError, EOFError, TimeoutError, ProbeFailure):
            self.tls.write(b"QUIT\r\n")
            await self.flush()
            async with asyncio.timeout(deadline.budget(_QUIT_WAIT)):
                while True:
                    try:
                        data = self.tls.read(_CHUNK)
                    except ssl.SSLWantReadError:
                        await self.receive()
                        continue
                    if not data or b"\n" in data:  # the reply, or close_notify
                        return


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    sni: str | None,
    deadline: Deadline,
) -> Handshake:
    """Make the default client's handshake over the connection and read what it got."""
    budget = deadline.budget(COMMAND_TIMEOUT)
    if budget <= 0:
        raise ProbeFailure(Reason.READ_TIMEOUT, "probe deadline reached")
    session = _Session(reader, writer, sni)
    try:
        async with asyncio.timeout(budget):
            await session.handshake()
    except TimeoutError:
        raise ProbeFailure(
            Reason.READ_TIMEOUT, "TLS handshake timed out", in_handshake=True
        ) from None
    except ssl.SSLError as exc:
        raise ProbeFailure(
            Reason.TLS_PROTOCOL_ERROR, exc.reason or str(exc), in_handshake=True
        ) from None
    except (OSError, EOFError) as exc:
        raise ProbeFailure(
            Reason.CONNECTION_CLOSED, str(exc) or type(exc).__name__, in_handshake=True
        ) from None
    cipher = session.tls.cipher()
    negotiated = Negotiated(version=session.tls.version() or "", cipher=cipher[0] if cipher else "")
    certificates = _chain(session.tls)
    await session.quit(deadline)
    return Handshake(negotiated, certificates)

"""One real handshake through the local TLS library, as a default modern client makes it.

This says what mail from an up-to-date sender ends up with (version and cipher), and is
where a TLS 1.3-only server's certificate comes from: TLS 1.3 encrypts the Certificate
message, so the hand-built hello cannot read it.
"""

from __future__ import annotations

import asyncio
import functools
import ssl

from exporter.probe.deadline import COMMAND_TIMEOUT, Deadline, ProbeFailure
from exporter.probe.outcomes import Handshake
from exporter.probe.smtp import quit_politely
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


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    sni: str | None,
    deadline: Deadline,
) -> Handshake:
    """Upgrade the connection with the default client context and read what it got."""
    budget = deadline.budget(COMMAND_TIMEOUT)
    if budget <= 0:
        raise ProbeFailure(Reason.READ_TIMEOUT, "probe deadline reached")
    try:
        async with asyncio.timeout(budget):
            await writer.start_tls(_context(), server_hostname=sni, ssl_handshake_timeout=budget)
    except TimeoutError:
        raise ProbeFailure(Reason.READ_TIMEOUT, "TLS handshake timed out") from None
    except ssl.SSLError as exc:
        raise ProbeFailure(Reason.TLS_PROTOCOL_ERROR, exc.reason or str(exc)) from None
    except (OSError, EOFError) as exc:
        raise ProbeFailure(Reason.CONNECTION_CLOSED, str(exc) or type(exc).__name__) from None
    ssl_object = writer.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        raise ProbeFailure(Reason.TLS_PROTOCOL_ERROR, "no TLS session after the handshake")
    cipher = ssl_object.cipher()
    negotiated = Negotiated(version=ssl_object.version() or "", cipher=cipher[0] if cipher else "")
    certificates = _chain(ssl_object)
    await quit_politely(reader, writer, deadline)
    return Handshake(negotiated, certificates)

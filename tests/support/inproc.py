"""SMTP servers run in-process, on loopback, for cases a real MTA cannot be made to show.

Each server runs its own asyncio loop in a thread, so synchronous tests and subprocesses
(the `check` command) can probe it alike. TLS comes from Python's `ssl` pinned to exact
versions; hostile behaviour (resets, garbage, silence, hand-written ServerHellos) comes from
a `raw` handler that sees the ClientHello bytes and answers what it likes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

RawHandler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Behaviour:
    """How the server acts; the defaults make a plain, healthy STARTTLS server."""

    greeting: tuple[str, ...] = ("220 inproc.test ESMTP",)
    #: Seconds to wait before each greeting line after the first.
    greeting_delay: float = 0.0
    #: Never send any greeting at all.
    silent: bool = False
    ehlo: tuple[str, ...] = ("250-inproc.test", "250-PIPELINING", "250-SIZE 10240000")
    starttls: bool = True
    ehlo_reply: str | None = None
    starttls_reply: str = "220 2.0.0 Ready to start TLS"
    implicit: bool = False
    #: Server TLS context; None with `raw` unset means TLS fails by closing.
    context: ssl.SSLContext | None = None
    #: Takes over right after STARTTLS (or at once, for implicit TLS).
    raw: RawHandler | None = None
    #: Right after the TLS handshake, close the connection (TLS close_notify) unasked.
    close_after_tls: bool = False
    #: Once this many connections were accepted, every later one gets `busy_reply` as its
    #: greeting, as a server that rate-limits its clients does; None: never.
    busy_after: int | None = None
    busy_reply: str = "421 4.7.0 inproc.test Error: too many connections from 127.0.0.1"
    #: One entry per connection accepted, for tests that count them.
    connections: list[str] = field(default_factory=list)


def tls_context(
    cert_file: str,
    key_file: str,
    minimum: ssl.TLSVersion = ssl.TLSVersion.MINIMUM_SUPPORTED,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> ssl.SSLContext:
    """A server context that speaks exactly the versions from minimum to maximum (every
    cipher, at security level 0, so TLS 1.0 and 1.1 work with this OpenSSL)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
        context.minimum_version = minimum
        context.maximum_version = maximum
    return context


async def _read_client_hello(reader: asyncio.StreamReader) -> bytes:
    """One whole TLS record (the ClientHello) from the client."""
    header = await reader.readexactly(5)
    if header[0] & 0x80:  # SSLv2 format
        length = ((header[0] & 0x7F) << 8) | header[1]
        return header + await reader.readexactly(length + 2 - 5)
    length = struct.unpack("!H", header[3:5])[0]
    return header + await reader.readexactly(length)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, the way Windows Schannel refuses a version."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class InprocServer:
    """A threaded asyncio SMTP server on 127.0.0.1 (or ::1) following a Behaviour."""

    def __init__(self, behaviour: Behaviour, host: str = "127.0.0.1", port: int = 0) -> None:
        self.behaviour = behaviour
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def __enter__(self) -> InprocServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.behaviour.connections.append("open")
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away (TLS errors are OSErrors too), or the server stops
        finally:
            writer.transport.abort()
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        b = self.behaviour
        if b.implicit:
            await self._tls(reader, writer)
            return
        if b.silent:
            await asyncio.sleep(3600)
        if b.busy_after is not None and len(b.connections) > b.busy_after:
            writer.write(b.busy_reply.encode() + b"\r\n")
            await writer.drain()
            return
        if await self._greet(writer):
            await self._dialogue(reader, writer)

    async def _greet(self, writer: asyncio.StreamWriter) -> bool:
        """Send the greeting; True when it invites the client to go on."""
        b = self.behaviour
        for position, line in enumerate(b.greeting):
            if position and b.greeting_delay:
                await asyncio.sleep(b.greeting_delay)
            writer.write(line.encode() + b"\r\n")
            await writer.drain()
        return b.greeting[-1].startswith("220 ")

    async def _dialogue(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """EHLO, STARTTLS and QUIT until the client leaves or TLS takes over."""
        b = self.behaviour
        while command := (await reader.readline()).strip().upper():
            if command.startswith(b"EHLO"):
                writer.write(self._ehlo_reply())
            elif command == b"STARTTLS" and b.starttls:
                writer.write(b.starttls_reply.encode() + b"\r\n")
                await writer.drain()
                if b.starttls_reply.startswith("220"):
                    await self._tls(reader, writer)
                    return
            elif command == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.2 Error: command not recognized\r\n")
            await writer.drain()

    def _ehlo_reply(self) -> bytes:
        b = self.behaviour
        if b.ehlo_reply:
            return b.ehlo_reply.encode() + b"\r\n"
        lines = [*b.ehlo, *(["250-STARTTLS"] if b.starttls else []), "250 8BITMIME"]
        return "".join(f"{x}\r\n" for x in lines).encode()

    async def _tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        b = self.behaviour
        if b.raw is not None:
            await b.raw(await _read_client_hello(reader), writer)
            return
        if b.context is None:
            return
        async with asyncio.timeout(10):
            await writer.start_tls(b.context)
        if b.close_after_tls:
            writer.close()
            return
        if b.implicit:
            writer.write(b"220 inproc.test ESMTP\r\n")
            await writer.drain()
        async with asyncio.timeout(10):
            while line := (await reader.readline()).strip().upper():
                if line == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    return
                writer.write(b"250 ok\r\n")
                await writer.drain()

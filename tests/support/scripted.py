"""A server that says what a test scripts, byte for byte, over a loopback TCP connection.

The probe reads it with the same streams (and the same line limit) as any connection, so
fuzz tests feed hostile bytes through the real readers: the script's chunks are sent one by
one, what the probe writes is read and dropped, and the end of the script closes the
connection (or resets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Sequence

from exporter.probe.deadline import Deadline
from exporter.probe.endpoint import Endpoint, Streams
from exporter.probe.smtp import MAX_LINE


def chunked(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """`data` cut into pieces of the given sizes in turn (the last size repeats)."""
    pieces: list[bytes] = []
    pos = 0
    turn = 0
    while pos < len(data):
        size = max(1, sizes[min(turn, len(sizes) - 1)] if sizes else len(data))
        pieces.append(data[pos : pos + size])
        pos += size
        turn += 1
    return pieces


async def _speak(sock: socket.socket, chunks: Sequence[bytes], reset: bool) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)

    async def drop_input() -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass

    draining = asyncio.create_task(drop_input())
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.write_eof()
            await draining
    except OSError:
        pass  # the probe hung up first
    finally:
        draining.cancel()
        writer.transport.abort()


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Both ends of one loopback TCP connection: (the probe's, the server's)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ours = socket.create_connection(listener.getsockname())
        theirs, _ = listener.accept()
    ours.setblocking(False)
    theirs.setblocking(False)
    return ours, theirs


@contextlib.asynccontextmanager
async def scripted(chunks: Sequence[bytes], *, reset: bool = False) -> AsyncIterator[Streams]:
    """The probe's end of a connection whose server sends `chunks`, then closes."""
    ours, theirs = tcp_pair()
    server = asyncio.create_task(_speak(theirs, chunks, reset))
    reader, writer = await asyncio.open_connection(sock=ours, limit=MAX_LINE)
    try:
        yield reader, writer
    finally:
        writer.transport.abort()
        await server


class ScriptedEndpoint(Endpoint):
    """An endpoint whose one connection is a scripted server."""

    def __init__(self, chunks: Sequence[bytes], *, reset: bool = False) -> None:
        super().__init__(["192.0.2.1"], 25)
        self.chunks = chunks
        self.reset = reset
        self._server: asyncio.Task[None] | None = None

    async def connect(self, deadline: Deadline) -> Streams:  # noqa: ARG002 - no network
        ours, theirs = tcp_pair()
        self._server = asyncio.create_task(_speak(theirs, self.chunks, self.reset))
        return await asyncio.open_connection(sock=ours, limit=MAX_LINE)

    async def finished(self) -> None:
        """Wait for the server's side to end (the probe has closed its side by then)."""
        if self._server is not None:
            await self._server

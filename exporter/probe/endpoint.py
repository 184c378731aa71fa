"""Where a probe's connections go: the target's addresses, and moving on from a dead one."""

from __future__ import annotations

import asyncio
import socket
from typing import Final

from exporter.names import is_ip_address
from exporter.probe.deadline import CONNECT_TIMEOUT, Deadline, ProbeFailure
from exporter.probe.smtp import MAX_LINE
from exporter.results import Reason

#: Failures of one address that the next address may not share.
_TRY_NEXT: Final = (Reason.CONNECT_REFUSED, Reason.CONNECT_ERROR, Reason.CONNECT_TIMEOUT)

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Endpoint:
    """The target's addresses. Every connection of a probe goes to the first address that
    answered, so all verdicts describe one server; an address that fails (no route,
    refused, silence: broken IPv6 is common) makes way for the next."""

    def __init__(self, addresses: list[str], port: int) -> None:
        self.addresses = addresses
        self.port = port
        #: The address that answered; every later connection goes there.
        self.working: str | None = None

    async def connect(self, deadline: Deadline) -> Streams:
        order = [self.working] if self.working else self.addresses
        failure: ProbeFailure | None = None
        for address in order:
            try:
                streams = await _open(address, self.port, deadline)
            except ProbeFailure as exc:
                if exc.reason not in _TRY_NEXT or deadline.left() <= 0:
                    raise
                failure = failure or exc
                continue
            self.working = address
            return streams
        assert failure is not None
        raise failure


async def resolve(host: str, port: int, deadline: Deadline) -> Endpoint:
    """Every address of the host, in the resolver's order of preference."""
    literal = host.strip("[]")
    if is_ip_address(literal):
        return Endpoint([literal], port)
    loop = asyncio.get_running_loop()
    with deadline.phase(Reason.RESOLVE_FAILED):
        async with asyncio.timeout(deadline.budget(CONNECT_TIMEOUT)):
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise ProbeFailure(Reason.RESOLVE_FAILED, str(exc)) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ProbeFailure(Reason.RESOLVE_FAILED, "no address")
    return Endpoint(addresses, port)


async def _open(address: str, port: int, deadline: Deadline) -> Streams:
    """A TCP connection to one resolved address, its reader bounded to SMTP's longest line."""
    with deadline.phase(Reason.CONNECT_TIMEOUT):
        try:
            async with asyncio.timeout(deadline.budget(CONNECT_TIMEOUT)):
                return await asyncio.open_connection(address, port, limit=MAX_LINE)
        except ConnectionRefusedError:
            raise ProbeFailure(Reason.CONNECT_REFUSED, "connection refused") from None
        except TimeoutError:
            raise  # an OSError too, but the phase turns it into CONNECT_TIMEOUT
        except OSError as exc:
            raise ProbeFailure.from_os_error(Reason.CONNECT_ERROR, exc) from None

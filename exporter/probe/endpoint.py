"""Where a probe's connections go: the target's addresses, and moving on from a dead one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from exporter.names import is_ip_address
from exporter.probe.budget import Claim
from exporter.probe.deadline import CONNECT_TIMEOUT, Deadline, ProbeFailure
from exporter.probe.outcomes import CONNECT_FAILURES
from exporter.probe.smtp import MAX_LINE
from exporter.results import Reason

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Endpoint:
    """The target's addresses. Every connection of a probe goes to the first address that
    answered, so all verdicts describe one server; an address that fails (no route,
    refused, silence: broken IPv6 is common) makes way for the next.

    Until one address has answered, connections wait for the first: a host that is down or
    refuses costs one connection attempt per address, not one per connection of the probe.

    With a `claim` on the process's connection budget, every connection waits for room at
    its address first; `close` gives the room back.
    """

    def __init__(self, addresses: list[str], port: int, claim: Claim | None = None) -> None:
        self.addresses = addresses
        self.port = port
        self.claim = claim
        #: What to call when each open connection closes, by its writer.
        self._leases: dict[asyncio.StreamWriter, Callable[[], None]] = {}
        #: The address that answered; every later connection goes there.
        self.working: str | None = None
        self._first = asyncio.Lock()
        #: Why no address answered the first connection: the others meet it too.
        self._unreachable: ProbeFailure | None = None

    async def connect(self, deadline: Deadline) -> Streams:
        if self.working is None:
            async with self._first:
                if self._unreachable is not None:
                    failure = self._unreachable  # a copy: each connection its own traceback
                    raise ProbeFailure(failure.reason, failure.detail)
                if self.working is None:
                    try:
                        return await self._connect(deadline)
                    except ProbeFailure as failure:
                        self._unreachable = failure
                        raise
        # An address answered: connect there, all at once, without holding the others up.
        return await self._connect(deadline)

    async def _connect(self, deadline: Deadline) -> Streams:
        order = [self.working] if self.working else self.addresses
        failure: ProbeFailure | None = None
        for address in order:
            try:
                streams = await self._open_counted(address, deadline)
            except ProbeFailure as exc:
                if exc.reason not in CONNECT_FAILURES or deadline.left() <= 0:
                    raise
                failure = failure or exc
                continue
            self.working = address
            return streams
        assert failure is not None
        raise failure

    async def _open_counted(self, address: str, deadline: Deadline) -> Streams:
        """`_open`, once the budget has room for it at `address`."""
        if self.claim is None:
            return await _open(address, self.port, deadline)
        release = await self.claim.connection(address)
        try:
            streams = await _open(address, self.port, deadline)
        except BaseException:
            release()
            raise
        self._leases[streams[1]] = release
        return streams

    def close(self, writer: asyncio.StreamWriter) -> None:
        """Close a connection `connect` opened, and give its place in the budget back."""
        writer.transport.abort()
        release = self._leases.pop(writer, None)
        if release is not None:
            release()

    def finish(self) -> None:
        """The probe is done here: reserved connections it did not open go back."""
        if self.claim is not None:
            self.claim.close()


async def resolve(host: str, port: int, deadline: Deadline, claim: Claim | None = None) -> Endpoint:
    """Every address of the host, in the resolver's order of preference."""
    literal = host.strip("[]")
    if is_ip_address(literal):
        return Endpoint([literal], port, claim)
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
    return Endpoint(addresses, port, claim)


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

"""A light SMTP responder for thousands of loopback addresses, in one asyncio process.

    python -m bench.responder --targets 1000 [--port 2525] [--greet-delay 3] [--reply-delay 0.05]

Every fleet address (`bench.fleet`) gets a listening socket on the same port; or, inside a
network namespace of its own (`--any-address`), one socket on 0.0.0.0 answers them all. A connection
gets the SMTP dialogue (greeting, EHLO with STARTTLS, STARTTLS), then:

* a ClientHello that offers one version (the exporter's pinned hellos) gets the flight a
  real server sent for that hello, recorded once at start (`bench.flights`): no crypto;
* a ClientHello that offers several versions (the exporter's default client) gets a real
  handshake through Python's ssl over memory BIOs, and a 221 to the QUIT that follows.

`--greet-delay` holds the greeting back (postscreen, greet_pause); `--reply-delay` delays
every answer, greeting and TLS flights included, which stands for the network's round trip.
Once every listener is bound it prints `READY <port> <control port>`; a line sent to the
control port is answered with the counters as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import random
import resource
import signal
import socket
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.fleet import EHLO_NAME, MODERN, PROFILES, Profile, address, index_of, profile_of
from bench.fleetcerts import FleetCerts, make_fleet_certs
from bench.flights import (
    Identity,
    answers,
    is_alert,
    offered_versions,
    record_length,
    server_context,
)
from exporter.senders import DEFAULT_SENDERS
from exporter.target import DEFAULT_VERSIONS

GREETING: Final = b"220 bench.test ESMTP\r\n"
EHLO_REPLY: Final = (
    b"250-bench.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
)
READY_FOR_TLS: Final = b"220 2.0.0 Ready to start TLS\r\n"
BYE: Final = b"221 2.0.0 Bye\r\n"
OK: Final = b"250 2.0.0 Ok\r\n"
UNKNOWN: Final = b"502 5.5.2 Error: command not recognized\r\n"
#: A connection is cut after this long whatever it does: no probe lasts that long.
MAX_LIFETIME: Final = 120.0
_MAX_LINE: Final = 4096
#: Connections a whole probe makes at the exporter's defaults: five versions, the default
#: client and the default sender.
CONNECTIONS_PER_PROBE: Final = len(DEFAULT_VERSIONS) + 1 + len(DEFAULT_SENDERS)

#: Open files kept for connections on top of the listeners.
_CONNECTION_FILES: Final = 65536

# Where a session is: before STARTTLS, waiting for the ClientHello, in a real handshake.
_SMTP, _HELLO, _TLS, _DONE = range(4)


@dataclass
class Stats:
    """Counters the bench polls through the control port."""

    count: int
    accepted: int = 0
    closed: int = 0
    handshakes: int = 0
    replayed: int = 0
    #: Targets whose connections closed at least CONNECTIONS_PER_PROBE times.
    targets_done: int = 0
    #: Wall-clock time when the last target's connections had all closed.
    all_done_at: float | None = None
    closed_by_target: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.closed_by_target = bytearray(self.count)

    def connection_closed(self, index: int) -> None:
        self.closed += 1
        seen = self.closed_by_target[index]
        if seen < 255:
            self.closed_by_target[index] = seen + 1
            if seen + 1 == CONNECTIONS_PER_PROBE:
                self.targets_done += 1
                if self.targets_done == self.count:
                    self.all_done_at = time.time()

    def as_json(self) -> bytes:
        fields = {
            "targets": self.count,
            "accepted": self.accepted,
            "closed": self.closed,
            "open": self.accepted - self.closed,
            "handshakes": self.handshakes,
            "replayed": self.replayed,
            "targets_done": self.targets_done,
            "all_done_at": self.all_done_at,
        }
        return json.dumps(fields).encode() + b"\n"


@dataclass(frozen=True)
class Behaviour:
    greet_delay: float = 0.0
    reply_delay: float = 0.0
    #: Every target presents the same certificate (else each its own).
    shared_cert: bool = False


class Responder:
    """What every session shares: the recorded flights, the contexts, the counters."""

    def __init__(self, count: int, certs: FleetCerts, behaviour: Behaviour) -> None:
        self.count = count
        self.behaviour = behaviour
        self.stats = Stats(count)
        identity = Identity(certs.chain, certs.key)
        self.answers = {p.name: answers(p, identity) for p in PROFILES}
        self.contexts = {p.name: server_context(p, identity) for p in PROFILES}
        self.leaves, self.intermediate = certs.load()
        if behaviour.shared_cert:
            del self.leaves[1:]
        self.loop = asyncio.get_running_loop()

    def chain(self, index: int) -> tuple[bytes, ...]:
        """The chain target `index` presents: its own leaf (or the shared one)."""
        return (self.leaves[max(index, 0) % len(self.leaves)], self.intermediate)

    def session(self) -> Session:
        return Session(self)


class Session(asyncio.Protocol):
    """One connection: the SMTP dialogue, then a recorded flight or a real handshake."""

    __slots__ = (
        "buffer",
        "handshaken",
        "incoming",
        "index",
        "outgoing",
        "profile",
        "responder",
        "state",
        "timers",
        "tls",
        "transport",
    )

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        #: The fleet address the client connected to decides the profile (-1: none of it).
        self.index = -1
        self.profile: Profile = MODERN
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.state = _SMTP
        self.timers: list[asyncio.TimerHandle] = []
        self.tls: ssl.SSLObject | None = None
        self.handshaken = False
        # Memory BIOs only for the default client's connection, made when it comes.
        self.incoming: ssl.MemoryBIO | None = None
        self.outgoing: ssl.MemoryBIO | None = None

    # --- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.responder.stats.accepted += 1
        sockname = transport.get_extra_info("sockname")
        index = index_of(sockname[0]) if sockname else None
        if index is not None and index < self.responder.count:
            self.index, self.profile = index, profile_of(index)
        behaviour = self.responder.behaviour
        self._send(GREETING, behaviour.greet_delay + behaviour.reply_delay)
        self.timers.append(self.responder.loop.call_later(MAX_LIFETIME, transport.abort))

    def data_received(self, data: bytes) -> None:
        if self.state == _TLS:
            assert self.incoming is not None
            self.incoming.write(data)
            self._tls_step()
            return
        self.buffer += data
        if self.state == _SMTP:
            self._smtp()
        if self.state == _HELLO:
            self._hello()

    def connection_lost(self, _exc: Exception | None) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        if self.index >= 0:
            self.responder.stats.connection_closed(self.index)

    # --- the dialogue -----------------------------------------------------------------------

    def _smtp(self) -> None:
        while self.state == _SMTP:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > _MAX_LINE:
                    self._close()
                return
            line = bytes(self.buffer[:end]).strip().upper()
            del self.buffer[: end + 1]
            self._command(line)

    def _command(self, line: bytes) -> None:
        verb = line[:4]
        if verb in (b"EHLO", b"HELO"):
            self._reply(EHLO_REPLY)
        elif line == b"STARTTLS":
            self._reply(READY_FOR_TLS)
            self.state = _HELLO
        elif verb == b"QUIT":
            self._reply(BYE, close=True)
            self.state = _DONE
        elif verb in (b"NOOP", b"RSET"):
            self._reply(OK)
        else:
            self._reply(UNKNOWN)

    def _hello(self) -> None:
        buffer = self.buffer
        if len(buffer) < 5:
            return
        if buffer[0] != 22:  # not a TLS handshake record (SSLv2, garbage)
            self._close()
            return
        end = 5 + record_length(bytes(buffer[:5]))
        if len(buffer) < end:
            return
        versions = offered_versions(bytes(buffer[:end]))
        if len(versions) > 1:
            self._start_tls()
            return
        profile = self.responder.answers[self.profile.name]
        flight = profile.flight(versions[0], self.responder.chain(self.index)) if versions else b""
        self.responder.stats.replayed += 1
        self.state = _DONE
        self.buffer.clear()
        # An alert ends the connection as OpenSSL does; an accepted hello waits for the client.
        self._reply(flight, close=not flight or is_alert(flight))

    # --- the real handshake -----------------------------------------------------------------

    def _start_tls(self) -> None:
        context = self.responder.contexts[self.profile.name]
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.state = _TLS
        self.incoming.write(bytes(self.buffer))
        self.buffer.clear()
        self._tls_step()

    def _tls_step(self) -> None:
        tls = self.tls
        assert tls is not None
        close = False
        try:
            if not self.handshaken:
                tls.do_handshake()
                self.handshaken = True
                self.responder.stats.handshakes += 1
            close = self._tls_commands(tls)
        except ssl.SSLWantReadError:
            pass  # more from the client first
        except (ssl.SSLError, OSError):
            close = True  # refused (the alert is in the outgoing BIO), or the client left
        self._flush(close)

    def _tls_commands(self, tls: ssl.SSLObject) -> bool:
        """Read what the client sent over TLS; True once it said QUIT (answered by now)."""
        while True:
            self.buffer += tls.read(4096)
            end = self.buffer.find(b"\n")
            if end < 0:
                continue
            line = bytes(self.buffer[:end]).strip().upper()
            del self.buffer[: end + 1]
            if line.startswith(b"QUIT"):
                tls.write(BYE)
                return True
            tls.write(EHLO_REPLY if line[:4] == b"EHLO" else UNKNOWN)

    def _flush(self, close: bool) -> None:
        assert self.outgoing is not None
        data = self.outgoing.read()
        if data:
            self._reply(data, close=close)
        elif close:
            self._close()

    # --- writing ----------------------------------------------------------------------------

    def _reply(self, data: bytes, *, close: bool = False) -> None:
        self._send(data, self.responder.behaviour.reply_delay, close=close)

    def _send(self, data: bytes, delay: float, *, close: bool = False) -> None:
        if delay > 0:
            self.timers.append(self.responder.loop.call_later(delay, self._write, data, close))
        else:
            self._write(data, close)

    def _write(self, data: bytes, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if data:
            transport.write(data)
        if close:
            transport.close()

    def _close(self) -> None:
        self.state = _DONE
        if self.transport is not None:
            self.transport.close()


# --- listening ---------------------------------------------------------------------------------


def _bind(addresses: list[str], port: int) -> list[socket.socket]:
    """A listening socket on every address at `port`; OSError when one is taken."""
    sockets: list[socket.socket] = []
    try:
        for host in addresses:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(512)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def bind_fleet(
    count: int, port: int, any_address: bool = False, tries: int = 20
) -> tuple[int, list[socket.socket]]:
    """Listening sockets for the first `count` fleet addresses on one port: `port`, or when
    that is 0 (or taken and not asked for) a random free one. With `any_address`, one socket
    on 0.0.0.0 instead, allowed only inside a network namespace whose only interface is lo."""
    if any_address:
        if not only_loopback():
            raise SystemExit("--any-address binds 0.0.0.0: only where lo is the only interface")
        return port, _bind(["0.0.0.0"], port)
    addresses = [address(i) for i in range(count)]
    chosen = port or random.randint(20000, 30000)
    for _ in range(tries):
        try:
            return chosen, _bind(addresses, chosen)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port:
                raise
            chosen = random.randint(20000, 30000)
    raise OSError(errno.EADDRINUSE, f"no free port for {count} addresses after {tries} tries")


def only_loopback() -> bool:
    """True when this process's network namespace has no interface but lo: binding 0.0.0.0
    there reaches nothing beyond this machine's loopback (a namespace made for the bench)."""
    try:
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return {line.split(":")[0].strip() for line in lines} == {"lo"}


def raise_file_limit(listeners: int) -> None:
    """Open files for every listener and plenty of connections: the exporter may hold
    thousands at once. Root raises the hard limit too, others go up to it."""
    wanted = listeners + _CONNECTION_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, ceiling),) * 2)
            return
        except (OSError, ValueError):
            wanted = hard  # not root: as far as the hard limit goes
    if wanted < listeners + 1024:
        raise SystemExit(f"{listeners} listeners need more open files than the limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def serve(
    count: int, port: int, certs: FleetCerts, behaviour: Behaviour, any_address: bool = False
) -> None:
    """Answer the fleet until SIGTERM or SIGINT."""
    raise_file_limit(1 if any_address else count)
    responder = Responder(count, certs, behaviour)
    loop = responder.loop
    port, sockets = bind_fleet(count, port, any_address)
    servers = [
        await loop.create_server(responder.session, sock=sock, backlog=4096) for sock in sockets
    ]

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while await reader.readline():
                writer.write(responder.stats.as_json())
                await writer.drain()
        writer.close()

    control_server = await asyncio.start_server(control, "127.0.0.1", 0)
    control_port = control_server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {port} {control_port}", flush=True)
    await stop.wait()
    control_server.close()
    for server in servers:
        server.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.responder", description=__doc__)
    parser.add_argument("--targets", type=int, required=True, help="fleet addresses to answer")
    parser.add_argument("--port", type=int, default=0, help="port on every address (0: pick)")
    parser.add_argument(
        "--any-address",
        action="store_true",
        help="one socket on 0.0.0.0 for every address (only in a network namespace of its own)",
    )
    parser.add_argument("--certs", type=Path, help="bench.fleetcerts directory (made if missing)")
    parser.add_argument("--shared-cert", action="store_true", help="one certificate for all")
    parser.add_argument("--greet-delay", type=float, default=0.0, help="seconds")
    parser.add_argument("--reply-delay", type=float, default=0.0, help="seconds per answer")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args: Any = parse_args(argv)
    with contextlib.ExitStack() as stack:
        directory = args.certs or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        certs = FleetCerts(directory)
        if not certs.exists():
            make_fleet_certs(directory, args.targets)
        print(f"CA {certs.ca} EHLO {EHLO_NAME}", file=sys.stderr, flush=True)
        behaviour = Behaviour(args.greet_delay, args.reply_delay, args.shared_cert)
        asyncio.run(serve(args.targets, args.port, certs, behaviour, args.any_address))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

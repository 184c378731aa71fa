"""A real authoritative DNS server (NSD) serving a zone for every MX case, and one that never
answers.

``DnsServer`` runs a private NSD: its configuration, zone files, pid file and log live in
the work directory it is given, it listens on 127.0.0.1 (and ::1 where it can be bound) on
a free high port, and it keeps no database. It never reads or writes ``/etc/nsd`` and never
starts or stops the system service (the Debian package enables one on port 53; the tests
neither need nor touch it). NSD answers SERVFAIL for a configured zone whose file does not
load, which is how ``broken.test`` fails.

Every name the tests look up is in ``DOMAINS``: a domain and what its records are meant to
show. MX hosts point at 127.0.0.1 and ::1, where the Postfix test listeners run; the primary
MX is ``mail.test``, the name the test certificates carry.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

import dns.exception
import dns.message
import dns.query
import dns.rcode

from exporter.mx import Resolver

HOST: Final = "127.0.0.1"
HOST6: Final = "::1"
NSD_PATHS: Final = ("/usr/sbin/nsd",)

#: Domains and what each shows (the zones below hold their records).
DOMAINS: Final[dict[str, str]] = {
    "two.mail.test": "two MX: mail.test (10) and mx2.mail.test (20, written in capitals)",
    "null.mail.test": "a null MX (RFC 7505)",
    "own.mail.test": "no MX, its own A and AAAA (RFC 5321 5.1)",
    "nothing.mail.test": "no MX, no A/AAAA (only a TXT record)",
    "absent.mail.test": "no such name (NXDOMAIN)",
    "any.broken.test": "in a zone whose file does not load (SERVFAIL)",
    "cname.mail.test": "MX naming a CNAME (alias.mail.test -> mail.test)",
    "literal.mail.test": "MX naming [192.0.2.1] and 192.0.2.2, and mail.test",
    "hosted-a.mail.test": "hosted mail: MX mx.hoster.test (10)",
    "hosted-b.mail.test": "hosted mail: MX mx.hoster.test (5)",
    "dup.mail.test": "mail.test named twice (10 and 30), mx2.mail.test (20)",
    "many.mail.test": "70 MX hosts (host00..host69), more than a look-up keeps",
    "dangling.mail.test": "MX naming a host that does not exist",
    "mixednull.mail.test": "a null MX next to a real one",
    "xn--bcher-kva.mail.test": "an IDN domain (bücher.mail.test)",
    "v4only.mail.test": "a host with an A record only",
    "v6only.mail.test": "a host with an AAAA record only",
}

_MANY = "".join(f"many MX {i} host{i:02d}\nhost{i:02d} A 127.0.0.1\n" for i in range(70))

ZONES: Final[dict[str, str]] = {
    "mail.test": f"""$ORIGIN mail.test.
$TTL 60
@ SOA ns hostmaster 1 3600 600 86400 60
@ NS ns
ns A 127.0.0.1
@ A 127.0.0.1
@ AAAA ::1
mx2 A 127.0.0.1
mx2 AAAA ::1
v4only A 127.0.0.1
v6only AAAA ::1
two MX 10 mail.test.
two MX 20 MX2.MAIL.TEST.
null MX 0 .
own A 127.0.0.1
own AAAA ::1
nothing TXT "v=spf1 -all"
cname MX 10 alias
alias CNAME mail.test.
literal MX 10 [192.0.2.1].
literal MX 20 192.0.2.2.
literal MX 30 mail.test.
hosted-a MX 10 mx.hoster.test.
hosted-b MX 5 mx.hoster.test.
dup MX 10 mail.test.
dup MX 30 mail.test.
dup MX 20 mx2
dangling MX 10 missing
mixednull MX 0 .
mixednull MX 10 mail.test.
xn--bcher-kva MX 10 mail.test.
{_MANY}""",
    "hoster.test": """$ORIGIN hoster.test.
$TTL 60
@ SOA ns hostmaster 1 3600 600 86400 60
@ NS ns
ns A 127.0.0.1
mx A 127.0.0.1
mx AAAA ::1
""",
    # /probe (on_demand): names an allowed wildcard admits, which lead inside; nothing
    # connects to an address here but loopback (the rest must be refused before that).
    "ondemand.test": """$ORIGIN ondemand.test.
$TTL 60
@ SOA ns hostmaster 1 3600 600 86400 60
@ NS ns
ns A 127.0.0.1
loopback A 127.0.0.1
loopback6 AAAA ::1
dual A 127.0.0.1
dual AAAA ::1
private A 10.0.0.1
metadata A 169.254.169.254
metadata6 AAAA fd00:ec2::254
mapped AAAA ::ffff:127.0.0.1
mixed A 127.0.0.1
mixed A 10.0.0.1
public A 192.0.2.1
""",
    # No SOA and a syntax error: NSD keeps the zone configured but answers SERVFAIL.
    "broken.test": "$ORIGIN broken.test.\n@ SOA this is not a zone\n",
}


def nsd_path() -> str | None:
    """The nsd binary (in /usr/sbin, often not on a user's PATH), or None."""
    found = shutil.which("nsd")
    if found is not None:
        return found
    return next((p for p in NSD_PATHS if Path(p).exists()), None)


def nsd_available() -> str | None:
    """None when the DNS server can run here, else the reason why not."""
    if nsd_path() is None:
        return "NSD is not installed (nsd not found); run scripts/install-test-deps.sh"
    return None


def ipv6_loopback_usable() -> bool:
    """True when a socket can be bound to ::1."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST6, 0))
    except OSError:
        return False
    return True


def free_port(hosts: tuple[str, ...]) -> int:
    """A port free for both UDP and TCP on every one of `hosts` (checked, then released)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        if all(_bindable(host, port, kind) for host in hosts for kind in _KINDS):
            return port
    raise RuntimeError("no port free for UDP and TCP on the loopback addresses")


_KINDS: Final = (socket.SOCK_STREAM, socket.SOCK_DGRAM)


def _bindable(host: str, port: int, kind: socket.SocketKind) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, kind) as sock:
            sock.bind((host, port))
    except OSError:
        return False
    return True


class DnsServerError(RuntimeError):
    """NSD could not be started."""


class DnsServer:
    """A private NSD serving ``ZONES``; use as a context manager so it is always stopped."""

    start_timeout: float = 15.0

    def __init__(self, directory: Path, zones: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.zones = dict(ZONES if zones is None else zones)
        self.hosts: tuple[str, ...] = (HOST, HOST6) if ipv6_loopback_usable() else (HOST,)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.directory / "nsd.log"

    @property
    def servers(self) -> list[str]:
        """The server as ``dns.servers`` entries: ``127.0.0.1:PORT`` (and ``[::1]:PORT``)."""
        return [f"[{h}]:{self.port}" if ":" in h else f"{h}:{self.port}" for h in self.hosts]

    def resolver(self, timeout: float = 5.0) -> Resolver:
        """A resolver asking this server only (over IPv4)."""
        return Resolver(servers=self.servers[:1], timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def start(self) -> Self:
        """Write the configuration and zones, start NSD, wait until it answers; a port
        taken meanwhile by another process is retried on another one."""
        for attempt in range(3):
            self.port = free_port(self.hosts)
            self._write_files()
            self._launch()
            if self._wait_until_answering():
                return self
            self.stop()
            if attempt == 2:
                break
        raise DnsServerError(f"NSD did not answer on port {self.port}; log:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def replace_zone(self, zone: str, text: str, *, probe: str, timeout: float = 10.0) -> None:
        """Serve `text` as `zone` from now on: the file is rewritten and NSD told to reload
        (SIGHUP); returns once the answer for `probe` (an MX name) comes from the new zone."""
        assert self.proc is not None, "not running"
        before = self._mx_answer(probe)
        self.zones[zone] = text
        (self.directory / f"{zone}.zone").write_text(text)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._mx_answer(probe) != before:
                return
            time.sleep(0.1)
        raise DnsServerError(f"NSD did not reload {zone}; log:\n{self.log_tail()}")

    def _mx_answer(self, name: str) -> str:
        query = dns.message.make_query(name, "MX")
        try:
            answer = dns.query.udp(query, HOST, port=self.port, timeout=0.5)
        except dns.exception.DNSException as exc:
            return f"failed: {exc}"
        return f"{dns.rcode.to_text(answer.rcode())} {sorted(map(str, answer.answer))}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _write_files(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for zone, text in self.zones.items():
            (self.directory / f"{zone}.zone").write_text(text)
        (self.directory / "nsd.conf").write_text(self._config())

    def _config(self) -> str:
        d = self.directory
        listen = "".join(f"  ip-address: {host}@{self.port}\n" for host in self.hosts)
        zones = "".join(f'zone:\n  name: "{z}"\n  zonefile: "{z}.zone"\n' for z in self.zones)
        return (
            "server:\n"
            f"{listen}"
            f"  port: {self.port}\n"
            '  username: ""\n'
            '  chroot: ""\n'
            f'  zonesdir: "{d}"\n'
            '  database: ""\n'
            f'  pidfile: "{d}/nsd.pid"\n'
            f'  logfile: "{d}/nsd.log"\n'
            f'  xfrdfile: "{d}/xfrd.state"\n'
            f'  zonelistfile: "{d}/zone.list"\n'
            f'  xfrdir: "{d}"\n'
            "  server-count: 1\n"
            "  verbosity: 1\n"
            "  hide-version: yes\n"
            "remote-control:\n"
            "  control-enable: no\n"
            f"{zones}"
        )

    def _launch(self) -> None:
        binary = nsd_path()
        if binary is None:
            raise DnsServerError("nsd not found")
        self._stderr = (self.directory / "nsd.stderr").open("wb")
        self.proc = subprocess.Popen(
            [binary, "-d", "-c", str(self.directory / "nsd.conf")],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
        )

    def _wait_until_answering(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        query = dns.message.make_query(f"{next(iter(self.zones))}.", "SOA")
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                answer = dns.query.udp(query, HOST, port=self.port, timeout=0.5)
            except (OSError, dns.exception.Timeout):
                time.sleep(0.1)
                continue
            return answer.rcode() == dns.rcode.NOERROR
        return False


class SilentDnsServer:
    """A UDP socket on 127.0.0.1 that takes queries and never answers: a DNS server that
    times out. Nothing reads it; the kernel keeps (and then drops) what arrives."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((HOST, 0))
        self.port = int(self._sock.getsockname()[1])

    @property
    def server(self) -> str:
        return f"{HOST}:{self.port}"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

"""DNSSEC for the tests: signed zones on a private NSD behind private validating resolvers.

``DnssecServers`` signs the zones below with fresh keys (``ldns-keygen``, ``ldns-signzone``),
serves them from a ``DnsServer`` of their own and starts two private ``unbound`` resolvers
that validate from the trust anchor ``dnssec.test`` (its DS record) down, one that sends
extended DNS errors (RFC 8914) with its SERVFAILs and one that does not, so both ways of
telling a bogus answer apart are tested. Each unbound runs in the foreground from a
configuration, pid file and log in the work directory (no chroot, no user switch, no
control socket) on a free port of 127.0.0.1, and asks only the NSD (a ``stub-zone`` per
zone). ``/etc/unbound`` and the system's resolver are never read, started or stopped: the
Debian package may enable a system unbound on port 53, which these tests neither need nor
touch.

The MX hosts of every zone resolve to 127.0.0.1 and ::1, where the Postfix test listeners
run, and their TLSA records (at port 25 and at every listener's port) are computed from the
certificates those listeners present: DANE-EE (3 1 1) for every leaf, DANE-TA (2 0 1) for
the intermediate that issued the CA leaves. The leaves name mail.test, not these MX hosts,
so the DANE-TA records match the chain but do not hold (RFC 7672 3.2.2); DANE-EE does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exporter import dane
from exporter.mx import Resolver
from tests.support.certs import TestCerts
from tests.support.dns import HOST, DnsServer, free_port, nsd_available
from tests.support.postfix import LISTENERS

ANCHOR: Final = "dnssec.test"
"""The signed parent zone whose DS record is the resolvers' only trust anchor."""
SECURE: Final = f"secure.{ANCHOR}"
BOGUS: Final = f"bogus.{ANCHOR}"
EXPIRED: Final = f"expired.{ANCHOR}"
INSECURE: Final = f"insecure.{ANCHOR}"
BROKEN: Final = f"broken.{ANCHOR}"

#: Names and what each shows (every zone but BROKEN also has `mail.<zone>` with TLSA records).
NAMES: Final[dict[str, str]] = {
    SECURE: "signed: MX mail, _mta-sts (two strings, beside another TXT), _smtp._tls",
    f"mail.{SECURE}": "an MX host with TLSA records at port 25 and every listener port",
    f"mta-sts.{SECURE}": "where its MTA-STS policy is served (127.0.0.1)",
    f"notlsa.{SECURE}": "MX plain: a host without TLSA records (NXDOMAIN, signed)",
    f"nodata.{SECURE}": "a host whose _25._tcp name has a TXT record only (NODATA)",
    f"alias.{SECURE}": "CNAME to mail: its TLSA records are mail's (RFC 7672 2.2.2)",
    f"alias2.{SECURE}": "CNAME to plain (no TLSA), with TLSA records of its own",
    f"mismatch.{SECURE}": "TLSA 3 1 1 of zeros at port 25 and every listener port",
    f"absent.{SECURE}": "no such name (NXDOMAIN, signed)",
    BOGUS: "signed, MX secure; the TLSA data of mail changed after signing",
    EXPIRED: "signed with signatures that expired: everything in it is bogus",
    INSECURE: "unsigned, delegated without DS: MX, TLSA, an invalid _mta-sts, two TLS-RPT",
    BROKEN: "delegated, its zone file does not load: SERVFAIL, also with checking disabled",
}

STS_ID: Final = "20240101T000000"
TLSRPT_RUA: Final = f"mailto:tlsrpt@{SECURE}"
#: The ports with TLSA records: SMTP's, and every Postfix test listener's.
TLSA_PORTS: Final = (25, *sorted(listener.port for listener in LISTENERS.values()))
_UNBOUND_PATHS: Final = ("/usr/sbin/unbound",)
_TOOLS: Final = ("ldns-keygen", "ldns-signzone")


def unbound_path() -> str | None:
    """The unbound binary (in /usr/sbin, often not on a user's PATH), or None."""
    found = shutil.which("unbound")
    if found is not None:
        return found
    return next((p for p in _UNBOUND_PATHS if Path(p).exists()), None)


def dnssec_available() -> str | None:
    """None when signed zones can be served and validated here, else the reason why not."""
    reason = nsd_available()
    if reason is not None:
        return reason
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if unbound_path() is None:
        missing.append("unbound")
    if missing:
        return f"{', '.join(missing)} not installed; run scripts/install-test-deps.sh"
    return None


def tlsa_records(certs: TestCerts) -> dict[int, tuple[dane.Tlsa, ...]]:
    """The TLSA records that match what each port presents: DANE-EE of its leaf's key, and
    DANE-TA of the intermediate where the leaf is the test CA's (port 25: the RSA leaf)."""
    intermediate = x509.load_pem_x509_certificate(certs.intermediate_pem.read_bytes())
    issuer_ta = dane.Tlsa(2, 0, 1, hashlib.sha256(intermediate.public_bytes(Encoding.DER)).digest())
    by_port = {25: "rsa"} | {listener.port: listener.cert for listener in LISTENERS.values()}
    records: dict[int, tuple[dane.Tlsa, ...]] = {}
    for port, name in by_port.items():
        leaf = certs.all()[name].leaf_certificate()
        spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        own = dane.Tlsa(3, 1, 1, hashlib.sha256(spki).digest())
        records[port] = (own,) if name == "selfsigned" else (issuer_ta, own)
    return records


def _soa(zone: str) -> str:
    return (
        f"$ORIGIN {zone}.\n$TTL 60\n@ SOA ns hostmaster 1 3600 600 86400 60\n"
        "@ NS ns\nns A 127.0.0.1\n"
    )


def _tlsa_lines(host: str, records: Mapping[int, tuple[dane.Tlsa, ...]]) -> str:
    return "".join(
        f"_{port}._tcp.{host} TLSA {record.text()}\n"
        for port, found in sorted(records.items())
        for record in found
    )


def _mail_zone(zone: str, records: Mapping[int, tuple[dane.Tlsa, ...]]) -> str:
    """A zone with MX mail, mail's addresses and its TLSA records."""
    return f"{_soa(zone)}@ MX 10 mail\nmail A 127.0.0.1\nmail AAAA ::1\n" + _tlsa_lines(
        "mail", records
    )


def unsigned_zones(records: Mapping[int, tuple[dane.Tlsa, ...]]) -> dict[str, str]:
    """The zones' text before signing (the parent's delegations come with signing)."""
    zeros = {port: (dane.Tlsa(3, 1, 1, bytes(32)),) for port in TLSA_PORTS}
    secure = (
        _mail_zone(SECURE, records)
        + f'_mta-sts TXT "v=STSv1; " "id={STS_ID};"\n'
        + '_mta-sts TXT "an unrelated record"\n'
        + f'_smtp._tls TXT "v=TLSRPTv1; rua={TLSRPT_RUA}"\n'
        + "mta-sts A 127.0.0.1\n"
        + "plain A 127.0.0.1\n"
        + "notlsa MX 10 plain\n"
        + "nodata A 127.0.0.1\n"
        + '_25._tcp.nodata TXT "not a TLSA record"\n'
        + "alias CNAME mail\n"
        + "alias2 CNAME plain\n"
        + _tlsa_lines("alias2", {25: records[25]})
        + "mismatch A 127.0.0.1\n"
        + _tlsa_lines("mismatch", zeros)
    )
    insecure = (
        _mail_zone(INSECURE, records)
        + '_mta-sts TXT "v=STSv1; id=not-an-id!"\n'
        + f'_smtp._tls TXT "v=TLSRPTv1; rua=mailto:a@{INSECURE}"\n'
        + f'_smtp._tls TXT "v=TLSRPTv1; rua=mailto:b@{INSECURE}"\n'
    )
    return {
        SECURE: secure,
        BOGUS: _mail_zone(BOGUS, records),
        EXPIRED: _mail_zone(EXPIRED, records),
        INSECURE: insecure,
        # No SOA and a syntax error: NSD keeps the zone configured but answers SERVFAIL.
        BROKEN: f"$ORIGIN {BROKEN}.\n@ SOA this is not a zone\n",
    }


class DnssecError(RuntimeError):
    """The zones could not be signed, or a resolver not started."""


def _run(*args: str, cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise DnssecError(f"{' '.join(args)} failed: {result.stderr.strip() or result.stdout}")
    return result.stdout


class ZoneSigner:
    """Signs zones in `directory`, one key (KSK and ZSK at once, ECDSA P-256) per zone."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ds: dict[str, str] = {}

    def sign(self, zone: str, text: str, *, expired: bool = False) -> str:
        """The signed zone text; its DS record is kept in `ds`. `expired` signs with
        signatures valid only in the past (a bogus zone); otherwise from an hour ago, so
        clocks a little apart still agree."""
        self.directory.mkdir(parents=True, exist_ok=True)
        key = _run("ldns-keygen", "-a", "ECDSAP256SHA256", "-k", zone, cwd=self.directory)
        key = key.strip()
        self.ds[zone] = (self.directory / f"{key}.ds").read_text().strip()
        now = dt.datetime.now(dt.UTC)
        if expired:
            inception, expiration = now - dt.timedelta(days=60), now - dt.timedelta(days=30)
        else:
            inception, expiration = now - dt.timedelta(hours=1), now + dt.timedelta(days=30)
        unsigned = self.directory / f"{zone}.zone"
        signed = self.directory / f"{zone}.signed"
        unsigned.write_text(text)
        _run(
            "ldns-signzone",
            *("-i", str(int(inception.timestamp())), "-e", str(int(expiration.timestamp()))),
            *("-f", str(signed), str(unsigned), key),
            cwd=self.directory,
        )
        return signed.read_text()


def _delegation(child: str) -> str:
    label = child.removesuffix(f".{ANCHOR}")
    return f"{label} NS ns.{label}\nns.{label} A 127.0.0.1\n"


def _break_tlsa(signed: str) -> str:
    """The signed zone with every TLSA record's data changed and its signature kept."""
    tlsa = re.compile(r"^(\S+\s+\d+\s+IN\s+TLSA\s+\d+ \d+ \d+ )([0-9a-fA-F]+)$", re.MULTILINE)
    changed, count = tlsa.subn(lambda m: m.group(1) + "ff" * (len(m.group(2)) // 2), signed)
    if count == 0:
        raise DnssecError("no TLSA record to break")
    return changed


def signed_zones(
    directory: Path, records: Mapping[int, tuple[dane.Tlsa, ...]]
) -> tuple[dict[str, str], str]:
    """Every zone as NSD serves it (the anchor first) and the anchor's DS record."""
    signer = ZoneSigner(directory)
    unsigned = unsigned_zones(records)
    zones = {
        SECURE: signer.sign(SECURE, unsigned[SECURE]),
        BOGUS: _break_tlsa(signer.sign(BOGUS, unsigned[BOGUS])),
        EXPIRED: signer.sign(EXPIRED, unsigned[EXPIRED], expired=True),
        INSECURE: unsigned[INSECURE],
        BROKEN: unsigned[BROKEN],
    }
    parent = _soa(ANCHOR) + "".join(_delegation(child) for child in zones)
    parent += "".join(f"{signer.ds[child]}\n" for child in (SECURE, BOGUS, EXPIRED))
    return {ANCHOR: signer.sign(ANCHOR, parent)} | zones, signer.ds[ANCHOR]


class Unbound:
    """A private validating unbound asking `nsd` for the test zones only."""

    start_timeout: float = 15.0

    def __init__(self, directory: Path, nsd_port: int, anchor_ds: str, *, ede: bool) -> None:
        self.directory = directory
        self.nsd_port = nsd_port
        self.anchor_ds = anchor_ds
        self.ede = ede
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def server(self) -> str:
        """The resolver as a ``dns.servers`` entry."""
        return f"{HOST}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / "unbound.log"

    def log_tail(self, lines: int = 30) -> str:
        texts = []
        for path in (self.log_file, self.directory / "unbound.out"):
            with contextlib.suppress(FileNotFoundError):
                texts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts)

    def start(self) -> Self:
        """Write the configuration, start unbound, wait until it answers the anchor's SOA
        as secure; a port taken meanwhile by another process is retried on another one."""
        for _ in range(3):
            self.port = free_port((HOST,))
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / "anchor.ds").write_text(self.anchor_ds + "\n")
            (self.directory / "unbound.conf").write_text(self.config())
            self._launch()
            if self._wait_until_validating():
                return self
            self.stop()
        raise DnssecError(f"unbound did not validate on port {self.port}; log:\n{self.log_tail()}")

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
        if self._output is not None:
            self._output.close()
            self._output = None

    def config(self) -> str:
        d = self.directory
        stubs = "".join(
            f'stub-zone:\n  name: "{zone}"\n  stub-addr: {HOST}@{self.nsd_port}\n'
            for zone in (ANCHOR, SECURE, BOGUS, EXPIRED, INSECURE, BROKEN)
        )
        return (
            "server:\n"
            f"  interface: {HOST}\n"
            f"  port: {self.port}\n"
            "  interface-automatic: no\n"
            "  do-ip6: no\n"
            "  so-reuseport: no\n"
            "  num-threads: 1\n"
            '  username: ""\n'
            '  chroot: ""\n'
            f'  directory: "{d}"\n'
            f'  pidfile: "{d}/unbound.pid"\n'
            "  use-syslog: no\n"
            f'  logfile: "{d}/unbound.log"\n'
            "  verbosity: 1\n"
            "  val-log-level: 2\n"
            '  module-config: "validator iterator"\n'
            "  val-permissive-mode: no\n"
            f'  trust-anchor-file: "{d}/anchor.ds"\n'
            # the only anchor: nothing outside the test zones is validated, nor asked for
            "  do-not-query-localhost: no\n"
            "  qname-minimisation: no\n"
            # unbound serves test. itself (RFC 6761) unless told not to
            '  local-zone: "test." nodefault\n'
            f"  ede: {'yes' if self.ede else 'no'}\n"
            "remote-control:\n"
            "  control-enable: no\n"
            f"{stubs}"
        )

    def _launch(self) -> None:
        binary = unbound_path()
        if binary is None:
            raise DnssecError("unbound not found")
        self._output = (self.directory / "unbound.out").open("wb")
        self.proc = subprocess.Popen(
            [binary, "-d", "-c", str(self.directory / "unbound.conf")],
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def _wait_until_validating(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        query = dns.message.make_query(f"{ANCHOR}.", "SOA", want_dnssec=True)
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                answer = dns.query.udp(query, HOST, port=self.port, timeout=0.5)
            except (OSError, dns.exception.Timeout):
                time.sleep(0.1)
                continue
            if answer.rcode() != dns.rcode.NOERROR or not answer.flags & dns.flags.AD:
                raise DnssecError(
                    f"unbound answered {dns.rcode.to_text(answer.rcode())} for the anchor, "
                    f"flags {dns.flags.to_text(answer.flags)}; log:\n{self.log_tail()}"
                )
            return True
        return False


class DnssecServers:
    """Signed zones on a private NSD and two private validating unbounds in front of it
    (``resolver()`` with extended errors, ``resolver(ede=False)`` without); use as a
    context manager so every process is stopped."""

    def __init__(self, directory: Path, certs: TestCerts) -> None:
        self.directory = directory
        self.certs = certs
        self.tlsa = tlsa_records(certs)
        self.nsd: DnsServer | None = None
        self.unbound: Unbound | None = None
        self.unbound_plain: Unbound | None = None

    def start(self) -> Self:
        try:
            zones, anchor_ds = signed_zones(self.directory / "keys", self.tlsa)
            self.nsd = DnsServer(self.directory / "nsd", zones).start()
            self.unbound = Unbound(self.directory / "unbound", self.nsd.port, anchor_ds, ede=True)
            self.unbound.start()
            plain = Unbound(self.directory / "unbound-plain", self.nsd.port, anchor_ds, ede=False)
            self.unbound_plain = plain.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in (self.unbound_plain, self.unbound, self.nsd):
            if server is not None:
                server.stop()

    def resolver(self, timeout: float = 5.0, *, ede: bool = True) -> Resolver:
        """A resolver asking one of the validating unbounds (a configured, trusted one)."""
        unbound = self.unbound if ede else self.unbound_plain
        assert unbound is not None, "not running"
        return Resolver([unbound.server], timeout=timeout)

    @property
    def validating_server(self) -> str:
        """The validating unbound (with extended errors), as a ``dns.servers`` entry."""
        assert self.unbound is not None, "not running"
        return self.unbound.server

    @property
    def nsd_server(self) -> str:
        """The NSD itself, as a ``dns.servers`` entry: answers, never validates."""
        assert self.nsd is not None, "not running"
        return self.nsd.servers[0]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

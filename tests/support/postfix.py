"""A real Postfix with one SMTP listener per TLS policy, for the probe tests.

``PostfixServers`` runs a private Postfix instance of its own: configuration, queue, data
directory and log all live in the work directory it is given, and it is driven with
``postfix -c DIR``.  It never writes to ``/etc/postfix`` (only the package's own files there
are read, as ``meta_directory``) and never starts or stops the system instance, which may be
carrying real mail on the same machine.  It needs root (Postfix's master runs as root) and
the Debian ``postfix`` package (``scripts/install-test-deps.sh``).

Every listener is described by a :class:`Listener` in ``LISTENERS`` (ports in ``PORTS``), so a
test can compare a probe result against what the server is configured to accept.  The
listeners in ``LIMITED`` (ports in ``LIMITED_PORTS``) limit how often and how many at once
one client may connect, as mail servers do to scanners; they run in the same instance, but
only the tests of those limits use them, so no other test spends their budget.

OpenSSL 3 refuses TLS 1.0 and 1.1 above security level 0 (their handshake signatures use
MD5+SHA-1).  Postfix 3.7 on Debian 12 served TLS 1.0/1.1 even with its default cipher lists,
so it lowers the level itself; the cipher lists here still end in ``@SECLEVEL=0`` so that
does not depend on the Postfix version.  TLS 1.3 suites are not governed by cipher lists, so
listeners with restricted ciphers also exclude TLS 1.3.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from exporter.target import Target, TLSMode, TLSVersion
from tests.support.certs import CertFiles, TestCerts, make_test_certs

HOST: Final = "127.0.0.1"
HOST6: Final = "::1"
HOSTNAME: Final = "mail.test"
"""Postfix's ``myhostname``: appears in the greeting and the EHLO reply."""

SYSTEM_CONFIG_DIR: Final = Path("/etc/postfix")
"""The system instance's configuration: only ever looked at, to prove the tests leave it alone."""
LOCK_FILE: Final = Path("/run/smtp-tls-exporter-test-postfix.lock")
"""Serialises test runs on one machine: the listener ports are fixed."""
MARKER: Final = "# Written by smtp-tls-exporter tests/support/postfix.py"

POSTSCREEN_GREET_WAIT: Final = 3
"""Seconds the postscreen listener holds back the final ``220`` greeting line."""

POSTSCREEN_BANNER: Final = f"{HOSTNAME} ESMTP postscreen"
"""The first greeting line of the postscreen listener (sent as ``220-...``)."""

SMTPD_BANNER: Final = f"{HOSTNAME} ESMTP"
"""The (final) greeting line of every smtpd listener."""

PORTS: Final[dict[str, int]] = {
    "tls10": 2601,
    "tls11": 2602,
    "tls12": 2603,
    "tls13": 2604,
    "tls10_11": 2605,
    "all": 2606,
    "no_starttls": 2607,
    "implicit": 2608,
    "expired": 2609,
    "selfsigned": 2610,
    "ecdsa": 2611,
    "postscreen": 2612,
    "legacy_ciphers": 2613,
    "legacy_ciphers_tls10": 2614,
    "incomplete_chain": 2615,
    "ipv6": 2616,
}
"""Listener name -> TCP port (on 127.0.0.1, ``ipv6`` on ::1)."""

LIMITED_PORTS: Final[dict[str, int]] = {"rate_limit": 2617, "count_limit": 2618}
"""Listeners that limit their clients -> TCP port (on 127.0.0.1)."""

RATE_LIMIT: Final = 14
"""Connections one client may make to ``rate_limit`` per ``ANVIL_RATE_TIME_UNIT``: the
exporter's default budget per address and minute, so the budget meets it exactly."""

ANVIL_RATE_TIME_UNIT: Final = 60
"""Seconds Postfix's anvil counts connection rates over (its default, written out)."""

COUNT_LIMIT: Final = 2
"""Connections one client may have open at once to ``count_limit``."""

_POSTFIX_PROTOCOL: Final[dict[TLSVersion, str]] = {
    TLSVersion.TLS1_0: "TLSv1",
    TLSVersion.TLS1_1: "TLSv1.1",
    TLSVersion.TLS1_2: "TLSv1.2",
    TLSVersion.TLS1_3: "TLSv1.3",
}
_ORDER: Final = tuple(_POSTFIX_PROTOCOL)

V10, V11, V12, V13 = _ORDER
ALL_VERSIONS: Final = frozenset(_ORDER)
"""Every version these listeners can speak (Debian's OpenSSL 3 has no SSLv3)."""

DEFAULT_CIPHERLIST: Final = "DEFAULT:@SECLEVEL=0"
LEGACY_CIPHERS: Final = ("AES128-SHA", "AES256-SHA")
"""Static-RSA CBC suites: the only ones the ``legacy_ciphers`` listener accepts."""


@dataclass(frozen=True)
class Listener:
    """One SMTP listener and the TLS policy it is configured with."""

    name: str
    versions: frozenset[TLSVersion]
    """The TLS versions the server accepts (empty: no TLS at all)."""
    host: str = HOST
    tls: TLSMode = TLSMode.STARTTLS
    starttls: bool = True
    """STARTTLS is advertised in the EHLO reply (always False for implicit TLS)."""
    cert: str = "rsa"
    """The leaf in :class:`TestCerts` it presents."""
    full_chain: bool = True
    """Presents the intermediate too (False: the leaf alone, an incomplete chain)."""
    ciphers: tuple[str, ...] = ()
    """OpenSSL names of the only cipher suites accepted; empty: OpenSSL's DEFAULT list."""
    greet_delay: float = 0.0
    """Seconds before the final ``220`` greeting line arrives."""
    postscreen: bool = False
    settings: Mapping[str, str] = field(default_factory=dict)
    """Extra per-listener Postfix parameters."""

    @property
    def port(self) -> int:
        return PORTS[self.name] if self.name in PORTS else LIMITED_PORTS[self.name]


def _listeners() -> dict[str, Listener]:
    items = [
        Listener("tls10", frozenset({V10})),
        Listener("tls11", frozenset({V11})),
        Listener("tls12", frozenset({V12})),
        Listener("tls13", frozenset({V13})),
        Listener("tls10_11", frozenset({V10, V11})),
        Listener("all", ALL_VERSIONS),
        Listener("no_starttls", frozenset(), starttls=False),
        Listener("implicit", ALL_VERSIONS, tls=TLSMode.IMPLICIT, starttls=False),
        Listener("expired", ALL_VERSIONS, cert="expired"),
        Listener("selfsigned", ALL_VERSIONS, cert="selfsigned"),
        Listener("ecdsa", ALL_VERSIONS, cert="ecdsa"),
        Listener(
            "postscreen",
            ALL_VERSIONS,
            greet_delay=float(POSTSCREEN_GREET_WAIT),
            postscreen=True,
        ),
        Listener(
            "legacy_ciphers",
            frozenset({V10, V11, V12}),
            ciphers=LEGACY_CIPHERS,
        ),
        Listener("legacy_ciphers_tls10", frozenset({V10}), ciphers=LEGACY_CIPHERS[:1]),
        Listener("incomplete_chain", ALL_VERSIONS, full_chain=False),
        Listener("ipv6", ALL_VERSIONS, host=HOST6),
    ]
    listeners = {item.name: item for item in items}
    assert listeners.keys() == PORTS.keys()
    return listeners


LISTENERS: Final[dict[str, Listener]] = _listeners()


def _limited() -> dict[str, Listener]:
    # Postfix exempts $mynetworks (127.0.0.0/8 here) from these limits unless told otherwise.
    everyone = {"smtpd_client_event_limit_exceptions": ""}
    items = [
        Listener(
            "rate_limit",
            ALL_VERSIONS,
            settings={"smtpd_client_connection_rate_limit": str(RATE_LIMIT)} | everyone,
        ),
        Listener(
            "count_limit",
            ALL_VERSIONS,
            # Each session waits a second before its greeting, as busy servers do, so the
            # sessions of a probe overlap (else a few smtpd processes serve them in turn).
            greet_delay=1.0,
            settings={
                "smtpd_client_connection_count_limit": str(COUNT_LIMIT),
                "smtpd_delay_reject": "no",
                "smtpd_client_restrictions": "sleep 1",
            }
            | everyone,
        ),
    ]
    listeners = {item.name: item for item in items}
    assert listeners.keys() == LIMITED_PORTS.keys()
    return listeners


LIMITED: Final[dict[str, Listener]] = _limited()


class PostfixError(RuntimeError):
    """Postfix could not be configured or started."""


def postfix_available() -> str | None:
    """None when the servers can run here, else the reason why not."""
    if os.geteuid() != 0:
        return "the Postfix test servers need root (their private instance's master runs as root)"
    for tool in ("postfix", "postconf"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"Postfix is not installed ({tool} not found); run scripts/install-test-deps.sh"
    return None


def ipv6_loopback_usable() -> bool:
    """True when a socket can be bound to ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind((HOST6, 0))
    except OSError:
        return False
    return True


def _protocols(versions: frozenset[TLSVersion]) -> str:
    """Postfix protocol range (``>=TLSv1,<=TLSv1.1``); the versions must be contiguous."""
    indexes = sorted(_ORDER.index(v) for v in versions)
    if indexes != list(range(indexes[0], indexes[-1] + 1)):
        raise ValueError(f"not a contiguous range of versions: {sorted(v.value for v in versions)}")
    low, high = _POSTFIX_PROTOCOL[_ORDER[indexes[0]]], _POSTFIX_PROTOCOL[_ORDER[indexes[-1]]]
    return f">={low},<={high}"


def _option(name: str, value: str) -> str:
    """A master.cf ``-o`` option; values with blanks go in ``{ }``."""
    if any(c.isspace() for c in value) or not value:
        return f"-o {{ {name} = {value} }}"
    return f"-o {name}={value}"


def _smtpd_settings(listener: Listener, chain_file: Path) -> dict[str, str]:
    settings: dict[str, str] = {"syslog_name": f"postfix-test/{listener.name}"}
    if not listener.versions:
        settings["smtpd_tls_security_level"] = "none"
        return settings | dict(listener.settings)
    protocols = _protocols(listener.versions)
    settings |= {
        "smtpd_tls_chain_files": str(chain_file),
        "smtpd_tls_protocols": protocols,
        "smtpd_tls_mandatory_protocols": protocols,
    }
    if listener.tls is TLSMode.IMPLICIT:
        settings |= {"smtpd_tls_wrappermode": "yes", "smtpd_tls_security_level": "encrypt"}
    if listener.ciphers:
        settings |= {
            "smtpd_tls_ciphers": "high",
            "smtpd_tls_mandatory_ciphers": "high",
            "tls_high_cipherlist": ":".join((*listener.ciphers, "@SECLEVEL=0")),
        }
    return settings | dict(listener.settings)


def _service(
    name: str, kind: str, command: str, settings: Mapping[str, str], limit: str = "-"
) -> str:
    # service type private unpriv chroot wakeup maxproc command
    private = "n" if kind == "inet" else "-"
    lines = [f"{name} {kind} {private} - n - {limit} {command}"]
    lines += [f"  {_option(key, value)}" for key, value in settings.items()]
    return "\n".join(lines)


# The internal services Postfix needs (from Debian's master.cf, without chroot).
_INTERNAL_SERVICES: Final = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
dnsblog   unix  -       -       n       -       0       dnsblog
tlsproxy  unix  -       -       n       -       0       tlsproxy
"""


@dataclass(frozen=True)
class InstancePaths:
    """Where a private instance keeps its files: all inside one work directory."""

    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.root / "spool"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def data_dir_from_queue(self) -> str:
        """The data directory relative to the queue directory, where Postfix works.

        pytest's base temporary directory is private to root, so the mail owner cannot open
        files below it by absolute path; relative to its working directory it can.
        """
        return os.path.relpath(self.data_dir, self.queue_dir)

    @property
    def log_file(self) -> Path:
        return self.root / "postfix.log"


_INSTALL_PARAMETERS: Final = (
    "command_directory",
    "daemon_directory",
    "shlib_directory",
    "meta_directory",
    "mail_owner",
    "setgid_group",
)
"""Compiled-in defaults a private main.cf repeats, so ``postfix -c`` finds the programs."""


def install_parameters() -> dict[str, str]:
    """The package's built-in values of ``_INSTALL_PARAMETERS`` (``postconf -d``)."""
    output = _check("postconf", "-d", *_INSTALL_PARAMETERS)
    values = dict(line.split(" = ", 1) for line in output.splitlines() if " = " in line)
    return {name: values[name] for name in _INSTALL_PARAMETERS}


def main_cf(certs: TestCerts, ipv6: bool, paths: InstancePaths, install: Mapping[str, str]) -> str:
    """The main.cf: loopback only, no relaying, no delivery, TLS down to 1.0 possible."""
    installed = "\n".join(f"{name} = {value}" for name, value in install.items())
    return f"""\
{MARKER}
# A private instance: every file it writes is under {paths.root}.
queue_directory = {paths.queue_dir}
data_directory = {paths.data_dir_from_queue}
maillog_file = {paths.log_file}
maillog_file_prefixes = {paths.root}
{installed}

compatibility_level = 3.6
myhostname = {HOSTNAME}
mydomain = test
myorigin = $myhostname
mydestination =
relay_domains =
relayhost =
inet_interfaces = 127.0.0.1{", [::1]" if ipv6 else ""}
inet_protocols = {"ipv4, ipv6" if ipv6 else "ipv4"}
mynetworks = 127.0.0.0/8{" [::1]/128" if ipv6 else ""}
smtpd_banner = {SMTPD_BANNER}
smtpd_peername_lookup = no
biff = no
append_dot_mydomain = no
readme_directory = no

# Accept no mail at all: tests only need the dialogue up to TLS.
smtpd_relay_restrictions = reject
smtpd_recipient_restrictions = reject
default_transport = error:mail delivery is disabled on this test server
local_transport = error:local delivery is disabled on this test server
alias_maps =
alias_database =

# TLS defaults; each listener in master.cf pins its own protocols (and ciphers).
smtpd_tls_security_level = may
smtpd_tls_chain_files = {certs.rsa.combined}
smtpd_tls_protocols = >=TLSv1
smtpd_tls_mandatory_protocols = >=TLSv1
smtpd_tls_ciphers = medium
smtpd_tls_mandatory_ciphers = medium
smtpd_tls_loglevel = 1
smtpd_tls_received_header = no
smtpd_tls_session_cache_database =
# OpenSSL 3 speaks TLS 1.0/1.1 only at security level 0 (Postfix 3.7 lowers it anyway).
tls_medium_cipherlist = {DEFAULT_CIPHERLIST}
tls_high_cipherlist = {DEFAULT_CIPHERLIST}

# postscreen: never allow-list loopback, no cache, so every connection waits.
postscreen_access_list =
postscreen_cache_map =
postscreen_greet_action = ignore
postscreen_greet_banner = {POSTSCREEN_BANNER}
postscreen_greet_wait = {POSTSCREEN_GREET_WAIT}s
postscreen_dnsbl_sites =

# Connection rates (the rate_limit listener) are counted over this unit.
anvil_rate_time_unit = {ANVIL_RATE_TIME_UNIT}s
"""


def master_cf(certs: TestCerts, listeners: Mapping[str, Listener]) -> str:
    """The master.cf: one inet service per listener plus Postfix's internal services."""
    blocks = [MARKER]
    for listener in listeners.values():
        cert = certs.all()[listener.cert]
        chain_file = cert.combined if listener.full_chain else _leaf_only_chain_file(cert)
        address = f"[{listener.host}]" if ":" in listener.host else listener.host
        endpoint = f"{address}:{listener.port}"
        settings = _smtpd_settings(listener, chain_file)
        if listener.postscreen:
            handoff = f"smtpd-{listener.name}"
            blocks.append(
                _service(
                    endpoint,
                    "inet",
                    "postscreen",
                    {"syslog_name": settings["syslog_name"], "smtpd_service_name": handoff},
                    limit="1",
                )
            )
            blocks.append(_service(handoff, "pass", "smtpd", settings))
        else:
            blocks.append(_service(endpoint, "inet", "smtpd", settings))
    blocks.append(_INTERNAL_SERVICES)
    return "\n".join(blocks) + "\n"


def _leaf_only_chain_file(cert: CertFiles) -> Path:
    """Key + leaf, without the intermediate (written next to the full chain file)."""
    path = cert.combined.with_name(f"{cert.name}.leaf-only.combined.pem")
    if not path.exists():
        path.write_bytes(cert.key.read_bytes() + cert.leaf.read_bytes())
        path.chmod(0o600)
    return path


def _run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _check(*args: str, timeout: float = 60.0) -> str:
    result = _run(*args, timeout=timeout)
    if result.returncode != 0:
        raise PostfixError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result.stdout + result.stderr


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _listening(host: str, port: int) -> bool:
    """Whether a socket listens on the IPv4 `host`:`port`, seen in /proc/net/tcp: without
    connecting, which a listener that limits its clients would count."""
    packed = socket.inet_aton(host)[::-1].hex().upper()
    wanted = f"{packed}:{port:04X}"
    with open("/proc/net/tcp") as table:
        next(table)
        return any(
            fields[1] == wanted and fields[3] == "0A"  # 0A: LISTEN
            for fields in (line.split() for line in table)
        )


@dataclass(frozen=True)
class SystemPostfix:
    """The system instance's state, which these tests must leave exactly as they found it."""

    config_files: Mapping[str, str] | None
    """Every entry under ``SYSTEM_CONFIG_DIR``: relative path -> mode and content hash (or
    link target); None when the directory does not exist."""
    masters: frozenset[int]
    """Running master processes of the system instance."""


def _entry_digest(path: Path) -> str:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return f"link {os.readlink(path)}"
    if stat.S_ISDIR(info.st_mode):
        return f"dir {info.st_mode:o} {info.st_uid}:{info.st_gid}"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"file {info.st_mode:o} {info.st_uid}:{info.st_gid} {digest}"


def _config_snapshot(directory: Path) -> dict[str, str] | None:
    if not directory.exists():
        return None
    return {
        str(path.relative_to(directory)): _entry_digest(path)
        for path in sorted(directory.rglob("*"))
    }


def postfix_masters() -> dict[int, Path]:
    """Running Postfix master processes -> the configuration directory each one uses."""
    masters: dict[int, Path] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = proc.joinpath("cmdline").read_bytes().split(b"\0")
            if Path(os.fsdecode(argv[0])).name != "master":
                continue
            environ = proc.joinpath("environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        config = SYSTEM_CONFIG_DIR
        for item in environ:
            if item.startswith(b"MAIL_CONFIG="):
                config = Path(os.fsdecode(item.removeprefix(b"MAIL_CONFIG=")))
        masters[int(proc.name)] = config
    return masters


def system_postfix() -> SystemPostfix:
    """A snapshot of ``/etc/postfix`` and of the system instance's master processes."""
    return SystemPostfix(
        config_files=_config_snapshot(SYSTEM_CONFIG_DIR),
        masters=frozenset(
            pid for pid, config in postfix_masters().items() if config == SYSTEM_CONFIG_DIR
        ),
    )


class PostfixServers:
    """A private Postfix instance running every listener of ``LISTENERS``.

    (``ipv6`` only where ::1 works.)  Usage::

        servers = PostfixServers(tmp_dir)
        servers.start()
        port = servers.port("tls12")
        ...
        servers.stop()

    or as a context manager.  ``start()`` writes ``main.cf`` and ``master.cf`` into
    ``tmp_dir/etc`` (queue in ``tmp_dir/spool``, data in ``tmp_dir/data``, log in
    ``tmp_dir/postfix.log``) and starts that instance with ``postfix -c``; ``stop()`` stops
    it again.  The system instance and ``/etc/postfix`` are never touched.  An exclusive lock
    on ``LOCK_FILE`` serialises concurrent test runs on one machine (the ports are fixed).
    """

    host: str = HOST
    """The IPv4 address every listener (except ``ipv6``) is bound to."""
    hostname: str = HOSTNAME

    def __init__(
        self,
        workdir: Path,
        certs: TestCerts | None = None,
        *,
        start_timeout: float = 30.0,
        lock_timeout: float = 900.0,
    ) -> None:
        self.workdir = workdir
        self.paths = InstancePaths(workdir.absolute())
        self._certs = certs
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self.ipv6 = ipv6_loopback_usable()
        self.listeners: dict[str, Listener] = {
            name: listener
            for name, listener in LISTENERS.items()
            if self.ipv6 or listener.host != HOST6
        }
        #: The listeners that limit their clients: not in `listeners` or `names`.
        self.limited: dict[str, Listener] = dict(LIMITED)
        self._lock: IO[str] | None = None
        self._log_offset = 0
        self.running = False

    # --- what tests use -------------------------------------------------------------

    @property
    def certs(self) -> TestCerts:
        if self._certs is None:
            self._certs = make_test_certs(self.workdir / "certs")
        return self._certs

    @property
    def ca_file(self) -> Path:
        """The test root CA (PEM): verifies every listener except selfsigned/expired."""
        return self.certs.ca_pem

    @property
    def names(self) -> list[str]:
        """The listener names running here."""
        return list(self.listeners)

    @property
    def config_dir(self) -> Path:
        """This instance's configuration directory (what ``postfix -c`` is given)."""
        return self.paths.config_dir

    @property
    def log_file(self) -> Path:
        """This instance's own log (``maillog_file``)."""
        return self.paths.log_file

    def port(self, name: str) -> int:
        return self.listener(name).port

    def listener(self, name: str) -> Listener:
        try:
            return self.listeners.get(name) or self.limited[name]
        except KeyError:
            have = [*self.names, *self.limited]
            raise KeyError(f"no Postfix test listener {name!r}; have {have}") from None

    @property
    def _every_listener(self) -> dict[str, Listener]:
        return self.listeners | self.limited

    def address(self, name: str) -> tuple[str, int]:
        """``(host, port)`` of a listener."""
        listener = self.listener(name)
        return listener.host, listener.port

    def target(self, name: str, **overrides: Any) -> Target:
        """A probe :class:`Target` for a listener: SNI ``localhost``, the test CA as trust."""
        listener = self.listener(name)
        fields: dict[str, Any] = {
            "host": listener.host,
            "port": listener.port,
            "tls": listener.tls,
            "name": name,
            "servername": "localhost",
            "ehlo_name": "client.test",
            "timeout": 10.0 + listener.greet_delay,
            "ca_file": str(self.ca_file),
        }
        return Target(**(fields | overrides))

    def log_tail(self, lines: int = 50, *, since_start: bool = True) -> str:
        """The last lines of this instance's log (by default only what this run logged)."""
        try:
            with self.log_file.open("rb") as log:
                if since_start and log.seek(0, os.SEEK_END) >= self._log_offset:
                    log.seek(self._log_offset)
                else:
                    log.seek(0)
                text = log.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        """Write the instance's files, start it, wait for every listener."""
        reason = postfix_available()
        if reason is not None:
            raise PostfixError(reason)
        self._acquire_lock()
        try:
            self._stop_postfix()
            self._stop_orphans()
            self._check_ports_free()
            self._write_config()
            self._postfix("check")
            try:
                self._log_offset = self.log_file.stat().st_size
            except FileNotFoundError:
                self._log_offset = 0
            self.running = True
            self._postfix("start")
            self._wait_for_listeners()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop this instance (its files stay in the work directory for inspection)."""
        try:
            if self.running or self._lock is not None:
                self._stop_postfix()
        finally:
            self.running = False
            self._release_lock()

    def __enter__(self) -> PostfixServers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals ------------------------------------------------------------------

    def _postfix(self, *args: str) -> str:
        """Run ``postfix -c`` on this instance; it reports failures only to its log."""
        try:
            return _check("postfix", "-c", str(self.config_dir), *args)
        except PostfixError as error:
            log = self.log_tail(20, since_start=False)
            raise PostfixError(f"{error}\nlog ({self.log_file}):\n{log}") from None

    def _acquire_lock(self) -> None:
        if self._lock is not None:
            return
        lock = LOCK_FILE.open("a+")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise PostfixError(
                        f"another test run holds {LOCK_FILE} for longer than "
                        f"{self.lock_timeout:.0f}s"
                    ) from None
                time.sleep(0.5)
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _write_config(self) -> None:
        """The instance's directories and configuration, all under the work directory."""
        paths = self.paths
        install = install_parameters()
        for directory in (paths.root, paths.config_dir, paths.queue_dir, paths.data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # Postfix wants its queue owned by root and not writable by others, and a data
        # directory of the mail owner's own, which it reaches through the work directory.
        for directory in (paths.root, paths.queue_dir, paths.config_dir):
            directory.chmod(0o755)
        owner = pwd.getpwnam(install["mail_owner"])
        os.chown(paths.data_dir, owner.pw_uid, owner.pw_gid)
        paths.data_dir.chmod(0o700)
        files = {
            paths.config_dir / "main.cf": main_cf(self.certs, self.ipv6, paths, install),
            paths.config_dir / "master.cf": master_cf(self.certs, self._every_listener),
        }
        for path, text in files.items():
            path.write_text(text)
            path.chmod(0o644)

    def _instance_running(self) -> bool:
        if not self.config_dir.joinpath("main.cf").exists():
            return False
        return _run("postfix", "-c", str(self.config_dir), "status").returncode == 0

    def _stop_postfix(self) -> None:
        if not self._instance_running():
            return
        _run("postfix", "-c", str(self.config_dir), "stop")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not self._instance_running() and not any(
                _accepts(listener.host, listener.port) for listener in self._every_listener.values()
            ):
                return
            time.sleep(0.1)
        raise PostfixError(f"Postfix did not stop within {self.start_timeout:.0f}s")

    def _stop_orphans(self) -> None:
        """Stop private instances an earlier run left behind (they hold the fixed ports).

        Only instances whose main.cf these tests wrote: we hold ``LOCK_FILE``, so no other
        run is using them.
        """
        for config in set(postfix_masters().values()):
            main = config / "main.cf"
            if config == self.config_dir or config == SYSTEM_CONFIG_DIR:
                continue
            with contextlib.suppress(OSError):
                if main.read_text(errors="replace").startswith(MARKER):
                    _run("postfix", "-c", str(config), "stop")

    def _check_ports_free(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        listeners = self._every_listener.items()
        while busy := [n for n, item in listeners if _accepts(item.host, item.port)]:
            if time.monotonic() > deadline:
                raise PostfixError(f"the ports of listeners {busy} are in use by another process")
            time.sleep(0.1)

    def _wait_for_listeners(self) -> None:
        pending = self._every_listener
        deadline = time.monotonic() + self.start_timeout
        while pending:
            for name, listener in list(pending.items()):
                # A connection would count against a limited listener's budget.
                ready = _listening if name in self.limited else _accepts
                if ready(listener.host, listener.port):
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise PostfixError(
                    f"Postfix listeners {sorted(pending)} not accepting connections after "
                    f"{self.start_timeout:.0f}s; log:\n{self.log_tail()}"
                )
            time.sleep(0.1)

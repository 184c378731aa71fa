"""A real Postfix with one SMTP listener per TLS policy, for the probe tests.

``PostfixServers`` writes ``/etc/postfix/main.cf`` and ``master.cf`` (the default
instance: this is meant for a test machine or CI container), starts Postfix and waits until
every listener accepts TCP connections.  It needs root and the Debian ``postfix`` package
(``scripts/install-test-deps.sh``).

Every listener is described by a :class:`Listener` in ``LISTENERS`` (ports in ``PORTS``), so a
test can compare a probe result against what the server is configured to accept.

OpenSSL 3 refuses TLS 1.0 and 1.1 above security level 0 (their handshake signatures use
MD5+SHA-1).  Postfix 3.7 on Debian 12 served TLS 1.0/1.1 even with its default cipher lists,
so it lowers the level itself; the cipher lists here still end in ``@SECLEVEL=0`` so that
does not depend on the Postfix version.  TLS 1.3 suites are not governed by cipher lists, so
listeners with restricted ciphers also exclude TLS 1.3.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
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

CONFIG_DIR: Final = Path("/etc/postfix")
LOG_FILE: Final = Path("/var/log/postfix-test.log")
LOCK_FILE: Final = Path("/run/smtp-tls-exporter-test-postfix.lock")
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
        return PORTS[self.name]


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


class PostfixError(RuntimeError):
    """Postfix could not be configured or started."""


def postfix_available() -> str | None:
    """None when the servers can run here, else the reason why not."""
    if os.geteuid() != 0:
        return "the Postfix test servers need root (they write /etc/postfix and bind as root)"
    for tool in ("postfix", "postconf", "newaliases"):
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


def main_cf(certs: TestCerts, ipv6: bool) -> str:
    """The main.cf: loopback only, no relaying, no delivery, TLS down to 1.0 possible."""
    return f"""\
{MARKER}
compatibility_level = 3.6
myhostname = {HOSTNAME}
mydomain = test
myorigin = $myhostname
mydestination =
relay_domains =
relayhost =
inet_interfaces = loopback-only
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
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases

maillog_file = {LOG_FILE}

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


def _aliases_outdated() -> bool:
    source, database = Path("/etc/aliases"), Path("/etc/aliases.db")
    try:
        return database.stat().st_mtime < source.stat().st_mtime
    except FileNotFoundError:
        return True


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class PostfixServers:
    """Postfix running every listener of ``LISTENERS`` (``ipv6`` only where ::1 works).

    Usage::

        servers = PostfixServers(tmp_dir)
        servers.start()
        port = servers.port("tls12")
        ...
        servers.stop()

    or as a context manager.  ``start()`` replaces /etc/postfix/main.cf and master.cf
    (keeping copies of configuration files not written by these tests, put back by
    ``stop()``) and restarts Postfix if it is already running.  An exclusive lock on
    ``LOCK_FILE`` serialises concurrent test runs on one machine.
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
        self._certs = certs
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self.ipv6 = ipv6_loopback_usable()
        self.listeners: dict[str, Listener] = {
            name: listener
            for name, listener in LISTENERS.items()
            if self.ipv6 or listener.host != HOST6
        }
        self._lock: IO[str] | None = None
        self._backups: dict[Path, Path | None] = {}
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

    def port(self, name: str) -> int:
        return self.listener(name).port

    def listener(self, name: str) -> Listener:
        try:
            return self.listeners[name]
        except KeyError:
            raise KeyError(f"no Postfix test listener {name!r}; have {self.names}") from None

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
        """The last lines of Postfix's log (by default only what this run logged)."""
        try:
            with LOG_FILE.open("rb") as log:
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
        """Write the configuration, (re)start Postfix, wait for every listener."""
        reason = postfix_available()
        if reason is not None:
            raise PostfixError(reason)
        self._acquire_lock()
        try:
            self._stop_postfix()
            self._write_config()
            if _aliases_outdated():
                _check("newaliases")
            _check("postfix", "check")
            try:
                self._log_offset = LOG_FILE.stat().st_size
            except FileNotFoundError:
                self._log_offset = 0
            _check("postfix", "start")
            self.running = True
            self._wait_for_listeners()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop Postfix and put back configuration files these tests replaced."""
        try:
            if self.running or self._lock is not None:
                self._stop_postfix()
        finally:
            self.running = False
            self._restore_config()
            self._release_lock()

    def __enter__(self) -> PostfixServers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals ------------------------------------------------------------------

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
        self.workdir.mkdir(parents=True, exist_ok=True)
        files = {
            CONFIG_DIR / "main.cf": main_cf(self.certs, self.ipv6),
            CONFIG_DIR / "master.cf": master_cf(self.certs, self.listeners),
        }
        for path, text in files.items():
            self._backup(path)
            path.write_text(text)

    def _backup(self, path: Path) -> None:
        """Keep a configuration file that these tests did not write."""
        if path in self._backups:
            return
        if not path.exists():
            self._backups[path] = None  # remove it again in stop()
            return
        backup = path.with_name(path.name + ".before-tests")
        if path.read_text(errors="replace").startswith(MARKER):
            # Written by an earlier run that did not get to stop(): its backup is the original.
            if backup.exists():
                self._backups[path] = backup
            return
        shutil.copy2(path, backup)
        self._backups[path] = backup

    def _restore_config(self) -> None:
        for path, backup in self._backups.items():
            with contextlib.suppress(OSError):
                if backup is None:
                    path.unlink()
                else:
                    shutil.copy2(backup, path)
                    backup.unlink()
        self._backups.clear()

    def _postfix_running(self) -> bool:
        return _run("postfix", "status").returncode == 0

    def _stop_postfix(self) -> None:
        if not CONFIG_DIR.joinpath("main.cf").exists() or not self._postfix_running():
            return
        _run("postfix", "stop")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not self._postfix_running() and not any(
                _accepts(listener.host, listener.port) for listener in self.listeners.values()
            ):
                return
            time.sleep(0.1)
        raise PostfixError(f"Postfix did not stop within {self.start_timeout:.0f}s")

    def _wait_for_listeners(self) -> None:
        pending = dict(self.listeners)
        deadline = time.monotonic() + self.start_timeout
        while pending:
            for name, listener in list(pending.items()):
                if _accepts(listener.host, listener.port):
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise PostfixError(
                    f"Postfix listeners {sorted(pending)} not accepting connections after "
                    f"{self.start_timeout:.0f}s; log:\n{self.log_tail()}"
                )
            time.sleep(0.1)

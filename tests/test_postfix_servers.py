"""The Postfix test servers do what the probe tests rely on (checked with openssl s_client).

These test the test infrastructure, not the exporter: every listener accepts exactly its
configured TLS versions, ciphers and certificate, and the special listeners (no STARTTLS,
implicit TLS, delayed postscreen greeting) behave as described in tests/support/postfix.py.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from exporter.target import TLSMode, TLSVersion
from tests.support.certs import SELFSIGNED_NAME
from tests.support.postfix import (
    LEGACY_CIPHERS,
    LISTENERS,
    POSTSCREEN_BANNER,
    POSTSCREEN_GREET_WAIT,
    SMTPD_BANNER,
    SYSTEM_CONFIG_DIR,
    Listener,
    PostfixServers,
    SystemPostfix,
    postfix_masters,
    system_postfix,
)

pytestmark = pytest.mark.postfix

S_CLIENT_TIMEOUT = 20.0
"""Seconds for one s_client run (postscreen alone takes POSTSCREEN_GREET_WAIT)."""

_S_CLIENT_FLAG = {
    TLSVersion.TLS1_0: "-tls1",
    TLSVersion.TLS1_1: "-tls1_1",
    TLSVersion.TLS1_2: "-tls1_2",
    TLSVersion.TLS1_3: "-tls1_3",
}
_S_CLIENT_NAME = {
    "TLSv1": TLSVersion.TLS1_0,
    "TLSv1.1": TLSVersion.TLS1_1,
    "TLSv1.2": TLSVersion.TLS1_2,
    "TLSv1.3": TLSVersion.TLS1_3,
}
VERSIONS = tuple(_S_CLIENT_FLAG)


@dataclass(frozen=True)
class Handshake:
    """Outcome of one ``openssl s_client -brief`` run."""

    ok: bool
    version: TLSVersion | None
    cipher: str | None
    output: str


def s_client(
    listener: Listener,
    version: TLSVersion,
    ciphers: str = "ALL:@SECLEVEL=0",
) -> Handshake:
    """One handshake pinned to ``version``, STARTTLS unless the listener is implicit TLS."""
    host = f"[{listener.host}]" if ":" in listener.host else listener.host
    args = ["openssl", "s_client", "-brief", "-connect", f"{host}:{listener.port}"]
    if listener.tls is TLSMode.STARTTLS:
        args += ["-starttls", "smtp"]
    args += [_S_CLIENT_FLAG[version], "-cipher", ciphers]
    result = subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=S_CLIENT_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    proto = re.search(r"^Protocol version: (\S+)", output, re.MULTILINE)
    cipher = re.search(r"^Ciphersuite: (\S+)", output, re.MULTILINE)
    return Handshake(
        ok=result.returncode == 0 and proto is not None,
        version=_S_CLIENT_NAME.get(proto.group(1)) if proto else None,
        cipher=cipher.group(1) if cipher else None,
        output=output,
    )


@pytest.fixture(scope="module")
def matrix(postfix: PostfixServers) -> dict[tuple[str, TLSVersion], Handshake]:
    """Every listener x every version, run in parallel (postscreen makes each run slow)."""
    slow_first = sorted(postfix.names, key=lambda name: -postfix.listener(name).greet_delay)
    jobs = [(name, version) for name in slow_first for version in VERSIONS]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = pool.map(lambda job: s_client(postfix.listener(job[0]), job[1]), jobs)
        return dict(zip(jobs, results, strict=True))


class SMTPLines:
    """Line reader for a plain SMTP dialogue."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self) -> str:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"connection closed; pending {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode("ascii", "replace")

    def reply(self) -> list[str]:
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return lines

    def command(self, text: str) -> list[str]:
        self.sock.sendall(text.encode("ascii") + b"\r\n")
        return self.reply()


def ehlo(postfix: PostfixServers, name: str) -> list[str]:
    with socket.create_connection(postfix.address(name), timeout=10) as sock:
        smtp = SMTPLines(sock)
        assert smtp.reply()[-1].startswith("220 ")
        reply = smtp.command("EHLO client.test")
        smtp.command("QUIT")
        return reply


def starttls_certificate(
    postfix: PostfixServers, name: str, context: ssl.SSLContext, server_hostname: str
) -> x509.Certificate:
    """The server's leaf certificate after STARTTLS (raises ssl errors from ``context``)."""
    with socket.create_connection(postfix.address(name), timeout=10) as sock:
        smtp = SMTPLines(sock)
        smtp.reply()
        smtp.command("EHLO client.test")
        assert smtp.command("STARTTLS")[-1].startswith("220 ")
        with context.wrap_socket(sock, server_hostname=server_hostname) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --- versions ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LISTENERS))
def test_listener_accepts_exactly_its_versions(
    postfix: PostfixServers,
    matrix: dict[tuple[str, TLSVersion], Handshake],
    name: str,
) -> None:
    if name not in postfix.names:
        pytest.skip(f"listener {name} not running here (no usable ::1)")
    expected = postfix.listener(name).versions
    for version in VERSIONS:
        handshake = matrix[name, version]
        if version in expected:
            assert handshake.ok, f"{name} refused {version.display}:\n{handshake.output}"
            assert handshake.version is version
        else:
            assert not handshake.ok, f"{name} accepted {version.display}:\n{handshake.output}"


def test_every_version_is_offered_somewhere(postfix: PostfixServers) -> None:
    offered = set().union(*(postfix.listener(name).versions for name in postfix.names))
    assert offered == set(VERSIONS)


# --- ciphers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "accepted", "refused"),
    [
        ("legacy_ciphers", TLSVersion.TLS1_2, LEGACY_CIPHERS, ("ECDHE-RSA-AES128-GCM-SHA256",)),
        ("legacy_ciphers", TLSVersion.TLS1_0, LEGACY_CIPHERS, ("ECDHE-RSA-AES128-SHA",)),
        ("legacy_ciphers_tls10", TLSVersion.TLS1_0, ("AES128-SHA",), ("AES256-SHA",)),
    ],
)
def test_legacy_listeners_accept_only_their_ciphers(
    postfix: PostfixServers,
    name: str,
    version: TLSVersion,
    accepted: Sequence[str],
    refused: Sequence[str],
) -> None:
    listener = postfix.listener(name)
    assert set(listener.ciphers) >= set(accepted)
    for cipher in accepted:
        handshake = s_client(listener, version, f"{cipher}:@SECLEVEL=0")
        assert handshake.ok, handshake.output
        assert handshake.cipher == cipher
    for cipher in refused:
        assert not s_client(listener, version, f"{cipher}:@SECLEVEL=0").ok


def test_legacy_listener_picks_a_legacy_cipher_from_a_broad_offer(
    matrix: dict[tuple[str, TLSVersion], Handshake],
) -> None:
    handshake = matrix["legacy_ciphers", TLSVersion.TLS1_2]
    assert handshake.cipher in LEGACY_CIPHERS


# --- STARTTLS and implicit TLS -----------------------------------------------------------


def test_no_starttls_listener_does_not_advertise_starttls(postfix: PostfixServers) -> None:
    reply = ehlo(postfix, "no_starttls")
    assert reply[-1].startswith("250 ")
    assert not any(line[4:].upper() == "STARTTLS" for line in reply), reply


def test_starttls_listener_advertises_starttls(postfix: PostfixServers) -> None:
    reply = ehlo(postfix, "all")
    assert any(line[4:].upper() == "STARTTLS" for line in reply), reply


def test_implicit_listener_speaks_tls_at_once(postfix: PostfixServers) -> None:
    listener = postfix.listener("implicit")
    assert listener.tls is TLSMode.IMPLICIT
    context = ssl.create_default_context(cafile=str(postfix.ca_file))
    with (
        socket.create_connection(postfix.address("implicit"), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        smtp = SMTPLines(tls)
        assert smtp.reply() == [f"220 {SMTPD_BANNER}"]
        assert not any(line[4:] == "STARTTLS" for line in smtp.command("EHLO client.test"))


# --- postscreen ---------------------------------------------------------------------------


def test_postscreen_greeting_is_multiline_and_delayed(postfix: PostfixServers) -> None:
    start = time.monotonic()
    with socket.create_connection(postfix.address("postscreen"), timeout=15) as sock:
        smtp = SMTPLines(sock)
        first = smtp.line()
        first_at = time.monotonic() - start
        final = smtp.line()
        final_at = time.monotonic() - start
        assert first == f"220-{POSTSCREEN_BANNER}"
        assert final == f"220 {SMTPD_BANNER}"
        assert first_at < 1.0
        assert POSTSCREEN_GREET_WAIT - 0.5 <= final_at <= POSTSCREEN_GREET_WAIT + 3.0
        assert any(line[4:] == "STARTTLS" for line in smtp.command("EHLO client.test"))
        assert smtp.command("STARTTLS")[-1].startswith("220 ")
        context = ssl.create_default_context(cafile=str(postfix.ca_file))
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.3"


# --- certificates ------------------------------------------------------------------------


def test_valid_chain_verifies_against_the_test_ca(postfix: PostfixServers) -> None:
    context = ssl.create_default_context(cafile=str(postfix.ca_file))
    for hostname in ("localhost", "mail.test", "127.0.0.1"):
        key = starttls_certificate(postfix, "all", context, hostname).public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        assert key.key_size == 2048


def test_expired_certificate_is_in_the_past(postfix: PostfixServers) -> None:
    cert = starttls_certificate(postfix, "expired", unverified_context(), "localhost")
    assert cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
    context = ssl.create_default_context(cafile=str(postfix.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        starttls_certificate(postfix, "expired", context, "localhost")


def test_selfsigned_certificate_is_for_another_name(postfix: PostfixServers) -> None:
    cert = starttls_certificate(postfix, "selfsigned", unverified_context(), "localhost")
    assert cert.issuer == cert.subject
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [SELFSIGNED_NAME]
    context = ssl.create_default_context(cafile=str(postfix.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError, match=r"self.signed"):
        starttls_certificate(postfix, "selfsigned", context, "localhost")


def test_ecdsa_listener_presents_an_ecdsa_p256_certificate(postfix: PostfixServers) -> None:
    context = ssl.create_default_context(cafile=str(postfix.ca_file))
    key = starttls_certificate(postfix, "ecdsa", context, "localhost").public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"


def test_incomplete_chain_lacks_the_intermediate(postfix: PostfixServers) -> None:
    context = ssl.create_default_context(cafile=str(postfix.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError, match="issuer"):
        starttls_certificate(postfix, "incomplete_chain", context, "localhost")
    context.load_verify_locations(cafile=str(postfix.certs.intermediate_pem))
    starttls_certificate(postfix, "incomplete_chain", context, "localhost")


# --- the fixture itself ------------------------------------------------------------------


def test_listeners_are_on_loopback_with_fixed_ports(postfix: PostfixServers) -> None:
    assert postfix.host == "127.0.0.1"
    assert postfix.port("tls12") == 2603
    for name in postfix.names:
        host, port = postfix.address(name)
        assert host in {"127.0.0.1", "::1"}
        assert 2601 <= port <= 2630
    assert len({postfix.port(name) for name in postfix.names}) == len(postfix.names)


def test_log_tail_shows_this_run(postfix: PostfixServers) -> None:
    ehlo(postfix, "tls12")
    deadline = time.monotonic() + 5
    while "postfix-test/tls12/smtpd" not in postfix.log_tail(200):
        assert time.monotonic() < deadline, postfix.log_tail()
        time.sleep(0.1)


def test_target_describes_a_listener(postfix: PostfixServers) -> None:
    target = postfix.target("implicit")
    assert (target.host, target.port, target.tls) == ("127.0.0.1", 2608, TLSMode.IMPLICIT)
    assert target.ca_file == str(postfix.ca_file)
    assert postfix.target("postscreen").timeout > POSTSCREEN_GREET_WAIT


# --- the system Postfix is left alone (keep last: it stops and restarts the servers) ----------


def assert_system_postfix_unchanged(before: SystemPostfix) -> None:
    after = system_postfix()
    assert after.config_files == before.config_files, f"{SYSTEM_CONFIG_DIR} changed"
    assert after.masters <= before.masters, "a system Postfix master was started"


def test_servers_leave_the_system_postfix_alone(
    postfix: PostfixServers, system_postfix_before: SystemPostfix
) -> None:
    """Every test above used the listeners: /etc/postfix and the system instance are as before.

    The snapshot was taken before the session's servers started; stopping them must not
    touch the system instance either.
    """
    assert postfix.config_dir.is_relative_to(postfix.workdir)
    assert postfix.log_file.is_relative_to(postfix.workdir)
    assert ehlo(postfix, "all")[-1].startswith("250 ")
    assert postfix.config_dir in postfix_masters().values()
    assert_system_postfix_unchanged(system_postfix_before)
    postfix.stop()
    try:
        assert postfix.config_dir not in postfix_masters().values()
        assert_system_postfix_unchanged(system_postfix_before)
    finally:
        postfix.start()
    assert ehlo(postfix, "all")[-1].startswith("250 ")

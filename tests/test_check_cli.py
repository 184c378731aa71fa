"""`check --json` as a subprocess against in-process servers: the precise and hostile cases."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from typing import Any

import pytest

from tests.support import tlsbytes
from tests.support.certs import TestCerts, make_test_certs
from tests.support.inproc import Behaviour, InprocServer, reset, tls_context
from tests.support.tools import unavailable

ALL5 = ("ssl3", "1.0", "1.1", "1.2", "1.3")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


def check(server: InprocServer, *extra: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check", server.address, "--json",
         "--servername", "mail.test", "--ehlo-name", "client.test", *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stderr == ""
    (line,) = done.stdout.splitlines()
    return done.returncode, json.loads(line)


def test_tls13_only_with_hello_retry_request(certs: TestCerts) -> None:
    context = tls_context(
        str(certs.rsa.cert), str(certs.rsa.key), ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3
    )
    context.set_ecdh_curve("secp384r1")
    with InprocServer(Behaviour(context=context)) as server:
        status, report = check(server, "--ca-file", str(certs.ca_pem))
    assert status == 0
    assert report["versions"] == {v: v == "1.3" for v in ALL5}
    assert report["negotiated"]["version"] == "TLSv1.3"
    assert report["certificate"]["verified"] is True
    assert report["certificate"]["not_after"] == certs.rsa.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_sslv3_only(certs: TestCerts) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    der = certs.rsa.leaf_certificate().public_bytes(Encoding.DER)

    async def answer(client_hello: bytes, writer: asyncio.StreamWriter) -> None:
        if tlsbytes.offered_version(client_hello) == 0x0300:
            writer.write(tlsbytes.flight(0x0300, (der,), cipher=0x000A))
        else:
            writer.write(tlsbytes.alert(70))
        await writer.drain()
        await asyncio.sleep(0.5)

    with InprocServer(Behaviour(raw=answer)) as server:
        status, report = check(server, "--ca-file", str(certs.ca_pem))
    assert status == 0
    assert report["versions"] == {v: v == "ssl3" for v in ALL5}
    assert report["version_details"]["ssl3"]["cipher"] == "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
    assert report["version_details"]["1.2"]["detail"] == "alert protocol_version"
    assert report["negotiated"] is None
    assert report["certificate"]["subject"]


def test_every_version_reset_is_broken_tls() -> None:
    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        reset(writer)

    with InprocServer(Behaviour(raw=answer)) as server:
        status, report = check(server)
    assert status == 1
    assert report["success"] is False
    assert report["error"] == "tls_broken"
    assert report["versions"] == dict.fromkeys(ALL5)


def test_server_that_never_greets() -> None:
    with InprocServer(Behaviour(silent=True)) as server:
        status, report = check(server, "--timeout", "1.5")
    assert status == 1
    assert report["error"] == "greeting_timeout"
    assert report["versions"] == dict.fromkeys(ALL5)
    assert report["duration_seconds"] < 4


def test_reset_after_starttls() -> None:
    with InprocServer(Behaviour()) as server:  # answers 220 to STARTTLS, then hangs up
        status, report = check(server)
    assert status == 1
    assert report["starttls_advertised"] is True
    assert report["error"] == "tls_broken"


def test_no_starttls_is_success_with_every_version_refused() -> None:
    with InprocServer(Behaviour(starttls=False)) as server:
        status, report = check(server)
    assert status == 0
    assert report["success"] is True
    assert report["starttls_advertised"] is False
    assert report["versions"] == dict.fromkeys(ALL5, False)
    assert report["certificate"] is None


def test_rejected_greeting_keeps_the_servers_words() -> None:
    behaviour = Behaviour(greeting=("554-mx.test says no", "554 5.7.1 not for you"))
    with InprocServer(behaviour) as server:
        status, report = check(server)
    assert status == 1
    assert report["error"] == "greeting_rejected"
    assert "554 5.7.1 not for you" in report["error_detail"]
    assert report["starttls_advertised"] is None


def test_a_busy_greeting_is_a_rate_limit_not_a_verdict() -> None:
    behaviour = Behaviour(greeting=("421-mx.test too busy", "421 4.7.0 try again later"))
    with InprocServer(behaviour) as server:
        status, report = check(server)
    assert status == 1
    assert report["error"] == "rate_limited"
    assert "421 4.7.0 try again later" in report["error_detail"]
    assert report["versions"] == dict.fromkeys(ALL5)


def check_table(*args: str, namespace: bool = False) -> tuple[int, str]:
    """`check` as a person runs it (the table), optionally in a network namespace of its
    own with only loopback up, where no name server is reachable."""
    command = [sys.executable, "-m", "exporter", "check", *args, "--timeout", "5"]
    if namespace:
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            unavailable("a network namespace needs root and unshare (util-linux)")
        command = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout + done.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_port_is_not_blamed_on_tls() -> None:
    status, text = check_table(f"127.0.0.1:{closed_port()}")
    assert status == 1
    assert "FAILED: connect_refused (connection refused)" in text
    assert "TLS library" not in text
    assert "Default client" not in text


def test_an_unknown_host_is_not_blamed_on_tls() -> None:
    status, text = check_table("mx.unknown-host.test", namespace=True)
    assert status == 1
    assert "FAILED: resolve_failed" in text
    assert "TLS library" not in text
    assert "Default client" not in text


def test_tls_offered_but_no_handshake_completes_is_an_error() -> None:
    """A server with no certificate (Postfix with a missing chain file) answers every
    ClientHello with a fatal alert, and the default client's handshake fails: refused
    everywhere, as the server said, and the probe fails with a reason of its own."""

    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(tlsbytes.alert(40))  # handshake_failure, to every ClientHello
        await writer.drain()
        await asyncio.sleep(0.5)

    with InprocServer(Behaviour(raw=answer)) as server:
        status, report = check(server)
        table_status, text = check_table(server.address, "--servername", "mail.test")
    assert status == table_status == 1
    assert report["success"] is False
    assert report["starttls_advertised"] is True
    assert report["error"] == "tls_handshake_failed"
    assert report["versions"] == dict.fromkeys(ALL5, False)
    assert report["negotiated"] is None
    assert report["default_client_error"]
    assert "FAILED: tls_handshake_failed (every version refused" in text
    assert f"handshake failed ({report['default_client_error']})" in text


def test_senders_tell_accepts_tls_12_from_compatible_with_exchange_online(
    certs: TestCerts,
) -> None:
    """A server that accepts TLS 1.2 only with static-RSA CBC suites: TLS 1.2 accepted,
    yet Exchange Online (ECDHE suites only) cannot deliver to it; Exchange 2016 can."""
    context = tls_context(
        str(certs.rsa.cert), str(certs.rsa.key), ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2
    )
    context.set_ciphers("AES128-SHA:AES256-SHA")
    with InprocServer(Behaviour(context=context)) as server:
        status, report = check(server, "--ca-file", str(certs.ca_pem))
        table_status, text = check_table(
            server.address, "--servername", "mail.test", "--ca-file", str(certs.ca_pem),
            "--senders", "exchange-online,exchange-2016",
        )  # fmt: skip
    assert status == table_status == 0
    assert report["versions"]["1.2"] is True
    senders = report["senders"]
    assert set(senders) == {"exchange-online", "gmail", "postfix", "exim-gnutls", "exchange-2016"}
    assert senders["exchange-online"]["compatible"] is False
    # This server closes without an alert when no suite fits: a refusal all the same.
    assert senders["exchange-online"]["failure"] in ("suite", "alert", "dropped")
    assert senders["exchange-2016"]["compatible"] is True
    assert senders["exchange-2016"]["version"] == "TLSv1.2"
    assert senders["exchange-2016"]["cipher"].startswith("TLS_RSA_WITH_AES_")
    assert "Senders" in text
    assert "exchange-online  INCOMPATIBLE" in text
    assert "exchange-2016    compatible    TLSv1.2 TLS_RSA_WITH_AES_" in text
    assert "gmail" not in text

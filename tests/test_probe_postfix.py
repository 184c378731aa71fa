"""`check --json` against real Postfix listeners, cross-checked with `openssl s_client`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from exporter.target import TLSMode, TLSVersion
from tests.support.postfix import LISTENERS, PostfixServers

pytestmark = pytest.mark.postfix

ALL5 = ("ssl3", "1.0", "1.1", "1.2", "1.3")
OPENSSL_FLAGS = {"1.0": "-tls1", "1.1": "-tls1_1", "1.2": "-tls1_2", "1.3": "-tls1_3"}


def check(postfix: PostfixServers, name: str, *extra: str) -> tuple[int, dict[str, Any]]:
    listener = postfix.listener(name)
    host = f"[{listener.host}]" if ":" in listener.host else listener.host
    argv = [
        sys.executable,
        "-m",
        "exporter",
        "check",
        f"{host}:{listener.port}",
        "--servername",
        "localhost",
        "--ca-file",
        str(postfix.ca_file),
        "--ehlo-name",
        "client.test",
        "--timeout",
        str(15 + listener.greet_delay),
        "--tls",
        listener.tls.value,
        "--json",
        *extra,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # exactly one JSON object
    return done.returncode, json.loads(lines[0])


def expected_negotiated(versions: frozenset[TLSVersion]) -> str | None:
    """What the local OpenSSL's defaults (TLS 1.2 and newer) end up with."""
    for version, name in ((TLSVersion.TLS1_3, "TLSv1.3"), (TLSVersion.TLS1_2, "TLSv1.2")):
        if version in versions:
            return name
    return None


@pytest.mark.parametrize("name", [n for n in LISTENERS if n != "ipv6"])
def test_every_listener_gives_the_right_verdicts(postfix: PostfixServers, name: str) -> None:
    listener = postfix.listener(name)
    status, report = check(postfix, name)
    assert status == 0, report
    assert report["success"] is True
    assert report["error"] is None
    assert report["target"] == f"127.0.0.1:{listener.port}"
    assert report["versions"] == {v: TLSVersion(v) in listener.versions for v in ALL5}
    if listener.tls is TLSMode.IMPLICIT:
        assert report["starttls_advertised"] is None
    else:
        assert report["starttls_advertised"] is listener.starttls
    negotiated = report["negotiated"]
    assert (negotiated["version"] if negotiated else None) == expected_negotiated(listener.versions)
    cert = report["certificate"]
    if not listener.versions:
        assert cert is None
        return
    assert cert is not None
    files = postfix.certs.all()[listener.cert]
    assert cert["not_after"] == files.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cert["not_before"] == files.not_before.strftime("%Y-%m-%dT%H:%M:%SZ")
    expected_error = {
        "expired": "expired",
        "selfsigned": "self_signed",
    }.get(listener.cert)
    if not listener.full_chain:
        expected_error = "incomplete_chain"
    assert cert["verify_error"] == expected_error, cert["verify_detail"]
    assert cert["verified"] is (expected_error is None)
    if listener.cert == "ecdsa":
        assert (cert["key_type"], cert["key_bits"]) == ("EC", 256)
    else:
        assert (cert["key_type"], cert["key_bits"]) == ("RSA", 2048)


def test_legacy_cipher_servers_are_not_mistaken_for_refusing(postfix: PostfixServers) -> None:
    for name in ("legacy_ciphers", "legacy_ciphers_tls10"):
        _, report = check(postfix, name)
        accepted = {v for v, ok in report["versions"].items() if ok}
        assert accepted == {v.value for v in postfix.listener(name).versions}
        for version in accepted:
            cipher = report["version_details"][version]["cipher"]
            assert cipher in ("TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_256_CBC_SHA")


def test_postscreen_delayed_multiline_greeting(postfix: PostfixServers) -> None:
    listener = postfix.listener("postscreen")
    assert listener.greet_delay >= 3
    _, report = check(postfix, "postscreen")
    assert report["success"] is True
    assert report["duration_seconds"] >= listener.greet_delay
    # Connections overlap: six connections do not cost six greeting waits.
    assert report["duration_seconds"] < 6 * listener.greet_delay


def test_ipv6_listener(postfix: PostfixServers) -> None:
    if "ipv6" not in postfix.listeners:
        pytest.skip("::1 is not usable on this machine")
    status, report = check(postfix, "ipv6")
    assert status == 0
    assert report["target"] == f"[::1]:{postfix.port('ipv6')}"
    assert report["versions"] == {v: v != "ssl3" for v in ALL5}


def test_wrong_servername_is_a_hostname_mismatch(postfix: PostfixServers) -> None:
    listener = postfix.listener("all")
    argv_name = "wrong.example"
    status, report = check(postfix, "all", "--servername", argv_name)
    assert status == 0
    assert report["servername"] == argv_name
    assert report["certificate"]["verify_error"] == "hostname_mismatch"
    assert listener.versions


def test_table_output_for_people(postfix: PostfixServers) -> None:
    listener = postfix.listener("tls10_11")
    exe = shutil.which("smtp-tls-exporter") or ""
    argv = [exe] if exe else [sys.executable, "-m", "exporter"]
    done = subprocess.run(
        [*argv, "check", f"127.0.0.1:{listener.port}", "--servername", "localhost",
         "--ca-file", str(postfix.ca_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("TLSv1.0") and "accepted" in line for line in lines)
    assert any(line.startswith("TLSv1.2") and "refused" in line for line in lines)
    assert any("Verified" in line and "yes" in line for line in lines)


def _openssl_accepts(listener_host: str, port: int, version: str, starttls: bool) -> bool:
    argv = [
        "openssl",
        "s_client",
        "-connect",
        f"{listener_host}:{port}",
        "-servername",
        "localhost",
    ]
    argv += [OPENSSL_FLAGS[version], "-cipher", "ALL:@SECLEVEL=0"]
    if starttls:
        argv += ["-starttls", "smtp"]
    done = subprocess.run(argv, input="", capture_output=True, text=True, timeout=30, check=False)
    return done.returncode == 0 and "Cipher is (NONE)" not in done.stdout


@pytest.mark.parametrize(
    "name", ["tls10", "tls11", "tls12", "tls13", "tls10_11", "all", "implicit", "legacy_ciphers"]
)
def test_verdicts_match_openssl(postfix: PostfixServers, name: str) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    listener = postfix.listener(name)
    _, report = check(postfix, name)
    for version in OPENSSL_FLAGS:
        theirs = _openssl_accepts(
            listener.host, listener.port, version, listener.tls is TLSMode.STARTTLS
        )
        assert report["versions"][version] is theirs, (version, report["version_details"])


def test_fault_refused_port_exits_1() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check", "127.0.0.1:9", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["error"] == "connect_refused"
    assert report["versions"] == dict.fromkeys(ALL5)


def test_usage_errors_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check", "127.0.0.1:99999"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "port" in done.stderr
    assert "Traceback" not in done.stderr

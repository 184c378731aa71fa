"""The seed corpus: real, valid inputs for every target, written into bench/fuzz/corpus/.

    python -m bench.fuzz.seeds      # writes the seeds again (new keys: the files change)

Flights are what a real OpenSSL server answers to each of the exporter's pinned hellos
(bench/flights.py records them), plus the shapes tests/support/tlsbytes.py builds for what
OpenSSL never sends (SSLv2, a HelloRetryRequest, warnings before the answer, one record per
message, a plain-text refusal). Chains come from trustme, the config from the example, web
configs from the toolkit's own sample (with cost 4 hashes, so an input costs milliseconds)
and every section of the format. Each seed has a name that says what it is; inputs the
fuzzer adds later are named by their hash.
"""

from __future__ import annotations

import datetime as dt
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import trustme

from bench.fleet import LEGACY, MODERN, WIDE
from bench.flights import Identity, record_flights
from bench.fuzz.harnesses import ANCHOR, HARNESSES, NAMES, chain_bytes
from exporter.probe.hello import HELLO_RETRY_REQUEST_RANDOM
from exporter.target import TLSVersion
from tests.support import tlsbytes
from tests.support.certs import der_chain

REPO = Path(__file__).resolve().parents[2]
#: The hello target's first byte: 1 asks for the chain, as every pinned connection but SSLv2.
_WANT_CHAIN = b"\x01"


def _identity(directory: Path, leaf: trustme.LeafCert) -> Identity:
    chain, key = directory / "chain.pem", directory / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return Identity(chain, key)


def hello_seeds(leaf: trustme.LeafCert) -> Iterator[tuple[str, bytes]]:
    chain = der_chain(leaf)
    with tempfile.TemporaryDirectory() as tmp:
        identity = _identity(Path(tmp), leaf)
        seen: set[bytes] = set()
        for profile in (MODERN, WIDE, LEGACY):
            for wire, flight in record_flights(profile, identity).items():
                if flight and flight not in seen:
                    seen.add(flight)
                    version = TLSVersion.from_wire(wire)
                    name = version.value if version else f"{wire:04x}"
                    yield f"openssl-{profile.name}-{name}", _WANT_CHAIN + flight
    for wire, name in ((0x0300, "ssl3"), (0x0301, "1.0"), (0x0303, "1.2")):
        yield f"built-{name}-chain", _WANT_CHAIN + tlsbytes.flight(wire, chain, 0xC02F)
    messages = tlsbytes.server_hello(0x0303) + tlsbytes.certificate(*chain)
    split = b"".join(
        tlsbytes.record(22, messages[i : i + 300]) for i in range(0, len(messages), 300)
    )
    yield "built-1.2-split-records", _WANT_CHAIN + split + tlsbytes.record(22, b"\x0e\x00\x00\x00")
    yield "built-1.2-no-chain-wanted", b"\x00" + tlsbytes.record(22, tlsbytes.server_hello(0x0303))
    retry = tlsbytes.server_hello(0x0304, 0x1301, HELLO_RETRY_REQUEST_RANDOM)
    yield "built-1.3-retry-request", _WANT_CHAIN + tlsbytes.record(22, retry)
    warning = tlsbytes.record(21, bytes([1, 112]))
    yield "built-warning-then-alert", _WANT_CHAIN + warning + tlsbytes.alert(70)
    cert = chain[0]
    body = struct.pack("!BBBHHHH", 4, 0, 1, 0x0002, len(cert), 3, 16) + cert + b"\x07\x00\xc0"
    body += bytes(16)
    # SSLv2 connections want no chain (connection.try_version), hence the 0 flag byte.
    yield "built-sslv2-server-hello", b"\x00" + struct.pack("!H", 0x8000 | len(body)) + body
    yield "built-sslv2-error", b"\x00" + bytes([0x80, 0x03, 0x00, 0x00, 0x01])
    yield "built-smtp-refusal", _WANT_CHAIN + b"454 4.7.0 TLS not available\r\n"


def smtp_seeds() -> Iterator[tuple[str, bytes]]:
    ehlo = b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
    yield "postfix", b"220 mx.example.org ESMTP\r\n" + ehlo + b"250 STARTTLS\r\n220 2.0.0 Ready\r\n"
    yield (
        "postscreen-multiline-greeting",
        b"220-mx.example.org ESMTP\r\n220 mx.example.org ESMTP\r\n"
        + ehlo
        + b"250 STARTTLS\r\n220 go ahead\r\n",
    )
    yield "no-starttls", b"220 mx ESMTP\r\n250-mx\r\n250 SIZE 1\r\n221 2.0.0 Bye\r\n"
    yield "greeting-rejected", b"554 5.7.1 no thanks\r\n"
    yield "busy", b"421 4.3.2 try later\r\n"
    yield "ehlo-rejected", b"220 mx\r\n550 5.7.1 who are you\r\n"
    yield "starttls-refused", b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n"
    yield "bare-newlines-8bit", b"220 mx \xff\xfe\n250-mx\n250 starttls\n220 ok\n"
    yield (
        "exchange",
        b"220 EX01.example.local Microsoft ESMTP MAIL Service ready\r\n"
        + (b"250-EX01 Hello\r\n250-STARTTLS\r\n250 CHUNKING\r\n220 2.0.0 SMTP server ready\r\n"),
    )


def certificate_seeds(root: trustme.CA) -> Iterator[tuple[str, bytes]]:
    middle = root.create_child_ca()
    rsa = middle.issue_cert("mail.test", "127.0.0.1", key_type=trustme.KeyType.RSA)
    ecdsa = middle.issue_cert("*.test", "::1")
    old = middle.issue_cert("mail.test", not_after=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    stranger = trustme.CA().issue_cert("mail.test")
    index = NAMES.index
    yield "rsa-chain", chain_bytes(index("mail.test"), der_chain(rsa))
    yield "ecdsa-wildcard-chain", chain_bytes(index("other.test"), der_chain(ecdsa))
    yield "leaf-only", chain_bytes(index("mail.test"), der_chain(rsa)[:1])
    yield "expired", chain_bytes(index("mail.test"), der_chain(old))
    yield "mismatch-by-address", chain_bytes(index("::1"), der_chain(rsa))
    yield "untrusted-root", chain_bytes(index("mail.test"), der_chain(stranger))
    root_der = der_chain(root.issue_cert("x.test"))[-1]
    yield (
        "with-root-and-repeats",
        chain_bytes(index("mail.test"), (*der_chain(rsa), root_der, *der_chain(rsa)[1:] * 3)),
    )


def config_seeds() -> Iterator[tuple[str, bytes]]:
    yield "example", (REPO / "config.example.yaml").read_bytes()
    yield "minimal", b"targets:\n  - host: mx.example.org\n"
    yield (
        "anchors-and-merge",
        (
            b"x-common: &common\n  interval: 10m\n  labels: {team: mail}\n"
            b"defaults:\n  timeout: 20s\n"
            b"targets:\n  - <<: *common\n    host: mx1.example.org\n"
            b"  - {<<: *common, host: '[2001:db8::25]', port: 465, tls: implicit}\n"
            b"  - domain: partner.example\n    labels: {partner: acme}\n"
            b"dns:\n  servers: ['192.0.2.53', '[2001:db8::53]:5353']\n  timeout: 3s\n"
        ),
    )
    yield "flow-style", b'{targets: [{host: "mx.b\\u00fccher.example", versions: [ssl2, "1.3"]}]}'
    yield "problems", b"defaults:\n  interval: 1y1d\ntargets:\n  - host: a b\n    prot: 25\n"


def webconfig_seeds() -> Iterator[tuple[str, bytes]]:
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")
    yield "empty", b""
    yield (
        "toolkit-sample",
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            f"basic_auth_users:\n  alice: {hashed}\n  bob: {hashed.replace('$2y$', '$2a$')}\n"
            'rate_limit:\n  interval: "1s"\n  burst: 20\n'
        ).encode(),
    )
    yield (
        "mutual-tls",
        (
            b"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            b"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
            b"  client_allowed_sans: [scraper.test]\n  min_version: TLS12\n  max_version: TLS13\n"
            b"  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n"
            b"  curve_preferences: [X25519]\n  prefer_server_cipher_suites: true\n"
        ),
    )
    yield (
        "headers",
        (
            b"http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
            b"    Strict-Transport-Security: max-age=31536000\n"
            b"    X-Content-Type-Options: nosniff\n"
            b"    Content-Security-Policy: \"default-src 'self'\"\n"
        ),
    )
    leaf = trustme.CA().issue_cert("localhost")
    indent = "\n    "
    cert = indent.join(leaf.cert_chain_pems[0].bytes().decode().splitlines())
    key = indent.join(leaf.private_key_pem.bytes().decode().splitlines())
    inline = f"tls_server_config:\n  cert: |{indent}{cert}\n  key: |{indent}{key}\n"
    yield "inline-pem", inline.encode()


def write_seeds() -> dict[str, int]:
    """Write every seed (and the certificate target's trust anchor); seeds per target."""
    root = trustme.CA(organization_name="smtp-tls-exporter fuzz seeds")
    ANCHOR.write_bytes(root.cert_pem.bytes())
    seeds = {
        "hello": hello_seeds(root.issue_cert("mail.test")),
        "smtp": smtp_seeds(),
        "certificate": certificate_seeds(root),
        "config": config_seeds(),
        "webconfig": webconfig_seeds(),
    }
    written = {}
    for target, inputs in seeds.items():
        directory = HARNESSES[target].corpus
        directory.mkdir(parents=True, exist_ok=True)
        count = 0
        for name, data in inputs:
            (directory / name).write_bytes(data)
            count += 1
        written[target] = count
    return written


if __name__ == "__main__":
    for target, count in write_seeds().items():
        print(f"{target}: {count} seeds in {HARNESSES[target].corpus.relative_to(REPO)}")

"""Sender profiles seen from outside: their ClientHellos taken apart, OpenSSL made to answer
them, and `openssl s_client` made to play them, so the tests compare the probe's verdicts
with what a real TLS stack does."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from exporter.probe import suites
from exporter.senders import SenderProfile
from exporter.target import TLSVersion
from tests.support.certs import TestCerts


@dataclass(frozen=True)
class HelloFields:
    """A ClientHello record taken apart: the fields a profile's hello promises."""

    record_version: int
    legacy_version: int
    session_id: bytes
    suites: tuple[int, ...]
    extensions: dict[int, bytes] = field(default_factory=dict)

    def u16s(self, kind: int, prefix: int = 2) -> tuple[int, ...]:
        """A list of two-byte numbers in an extension (after its length prefix)."""
        data = self.extensions[kind][prefix:]
        return tuple(struct.unpack(f"!{len(data) // 2}H", data))

    @property
    def groups(self) -> tuple[int, ...]:
        return self.u16s(10)

    @property
    def signature_algorithms(self) -> tuple[int, ...]:
        return self.u16s(13)

    @property
    def versions(self) -> tuple[int, ...]:
        return self.u16s(43, prefix=1)

    @property
    def key_shares(self) -> dict[int, bytes]:
        data = self.extensions[51][2:]
        shares = {}
        while data:
            group, size = struct.unpack("!HH", data[:4])
            shares[group] = data[4 : 4 + size]
            data = data[4 + size :]
        return shares

    @property
    def server_name(self) -> str | None:
        data = self.extensions.get(0)
        return None if data is None else data[5:].decode("ascii")


def hello_fields(record: bytes) -> HelloFields:
    """Take a ClientHello record apart, checking every length on the way."""
    assert record[0] == 22, "not a handshake record"
    assert len(record) == 5 + struct.unpack("!H", record[3:5])[0], "record length"
    handshake = record[5:]
    assert handshake[0] == 1, "not a ClientHello"
    assert int.from_bytes(handshake[1:4], "big") == len(handshake) - 4, "handshake length"
    body = handshake[4:]
    pos = 2 + 32
    session_id = body[pos + 1 : pos + 1 + body[pos]]
    pos += 1 + body[pos]
    size = struct.unpack("!H", body[pos : pos + 2])[0]
    offered = struct.unpack(f"!{size // 2}H", body[pos + 2 : pos + 2 + size])
    pos += 2 + size
    assert body[pos : pos + 2] == b"\x01\x00", "compression: null only"
    pos += 2
    extensions: dict[int, bytes] = {}
    end = pos + 2 + struct.unpack("!H", body[pos : pos + 2])[0]
    assert end == len(body), "extensions length"
    pos += 2
    while pos < end:
        kind, size = struct.unpack("!HH", body[pos : pos + 4])
        assert kind not in extensions, f"extension {kind} twice"
        extensions[kind] = body[pos + 4 : pos + 4 + size]
        pos += 4 + size
    assert pos == end, "extension lengths"
    return HelloFields(
        record_version=struct.unpack("!H", record[1:3])[0],
        legacy_version=struct.unpack("!H", body[:2])[0],
        session_id=session_id,
        suites=offered,
        extensions=extensions,
    )


def answer(context: ssl.SSLContext, record: bytes) -> bytes:
    """What an OpenSSL server with `context` sends back to a ClientHello (its first flight,
    or its alert), through memory BIOs."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(record)
    # It stops waiting for the client's next flight, or having refused with an alert.
    with contextlib.suppress(ssl.SSLError):
        server.do_handshake()
    return outgoing.read()


# --- openssl s_client as the sender ---------------------------------------------------------

_OPENSSL_GROUPS = {
    0x0017: "P-256",
    0x0018: "P-384",
    0x0019: "P-521",
    0x001D: "X25519",
    0x001E: "X448",
    0x0100: "ffdhe2048",
    0x0101: "ffdhe3072",
    0x0102: "ffdhe4096",
    0x0103: "ffdhe6144",
    0x0104: "ffdhe8192",
}
#: Signature schemes OpenSSL knows only in its `ALG+HASH` form.
_OPENSSL_SIGALGS = {
    0x0201: "RSA+SHA1",
    0x0202: "DSA+SHA1",
    0x0203: "ECDSA+SHA1",
    0x0301: "RSA+SHA224",
    0x0302: "DSA+SHA224",
    0x0303: "ECDSA+SHA224",
    0x0402: "DSA+SHA256",
    0x0502: "DSA+SHA384",
    0x0602: "DSA+SHA512",
}
_PROTOCOL = {
    TLSVersion.TLS1_0: "TLSv1",
    TLSVersion.TLS1_1: "TLSv1.1",
    TLSVersion.TLS1_2: "TLSv1.2",
    TLSVersion.TLS1_3: "TLSv1.3",
}
_PROTOCOL_NAMES = {name: version for version, name in _PROTOCOL.items()}


def openssl_flags(profile: SenderProfile, *, seclevel: int | None = None) -> list[str]:
    """`openssl s_client` flags that make OpenSSL offer what the profile offers.

    `seclevel` None keeps the system's security level (Debian 12: 2), as the sender of the
    `postfix` profile does; other senders are played at 0 so OpenSSL's own limits stay out.
    """
    legacy = [suites.openssl_name(c) for c in profile.suites if not suites.is_tls13(c)]
    modern = [suites.openssl_name(c) for c in profile.suites if suites.is_tls13(c)]
    assert None not in legacy + modern, f"{profile.name}: a suite OpenSSL has no name for"
    level = "" if seclevel is None else f":@SECLEVEL={seclevel}"
    groups = [_OPENSSL_GROUPS[g] for g in profile.groups if g in _OPENSSL_GROUPS]
    sigalgs = [
        _OPENSSL_SIGALGS.get(code) or suites.signature_name(code)
        for code in profile.signature_algorithms
    ]
    flags = [
        "-min_protocol",
        _PROTOCOL[profile.min_version],
        "-max_protocol",
        _PROTOCOL[profile.max_version],
        "-cipher",
        ":".join(str(name) for name in legacy) + level,
        "-ciphersuites",
        ":".join(str(name) for name in modern),
        "-groups",
        ":".join(groups),
        "-sigalgs",
        ":".join(sigalgs),
    ]
    return [*flags, *([] if profile.sni else ["-noservername"])]


@dataclass(frozen=True)
class Handshake:
    """What one `openssl s_client -brief` run ended with."""

    ok: bool
    version: TLSVersion | None
    suite: int | None
    output: str


def s_client(
    host: str,
    port: int,
    profile: SenderProfile,
    *,
    starttls: bool = True,
    seclevel: int | None = None,
    servername: str = "mail.test",
) -> Handshake:
    """One full handshake as OpenSSL plays `profile` (STARTTLS first unless told not to)."""
    openssl = shutil.which("openssl") or "openssl"
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    args = [openssl, "s_client", "-brief", "-connect", address]
    if profile.sni:
        args += ["-servername", servername]
    if starttls:
        args += ["-starttls", "smtp", "-name", "client.test"]
    args += openssl_flags(profile, seclevel=seclevel)
    result = subprocess.run(
        args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False
    )
    output = result.stdout + result.stderr
    proto = re.search(r"^Protocol version: (\S+)", output, re.MULTILINE)
    cipher = re.search(r"^Ciphersuite: (\S+)", output, re.MULTILINE)
    return Handshake(
        ok=result.returncode == 0 and proto is not None,
        version=_PROTOCOL_NAMES.get(proto.group(1)) if proto else None,
        suite=suites.suite_code(cipher.group(1)) if cipher else None,
        output=output,
    )


def dh_parameters(directory: Path, group: str) -> Path:
    """A PEM file of a named DH group (`ffdhe2048`, `dh_1024_160`, ...) for a server's
    `load_dh_params`: Python's servers have none, so no DHE suite without one."""
    path = directory / f"{group}.pem"
    if not path.exists():
        openssl = shutil.which("openssl") or "openssl"
        args = ["genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", f"group:{group}"]
        subprocess.run(
            [openssl, *args, "-out", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return path


@dataclass(frozen=True)
class ServerTLS:
    """What an OpenSSL test server accepts: the test certificate `which`, exactly the
    versions from `low` to `high`, the suites of `ciphers` (at security level 0, so the old
    ones work), one curve if given, and a DH group for DHE."""

    ciphers: str = "ALL"
    low: ssl.TLSVersion = ssl.TLSVersion.TLSv1
    high: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    curve: str | None = None
    which: str = "rsa"
    dh_group: str = "ffdhe2048"

    def context(self, certs: TestCerts, dh_dir: Path) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        files = certs.all()[self.which]
        context.load_cert_chain(str(files.cert), str(files.key))
        context.set_ciphers(f"{self.ciphers}:@SECLEVEL=0")
        context.load_dh_params(str(dh_parameters(dh_dir, self.dh_group)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 and 1.1 on purpose
            context.minimum_version = self.low
            context.maximum_version = self.high
        if self.curve is not None:
            context.set_ecdh_curve(self.curve)
        return context


class StartTLSServer:
    """A plain SMTP server on 127.0.0.1 whose STARTTLS runs OpenSSL on a blocking socket.

    A refused handshake then ends in OpenSSL's own alert, which a sender's verdict names
    (asyncio's TLS servers drop the connection without sending it).
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.host = "127.0.0.1"
        self._listener = socket.create_server((self.host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stop = threading.Event()

    def __enter__(self) -> StartTLSServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()

    def _serve(self) -> None:
        self._listener.settimeout(0.1)  # to see the stop soon
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            conn.setblocking(True)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with contextlib.suppress(OSError), conn:
            if not _smtp_until_starttls(conn):
                return
            with self.context.wrap_socket(conn, server_side=True) as tls:
                while data := tls.recv(4096):
                    reply = (
                        b"221 2.0.0 Bye\r\n" if data.upper().startswith(b"QUIT") else b"250 ok\r\n"
                    )
                    tls.sendall(reply)


def _smtp_until_starttls(conn: socket.socket) -> bool:
    """The plaintext dialogue; True once STARTTLS was answered with 220."""
    conn.sendall(b"220 mail.test ESMTP\r\n")
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = conn.recv(4096)
            if not chunk:
                return False
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        command = line.strip().upper()
        if command.startswith((b"EHLO", b"HELO")):
            conn.sendall(b"250-mail.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        elif command == b"STARTTLS":
            conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
            return True
        elif command == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return False
        else:
            conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

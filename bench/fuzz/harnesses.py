"""The fuzz targets: each parser fed by the network or by users, as a function of raw bytes.

A harness lets out only the errors its callers handle (`Harness.allowed`); anything else,
a failed check included, is a finding. Harnesses run without atheris too: the test suite
replays the corpus through them, and `python -m bench.fuzz --reproduce FILE` replays one
input with its traceback.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import trustme
from cryptography import x509

from exporter.config import ConfigError, load_config
from exporter.config.schema import SETTING_KEYS, TARGET_KEYS
from exporter.probe import certs, smtp
from exporter.probe.deadline import Deadline, ProbeFailure
from exporter.transcript import MAX_TEXT, ConnectionRecorder
from exporter.webconfig import WebConfigError, load_web_config
from tests.support.flightcheck import check_prefixes, check_records_end, flight_or_error
from tests.support.mutate import DER_EDIT_KINDS, apply_der_edits

FUZZ_DIR: Final = Path(__file__).resolve().parent
#: The seed and regression inputs of each target, kept in the repository.
CORPUS_DIR: Final = FUZZ_DIR / "corpus"
#: The root CA of the certificate seeds, trusted by the certificate harness.
ANCHOR: Final = FUZZ_DIR / "anchor.pem"


@dataclass(frozen=True)
class Harness:
    """One fuzz target: what it feeds, how large an input may grow, words worth trying."""

    name: str
    about: str
    run: Callable[[bytes], None]
    allowed: tuple[type[Exception], ...]
    max_len: int
    dictionary: tuple[bytes, ...] = ()
    #: A mutation that knows the input's structure (None where bytes are the structure);
    #: None back when it finds nothing to edit.
    edit: Callable[[bytes, random.Random], bytes | None] | None = None

    @property
    def corpus(self) -> Path:
        return CORPUS_DIR / self.name

    def one_input(self, data: bytes) -> None:
        """Run the harness on `data`; only the allowed errors are swallowed."""
        with contextlib.suppress(*self.allowed):
            self.run(data)


# --- the server's first flight ----------------------------------------------------------


def hello_flight(data: bytes) -> None:
    """The first byte's low bit says whether the chain is wanted; the rest is what the
    server sent. Parser errors are checked inside (flightcheck), so nothing may escape."""
    if not data:
        return
    want, flight = bool(data[0] & 1), data[1:]
    flight_or_error(flight, want)
    check_records_end(flight)
    check_prefixes(flight, want)


# --- the SMTP dialogue ------------------------------------------------------------------


class _Sink(asyncio.Transport):
    """Where the probe's commands go: nowhere."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


@cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


async def _dialogue(data: bytes) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=smtp.MAX_LINE)
    reader.feed_data(data)
    reader.feed_eof()
    protocol = asyncio.StreamReaderProtocol(reader)
    writer = asyncio.StreamWriter(_Sink(), protocol, reader, loop)
    log = ConnectionRecorder(time.monotonic())
    try:
        await smtp.starttls(reader, writer, "probe.example.org", Deadline.after(5), log)
    finally:
        assert all(len(text) <= MAX_TEXT for _, _, text in log.rows())


def smtp_reply(data: bytes) -> None:
    """What the server says from its greeting up to STARTTLS, then the end of the stream."""
    _loop().run_until_complete(_dialogue(data))


# --- certificates ---------------------------------------------------------------------------

#: The names a chain is judged for: its own, another, an address, nothing, odd ones.
NAMES: Final = ("mail.test", "localhost", "other.test", "127.0.0.1", "::1", "", "*.test", "é.test")
#: A fixed moment, so a finding replays alike: the seeds are valid from 2000 to 3000, the
#: expired one until 2020.
MOMENT: Final = datetime(2026, 6, 1, tzinfo=UTC)


@cache
def _anchor() -> certs.TrustStore:
    return certs.TrustStore(x509.load_pem_x509_certificates(ANCHOR.read_bytes()), "fuzz anchor")


def chain_bytes(name_index: int, chain: tuple[bytes, ...]) -> bytes:
    """A certificate input: the name's index, then the chain as a TLS Certificate message
    carries it (a three-byte length before each certificate)."""
    return bytes([name_index]) + b"".join(len(der).to_bytes(3, "big") + der for der in chain)


def _chain(data: bytes) -> tuple[bytes, ...]:
    chain = []
    pos = 0
    while pos + 3 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        chain.append(data[pos + 3 : pos + 3 + length])
        pos += 3 + length
    return tuple(chain)


def edit_certificate(data: bytes, rng: random.Random) -> bytes | None:
    """One certificate of the chain changed inside its DER, every length kept right, so the
    change gets past the outer parser: byte flips alone rarely do."""
    chain = list(_chain(data[1:]))
    if not data or not chain:
        return None
    which = rng.randrange(len(chain))
    edit = (
        rng.choice(DER_EDIT_KINDS),
        rng.randrange(1 << 16),
        rng.randrange(256),
        rng.randbytes(rng.randrange(24)),
    )
    try:
        chain[which] = apply_der_edits(chain[which], [edit])
    except (ValueError, IndexError):  # not DER (any more): bytes are all there is to change
        return None
    return chain_bytes(data[0], tuple(chain))


def certificate_chain(data: bytes) -> None:
    """A chain as a server sends it, judged for one of `NAMES` against the seeds' root."""
    if not data:
        return
    trust = _anchor()
    fresh = certs.TrustStore([], trust.source)  # no analyses kept from other inputs
    fresh.store, fresh.subjects = trust.store, trust.subjects
    info = certs.analyze(_chain(data[1:]), NAMES[data[0] % len(NAMES)], fresh, MOMENT)
    if info is not None:
        assert info.verified == (info.verify_error is None)
        assert len(info.verify_detail) <= 512


# --- the config file ----------------------------------------------------------------------


#: The directory the run gives a target's process for its files (libFuzzer ends the process
#: without Python's exit handlers, so the run removes it).
SCRATCH_ENV: Final = "SMTP_TLS_FUZZ_SCRATCH"


def scratch_parent() -> Path | None:
    """Memory where the machine has it: each input is written to a file."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() else None


@cache
def _scratch() -> Path:
    """A directory for the files under test: the run's, or one removed at exit."""
    given = os.environ.get(SCRATCH_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        return Path(given)
    path = Path(tempfile.mkdtemp(prefix="smtp-tls-fuzz-", dir=scratch_parent()))
    atexit.register(shutil.rmtree, path, True)
    return path


def config_file(data: bytes) -> None:
    """The bytes as a config file, loaded as the exporter loads it."""
    path = _scratch() / "config.yaml"
    path.write_bytes(data)
    try:
        load_config(path, default_ehlo_name="probe.example.org")
    except ConfigError as error:
        _one_line_each(error.problems, str(error))
        raise


@cache
def web_dir() -> Path:
    """The web config's directory, with a server certificate, its key and a CA beside it
    (`server.crt`, `server.key`, `ca.pem`) for the file to name."""
    directory = _scratch() / "web"
    directory.mkdir(exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    (directory / "server.crt").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    (directory / "server.key").write_bytes(leaf.private_key_pem.bytes())
    (directory / "ca.pem").write_bytes(ca.cert_pem.bytes())
    return directory


def web_config_file(data: bytes) -> None:
    """The bytes as a web config file, loaded as the exporter loads it."""
    path = web_dir() / "web.yml"
    path.write_bytes(data)
    try:
        load_web_config(path)
    except WebConfigError as error:
        _one_line_each(error.problems, str(error))
        raise


def _one_line_each(problems: tuple[str, ...], whole: str) -> None:
    """A file's problems as people and HTTP answers take them: some, one line each, text."""
    assert problems
    assert all(problem and problem.splitlines() == [problem] for problem in problems)
    assert whole.encode("utf-8")


_CONFIG_WORDS: Final = (
    b"targets:",
    b"defaults:",
    b"dns:",
    b"\n  - ",
    b"host: ",
    b"domain: ",
    b"&a ",
    b"*a",
    b"<<: *a",
    b"!!binary ",
    b"!!int ",
    b"? ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"'",
    b'"\\u',
    b"---\n",
    b"%YAML 1.1\n",
    b"\xef\xbb\xbf",
    b"\t",
    *(f"{key}: ".encode() for key in (*TARGET_KEYS, *SETTING_KEYS)),
)

_WEB_WORDS: Final = (
    b"tls_server_config:",
    b"http_server_config:",
    b"basic_auth_users:",
    b"rate_limit:",
    b"cert_file: server.crt",
    b"key_file: server.key",
    b"client_ca_file: ca.pem",
    b"client_auth_type: RequireAndVerifyClientCert",
    b"client_allowed_sans: [",
    b"min_version: TLS12",
    b"cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]",
    b"curve_preferences: [X25519]",
    b"headers:",
    b"X-Frame-Options: deny",
    b"$2y$04$",
    b"interval: 1s",
    b"burst: ",
    b"-----BEGIN CERTIFICATE-----",
    b'"\\u',
)

_TLS_WORDS: Final = (
    b"\x16\x03\x03",
    b"\x16\x03\x01",
    b"\x15\x03\x03\x00\x02\x02\x28",
    b"\x15\x03\x03\x00\x02\x01\x70",
    b"\x14\x03\x03\x00\x01\x01",
    b"\x17\x03\x03",
    b"\x02\x00\x00",
    b"\x0b\x00",
    b"\x0e\x00\x00\x00",
    b"\x00\x2b\x00\x02\x03\x04",
    b"\x80",
)

_SMTP_WORDS: Final = (
    b"220 ",
    b"220-",
    b"250-",
    b"250 ",
    b"STARTTLS",
    b"\r\n",
    b"421 ",
    b"554 ",
    b"\xff",
)

HARNESSES: Final = {
    h.name: h
    for h in (
        Harness(
            "hello",
            "the server's first flight: parse_server_flight, complete_records_end",
            hello_flight,
            (),
            max_len=16384,
            dictionary=_TLS_WORDS,
        ),
        Harness(
            "smtp",
            "the SMTP dialogue up to STARTTLS over a stream: smtp.starttls",
            smtp_reply,
            (ProbeFailure,),
            max_len=8192,
            dictionary=_SMTP_WORDS,
        ),
        Harness(
            "certificate",
            "a server's certificate chain: certs.analyze",
            certificate_chain,
            (ValueError,),
            max_len=16384,
            edit=edit_certificate,
        ),
        Harness(
            "config",
            "the config file: load_config",
            config_file,
            (ConfigError,),
            max_len=16384,
            dictionary=_CONFIG_WORDS,
        ),
        Harness(
            "webconfig",
            "the web config file: load_web_config",
            web_config_file,
            (WebConfigError,),
            max_len=16384,
            dictionary=_WEB_WORDS,
        ),
    )
}

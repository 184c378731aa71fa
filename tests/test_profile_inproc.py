"""`try_profile` against in-process servers with restricted versions, suites, curves and DH
groups: each sender's verdict, and the same sender played by `openssl s_client`, agree.
Servers that misbehave (resets, silence, plain text) come from tests/support/inproc.py."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.probe.deadline import Deadline
from exporter.probe.endpoint import Endpoint
from exporter.probe.hello import Compatibility
from exporter.probe.profile import ProfileFailure, ProfileOutcome, describe_outcome, try_profile
from exporter.results import Reason
from exporter.senders import BUILTIN_PROFILES, GMAIL, POSTFIX, SenderProfile
from exporter.target import Target
from exporter.transcript import ConnectionRecorder
from tests.support.certs import TestCerts, make_test_certs
from tests.support.inproc import Behaviour, InprocServer, RawHandler, reset
from tests.support.senders import ServerTLS, StartTLSServer, s_client
from tests.support.tools import require_tool

V = ssl.TLSVersion
C = Compatibility.COMPATIBLE
F = ProfileFailure


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def dh_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dh")


def probe(
    server: InprocServer | StartTLSServer,
    profile: SenderProfile,
    timeout: float = 10.0,
    log: ConnectionRecorder | None = None,
) -> ProfileOutcome:
    """One connection as `profile`'s sender, its lines in `log` when given."""
    target = Target(
        host=server.host,
        port=server.port,
        servername="mail.test",
        timeout=timeout,
        ehlo_name="probe.test",
    )
    recorder = log or ConnectionRecorder(time.monotonic())

    async def run() -> ProfileOutcome:
        endpoint = Endpoint([server.host], server.port)
        return await try_profile(target, endpoint, profile, Deadline.after(timeout), recorder)

    return asyncio.run(run())


@dataclass(frozen=True)
class Scenario:
    """A server's TLS, and what each sender makes of it (absent: compatible)."""

    tls: ServerTLS
    failures: dict[str, ProfileFailure]


SCENARIOS = {
    "everything": Scenario(ServerTLS(), {}),
    "static RSA CBC, TLS 1.2": Scenario(
        ServerTLS("AES128-SHA:AES256-SHA", high=V.TLSv1_2), {"exchange-online": F.ALERT}
    ),
    "ECDHE-RSA with GCM only": Scenario(
        ServerTLS("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384", high=V.TLSv1_2),
        {"exchange-2016": F.ALERT},
    ),
    "TLS 1.0 ECDHE": Scenario(
        ServerTLS("ECDHE-RSA-AES128-SHA", low=V.TLSv1, high=V.TLSv1),
        {"exchange-online": F.VERSION, "postfix": F.SIGNATURE},
    ),
    "DHE with a 1024-bit prime": Scenario(
        ServerTLS(
            "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-SHA", high=V.TLSv1_2, dh_group="dh_1024_160"
        ),
        {"exchange-online": F.ALERT, "gmail": F.ALERT, "postfix": F.GROUP},
    ),
    "TLS 1.3 with X448 only": Scenario(
        ServerTLS(low=V.TLSv1_3, curve="X448"),
        {"exchange-online": F.VERSION, "gmail": F.ALERT, "exchange-2016": F.VERSION},
    ),
}


@pytest.fixture(scope="module", params=list(SCENARIOS))
def scenario(
    request: pytest.FixtureRequest, certs: TestCerts, dh_dir: Path
) -> Iterator[tuple[Scenario, StartTLSServer]]:
    chosen = SCENARIOS[request.param]
    with StartTLSServer(chosen.tls.context(certs, dh_dir)) as server:
        yield chosen, server


@pytest.mark.parametrize("name", list(BUILTIN_PROFILES))
def test_each_sender_on_each_server(scenario: tuple[Scenario, StartTLSServer], name: str) -> None:
    chosen, server = scenario
    profile = BUILTIN_PROFILES[name]
    outcome = probe(server, profile)
    expected = chosen.failures.get(name)
    if expected is None:
        assert outcome.compatibility is C, describe_outcome(outcome)
        assert outcome.compatible is True
        assert outcome.suite in profile.suites
    else:
        assert outcome.compatibility is Compatibility.INCOMPATIBLE, describe_outcome(outcome)
        assert outcome.failure is expected, describe_outcome(outcome)
        assert outcome.compatible is False


@pytest.mark.parametrize("name", list(BUILTIN_PROFILES))
def test_openssl_playing_the_sender_agrees(
    scenario: tuple[Scenario, StartTLSServer], name: str
) -> None:
    """OpenSSL as the sender: at the system's security level for Postfix (which is OpenSSL
    on this Debian), at level 0 for the others, so OpenSSL's own limits stay out."""
    require_tool("openssl")
    _, server = scenario
    profile = BUILTIN_PROFILES[name]
    outcome = probe(server, profile)
    handshake = s_client(
        server.host, server.port, profile, seclevel=None if profile is POSTFIX else 0
    )
    assert handshake.ok == (outcome.compatibility is C), (
        describe_outcome(outcome) + "\n" + handshake.output
    )
    if handshake.ok:
        assert handshake.suite == outcome.suite
        assert handshake.version is not None
        assert handshake.version.wire == outcome.version


def test_the_transcript_says_what_was_offered_and_chosen(certs: TestCerts, dh_dir: Path) -> None:
    with InprocServer(
        Behaviour(context=ServerTLS(high=V.TLSv1_2).context(certs, dh_dir))
    ) as server:
        log = ConnectionRecorder(time.monotonic())
        outcome = probe(server, GMAIL, log=log)
    texts = [text for _, _, text in log.rows()]
    assert any(
        t.startswith("ClientHello as gmail: TLSv1.0 to TLSv1.3, 18 cipher suites") for t in texts
    )
    assert any(t.startswith("ServerHello TLSv1.2 TLS_ECDHE_RSA_WITH_AES_") for t in texts), texts
    assert any("ServerKeyExchange x25519" in t for t in texts), texts
    assert texts[-1] == describe_outcome(outcome)
    assert texts[-1].startswith("gmail compatible: TLSv1.2 TLS_ECDHE_RSA_WITH_AES_")


def raw(handler: RawHandler) -> Behaviour:
    return Behaviour(raw=handler)


async def _reset(_hello: bytes, writer: asyncio.StreamWriter) -> None:
    reset(writer)


async def _silent(_hello: bytes, _writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


async def _text(_hello: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"454 4.7.0 TLS not available due to local problem\r\n")
    await writer.drain()


async def _garbage(_hello: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x00\x01\x02\x03\x04\x05\x06\x07")
    await writer.drain()


def test_no_starttls_keeps_every_sender_out() -> None:
    with InprocServer(Behaviour(starttls=False)) as server:
        outcome = probe(server, GMAIL)
    assert outcome.compatibility is Compatibility.INCOMPATIBLE
    assert outcome.failure is F.NO_STARTTLS


def test_a_reset_on_the_hello_is_a_dropped_hello() -> None:
    with InprocServer(raw(_reset)) as server:
        outcome = probe(server, GMAIL)
    assert (outcome.compatibility, outcome.failure) == (Compatibility.INCOMPATIBLE, F.DROPPED)
    assert outcome.detail in {"connection reset", "connection closed"}


def test_silence_is_unknown_never_incompatible() -> None:
    with InprocServer(raw(_silent)) as server:
        outcome = probe(server, GMAIL, timeout=2.0)
    assert outcome.compatibility is Compatibility.UNKNOWN
    assert outcome.compatible is None
    assert outcome.reason is Reason.READ_TIMEOUT


def test_plain_text_and_garbage_are_unknown() -> None:
    with InprocServer(raw(_text)) as server:
        text = probe(server, GMAIL)
    assert (text.compatibility, text.reason) == (Compatibility.UNKNOWN, Reason.STARTTLS_REJECTED)
    assert "454 4.7.0" in text.detail
    with InprocServer(raw(_garbage)) as server:
        garbage = probe(server, GMAIL)
    assert (garbage.compatibility, garbage.reason) == (
        Compatibility.UNKNOWN,
        Reason.TLS_PROTOCOL_ERROR,
    )

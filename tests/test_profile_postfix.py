"""Each sender against the real Postfix listeners (restricted versions, static-RSA suites
only, an ECDSA certificate, postscreen, implicit TLS), cross-checked with `openssl s_client`
playing the same sender."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from exporter.probe.deadline import Deadline
from exporter.probe.endpoint import Endpoint
from exporter.probe.hello import Compatibility
from exporter.probe.profile import ProfileFailure, ProfileOutcome, describe_outcome, try_profile
from exporter.senders import BUILTIN_PROFILES, POSTFIX, SenderProfile
from exporter.target import TLSMode
from exporter.transcript import ConnectionRecorder
from tests.support.postfix import PostfixServers
from tests.support.senders import Handshake, s_client
from tests.support.tools import require_tool

pytestmark = pytest.mark.postfix

F = ProfileFailure
#: What each sender makes of each listener (absent: compatible). Postfix's servers here run
#: OpenSSL's DEFAULT list at security level 0 with an RSA certificate unless named.
EXPECTED: dict[str, dict[str, ProfileFailure]] = {
    "all": {},
    "tls12": {},
    "tls13": {"exchange-online": F.VERSION, "exchange-2016": F.VERSION},
    # TLS 1.0/1.1 with ECDHE: OpenSSL 3 at security level 2 refuses the MD5+SHA-1 signature.
    "tls10": {"exchange-online": F.VERSION, "postfix": F.SIGNATURE},
    "tls11": {"exchange-online": F.VERSION, "postfix": F.SIGNATURE},
    # AES128-SHA and AES256-SHA only: Exchange Online has static RSA with GCM alone.
    "legacy_ciphers": {"exchange-online": F.ALERT},
    "legacy_ciphers_tls10": {"exchange-online": F.ALERT},
    # Microsoft's list for Exchange Online has no ECDSA suite; Schannel on 2012 R2 has them.
    "ecdsa": {"exchange-online": F.ALERT},
    "implicit": {},
    "postscreen": {},
    "no_starttls": dict.fromkeys(BUILTIN_PROFILES, F.NO_STARTTLS),
}
CASES = [(listener, name) for listener in EXPECTED for name in BUILTIN_PROFILES]
#: The cases `openssl s_client` can play: every listener that speaks TLS.
TLS_CASES = [case for case in CASES if case[0] != "no_starttls"]


def ids(cases: list[tuple[str, str]]) -> list[str]:
    return [f"{listener}-{name}" for listener, name in cases]


async def _probe_all(postfix: PostfixServers) -> dict[tuple[str, str], ProfileOutcome]:
    async def one(listener: str, name: str) -> ProfileOutcome:
        target = postfix.target(listener)
        endpoint = Endpoint([target.host], target.port)
        log = ConnectionRecorder(time.monotonic())
        deadline = Deadline.after(target.timeout)
        return await try_profile(target, endpoint, BUILTIN_PROFILES[name], deadline, log)

    outcomes = await asyncio.gather(*(one(listener, name) for listener, name in CASES))
    return dict(zip(CASES, outcomes, strict=True))


@pytest.fixture(scope="module")
def outcomes(postfix: PostfixServers) -> dict[tuple[str, str], ProfileOutcome]:
    """Every sender against every listener, a connection each, all at once."""
    return asyncio.run(_probe_all(postfix))


def _play(postfix: PostfixServers, listener: str, profile: SenderProfile) -> Handshake:
    found = postfix.listener(listener)
    return s_client(
        found.host,
        found.port,
        profile,
        starttls=found.tls is TLSMode.STARTTLS,
        seclevel=None if profile is POSTFIX else 0,
        servername="localhost",
    )


@pytest.fixture(scope="module")
def handshakes(postfix: PostfixServers) -> dict[tuple[str, str], Handshake]:
    """The same, with `openssl s_client` as each sender (STARTTLS listeners only)."""
    require_tool("openssl")
    with ThreadPoolExecutor(max_workers=16) as pool:
        done = pool.map(lambda case: _play(postfix, case[0], BUILTIN_PROFILES[case[1]]), TLS_CASES)
        return dict(zip(TLS_CASES, done, strict=True))


@pytest.mark.parametrize(("listener", "name"), CASES, ids=ids(CASES))
def test_each_sender_on_each_listener(
    outcomes: dict[tuple[str, str], ProfileOutcome], listener: str, name: str
) -> None:
    outcome = outcomes[listener, name]
    expected = EXPECTED[listener].get(name)
    if expected is None:
        assert outcome.compatibility is Compatibility.COMPATIBLE, describe_outcome(outcome)
    else:
        assert outcome.compatibility is Compatibility.INCOMPATIBLE, describe_outcome(outcome)
        assert outcome.failure is expected, describe_outcome(outcome)


@pytest.mark.parametrize(("listener", "name"), TLS_CASES, ids=ids(TLS_CASES))
def test_openssl_playing_the_sender_agrees(
    outcomes: dict[tuple[str, str], ProfileOutcome],
    handshakes: dict[tuple[str, str], Handshake],
    listener: str,
    name: str,
) -> None:
    outcome, handshake = outcomes[listener, name], handshakes[listener, name]
    assert handshake.ok == (outcome.compatibility is Compatibility.COMPATIBLE), (
        describe_outcome(outcome) + "\n" + handshake.output
    )
    if handshake.ok:
        assert handshake.suite == outcome.suite
        assert handshake.version is not None
        assert handshake.version.wire == outcome.version

"""Servers that rate-limit the probe: which replies say so, and what the verdict makes of
them (unknown, never refused)."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from typing import Any

import pytest
import trustme
from cryptography import x509

from exporter.probe import certs, probe, verdict
from exporter.probe.outcomes import Accepted, Failed, Handshake, Refused
from exporter.probe.smtp import Reply
from exporter.results import Negotiated, ProbeResult, Reason, Verdict
from exporter.target import Target, TLSVersion
from tests.support.certs import TestCerts, der_chain, make_test_certs
from tests.support.inproc import Behaviour, InprocServer, tls_context

V10, V11, V12, V13 = TLSVersion.TLS1_0, TLSVersion.TLS1_1, TLSVersion.TLS1_2, TLSVersion.TLS1_3
MODERN = (V10, V11, V12, V13)
POSTFIX_421 = "421 4.7.0 mail.test Error: too many connections from 127.0.0.1"


# --- which replies are rate limits ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        POSTFIX_421,
        "421 4.3.2 Service not available, closing transmission channel",
        "421-4.7.0 Try again later, closing connection. (EHLO) / 421 4.7.0 gsmtp",
        "421 4.7.0 TLS not available",  # 421 closes the channel, whatever it names
        "450 4.7.1 Too many connections, slow down",
        "451 4.7.1 Rate limit exceeded, try again later",
        "451 4.7.0 Ratelimited: 30 connections per minute",
        "452 4.3.1 Too many concurrent SMTP connections; please try again later",
        "454 4.7.0 Connection limit reached for 192.0.2.1",
        "450 4.4.5 Server busy",
        "451 4.3.0 Temporary local problem - please retry later",
        "450 4.7.1 Throttled: come back later",
    ],
)
def test_replies_that_rate_limit(text: str) -> None:
    assert reply(text).says_slow_down


@pytest.mark.parametrize(
    "text",
    [
        "454 4.7.0 TLS not available due to local problem",
        "454 4.7.0 TLS not available, try again later",  # a TLS problem: waiting won't mend it
        "451 4.3.0 Error: queue file write error",
        "450 4.7.1 Client host rejected: cannot find your hostname, try again later",
        "450 4.7.1 192.0.2.1 is on a block list, too many reports",
        "451 4.7.1 Service unavailable - try again later: reverse DNS does not match",
        "554 5.7.1 Too many connections",  # permanent: a refusal, never a rate limit
        "550 5.7.1 Rate limit exceeded",
        "554 5.7.1 no SMTP service here",
        "502 5.5.2 Error: command not recognized",
        "220 mail.test ESMTP",
        "250 mail.test",
        "450 4.2.0 generated reply about accurate delimiters",  # rate/limit inside words
    ],
)
def test_replies_that_do_not(text: str) -> None:
    assert not reply(text).says_slow_down


def reply(text: str) -> Reply:
    lines = [line.strip() for line in text.split(" / ")]
    return Reply(int(lines[-1][:3]), tuple(line[4:] for line in lines))


# --- the verdict ----------------------------------------------------------------------------------

CA = trustme.CA()
TRUST = certs.TrustStore(x509.load_pem_x509_certificates(CA.cert_pem.bytes()), "test CA")
MAIL = der_chain(CA.issue_cert("mail.test"))
LIMITED = Failed(Reason.RATE_LIMITED, POSTFIX_421)


def test_a_connection_that_was_rate_limited_leaves_the_others_verdicts_alone() -> None:
    findings = verdict.decide(
        Target(host="mail.test", versions=MODERN),
        {V12: Accepted(0xC02F, MAIL), V13: Accepted(0x1302), V10: LIMITED, V11: Refused("alert")},
        Handshake(Negotiated("TLSv1.3", "TLS_AES_256_GCM_SHA384"), MAIL),
        TRUST,
    )
    verdicts = {v.version: (v.verdict, v.detail) for v in findings.versions}
    assert verdicts == {
        V10: (Verdict.UNKNOWN, POSTFIX_421),
        V11: (Verdict.REFUSED, "alert"),
        V12: (Verdict.ACCEPTED, ""),
        V13: (Verdict.ACCEPTED, ""),
    }
    assert findings.error == LIMITED
    assert findings.certificate is not None


def test_versions_never_tried_after_a_rate_limit_share_it() -> None:
    """Once the server rate-limits, no further connection opens: the versions left untried
    are unknown for the same reason, and the rate limit is the probe's error even where
    another connection failed otherwise first."""
    findings = verdict.decide(
        Target(host="mail.test", versions=MODERN),
        {V12: Failed(Reason.READ_TIMEOUT, "timed out"), V13: LIMITED},
        Failed(Reason.RATE_LIMITED, "421 4.3.2 busy"),
        TRUST,
    )
    assert [(v.verdict, v.detail) for v in findings.versions] == [
        (Verdict.UNKNOWN, POSTFIX_421),
        (Verdict.UNKNOWN, POSTFIX_421),
        (Verdict.UNKNOWN, "timed out"),
        (Verdict.UNKNOWN, POSTFIX_421),
    ]
    assert findings.error is not None
    assert findings.error.reason is Reason.RATE_LIMITED
    assert findings.starttls_advertised is None


# --- against servers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs_(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


def serving(made: TestCerts, **behaviour: Any) -> InprocServer:
    """A server that accepts TLS 1.0 to 1.3."""
    context = tls_context(
        str(made.rsa.cert), str(made.rsa.key), ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3
    )
    return InprocServer(Behaviour(context=context, **behaviour))


def run(server: InprocServer, **overrides: Any) -> ProbeResult:
    target = Target(
        host=server.host,
        port=server.port,
        servername="mail.test",
        timeout=10.0,
        ehlo_name="probe.test",
        versions=MODERN,
    )
    return asyncio.run(probe(dataclasses.replace(target, **overrides)))


def test_a_server_answering_421_to_every_connection(certs_: TestCerts) -> None:
    with serving(certs_, busy_after=0) as server:
        result = run(server, connections=2)
    assert result.error is Reason.RATE_LIMITED
    assert result.error_detail == server.behaviour.busy_reply
    assert {v.verdict for v in result.versions} == {Verdict.UNKNOWN}
    assert result.starttls_advertised is None
    # No connection opens once the server has said it: the two that were open, no more.
    assert len(server.behaviour.connections) == 2


def test_a_server_rate_limiting_some_connections_of_a_probe(certs_: TestCerts) -> None:
    """Three connections get through, the rest get 421: the three keep their verdicts, the
    others stay unknown, none is refused."""
    with serving(certs_, busy_after=3) as server:
        result = run(server)
    assert result.error is Reason.RATE_LIMITED
    assert not result.success
    verdicts = [v.verdict for v in result.versions]
    assert Verdict.REFUSED not in verdicts
    assert 1 <= verdicts.count(Verdict.ACCEPTED) <= 3
    for found in result.versions:
        if found.verdict is Verdict.UNKNOWN:
            assert "421 4.7.0" in found.detail
    assert len(server.behaviour.connections) == 5  # four versions and the default client


@pytest.mark.parametrize(
    ("behaviour", "reason", "advertised"),
    [
        ({"ehlo_reply": "450 4.7.1 Too many connections, slow down"}, Reason.RATE_LIMITED, None),
        (
            {"starttls_reply": "451 4.7.1 Rate limit exceeded, try again later"},
            Reason.RATE_LIMITED,
            True,
        ),
        (
            {"starttls_reply": "454 4.7.0 TLS not available due to local problem"},
            Reason.STARTTLS_REJECTED,
            True,
        ),
        ({"greeting": ("554 5.7.1 Too many connections",)}, Reason.GREETING_REJECTED, None),
    ],
    ids=["ehlo-450", "starttls-451", "starttls-454-tls", "greeting-554"],
)
def test_temporary_answers_to_ehlo_and_starttls(
    certs_: TestCerts, behaviour: dict[str, Any], reason: Reason, advertised: bool | None
) -> None:
    with serving(certs_, **behaviour) as server:
        result = run(server)
    assert result.error is reason
    assert {v.verdict for v in result.versions} == {Verdict.UNKNOWN}
    assert result.starttls_advertised is advertised

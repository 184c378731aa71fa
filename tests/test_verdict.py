"""The probe's verdict from its connections' outcomes, case by case, without a socket."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import pytest
import trustme
from cryptography import x509

from exporter.probe import certs, verdict
from exporter.probe.outcomes import (
    Accepted,
    DefaultOutcome,
    Dropped,
    Failed,
    Handshake,
    NotOffered,
    Refused,
    VersionOutcome,
)
from exporter.results import Negotiated, Reason, Verdict
from exporter.target import DEFAULT_VERSIONS, Target, TLSMode, TLSVersion
from tests.support.certs import der_chain

SSL2, SSL3 = TLSVersion.SSL2, TLSVersion.SSL3
V10, V11, V12, V13 = TLSVersion.TLS1_0, TLSVersion.TLS1_1, TLSVersion.TLS1_2, TLSVersion.TLS1_3
ACCEPTED, REFUSED, UNKNOWN = Verdict.ACCEPTED, Verdict.REFUSED, Verdict.UNKNOWN

CA = trustme.CA()
TRUST = certs.TrustStore(x509.load_pem_x509_certificates(CA.cert_pem.bytes()), "test CA")
NO_TRUST = certs.TrustStore([], "none")


def chain(name: str) -> tuple[bytes, ...]:
    return der_chain(CA.issue_cert(name))


MAIL = chain("mail.test")
NEGOTIATED = Negotiated("TLSv1.3", "TLS_AES_256_GCM_SHA384")
HANDSHAKE = Handshake(NEGOTIATED, MAIL)
RESET = Dropped("connection reset")
HANDSHAKE_FAILED = Failed(
    Reason.CONNECTION_CLOSED, "EOF occurred in violation of protocol", in_handshake=True
)
ALERT = Refused("alert protocol_version")
GCM = 0xC02F

_V = TypeVar("_V")


def target(**settings: Any) -> Target:
    return Target(host="mail.test", **settings)


def decide(
    outcomes: Mapping[TLSVersion, VersionOutcome],
    default: DefaultOutcome,
    trust: certs.TrustStore = NO_TRUST,
    **settings: Any,
) -> verdict.Findings:
    return verdict.decide(target(**settings), outcomes, default, trust)


def table(findings: verdict.Findings) -> dict[TLSVersion, tuple[Verdict, str]]:
    return {r.version: (r.verdict, r.detail) for r in findings.versions}


def every(value: _V) -> dict[TLSVersion, _V]:
    """The same outcome (or verdict) for every version tested by default."""
    return dict.fromkeys(DEFAULT_VERSIONS, value)


@dataclasses.dataclass(frozen=True)
class Case:
    outcomes: Mapping[TLSVersion, VersionOutcome]
    default: DefaultOutcome
    verdicts: Mapping[TLSVersion, tuple[Verdict, str]]
    error: Failed | None
    advertised: bool | None = True
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


TLS_BROKEN = Failed(
    Reason.TLS_BROKEN, "connection reset on every ClientHello: TLS does not work on this server"
)
STARTTLS_454 = Failed(Reason.STARTTLS_REJECTED, "454 4.7.0 TLS not available", True)
REFUSED_BY_PORT = Failed(Reason.CONNECT_REFUSED, "connection refused")
TIMED_OUT = Failed(Reason.READ_TIMEOUT, "timed out")
HANDSHAKE_TIMED_OUT = Failed(Reason.READ_TIMEOUT, "TLS handshake timed out", in_handshake=True)
NOT_REACHED = Failed(Reason.PROBE_DEADLINE, "not reached")
#: Alerts on every version and a failed handshake: TLS offered, but no handshake completes.
NO_HANDSHAKE = Failed(
    Reason.TLS_HANDSHAKE_FAILED,
    "every version refused and the default client's handshake failed:"
    " EOF occurred in violation of protocol",
)
TWO: dict[str, Any] = {"versions": (V12, V13)}

VERSION_CASES = [
    pytest.param(
        Case(every(RESET), HANDSHAKE_FAILED, every((UNKNOWN, "connection reset")), TLS_BROKEN),
        id="all-resets-tls-broken",
    ),
    pytest.param(
        Case(
            {**every(RESET), V12: Accepted(GCM, MAIL)},
            HANDSHAKE_FAILED,
            {**every((REFUSED, "connection reset")), V12: (ACCEPTED, "")},
            None,
        ),
        id="one-accepted-makes-resets-refusals",
    ),
    pytest.param(
        Case(
            {**every(RESET), V13: ALERT},
            HANDSHAKE_FAILED,
            {**every((REFUSED, "connection reset")), V13: (REFUSED, "alert protocol_version")},
            NO_HANDSHAKE,
        ),
        id="one-alert-makes-resets-refusals-and-no-handshake-is-an-error",
    ),
    pytest.param(
        Case(
            every(ALERT),
            Failed(Reason.TLS_PROTOCOL_ERROR, "SSLV3_ALERT_HANDSHAKE_FAILURE", in_handshake=True),
            every((REFUSED, "alert protocol_version")),
            Failed(
                Reason.TLS_HANDSHAKE_FAILED,
                "every version refused and the default client's handshake failed:"
                " SSLV3_ALERT_HANDSHAKE_FAILURE",
            ),
        ),
        id="alerts-everywhere-and-a-failed-handshake-is-an-error",
    ),
    pytest.param(
        Case(
            every(ALERT),
            HANDSHAKE_TIMED_OUT,
            every((REFUSED, "alert protocol_version")),
            HANDSHAKE_TIMED_OUT,
        ),
        id="alerts-everywhere-and-a-handshake-timeout-names-the-timeout",
    ),
    pytest.param(
        Case(every(ALERT), TIMED_OUT, every((REFUSED, "alert protocol_version")), None),
        id="a-default-client-failing-before-its-handshake-decides-nothing",
    ),
    pytest.param(
        Case(
            {**every(ALERT), V10: Accepted(GCM, MAIL)},
            HANDSHAKE_FAILED,
            {**every((REFUSED, "alert protocol_version")), V10: (ACCEPTED, "")},
            None,
        ),
        id="legacy-only-is-a-verdict-not-an-error",
    ),
    pytest.param(
        Case({SSL3: RESET}, HANDSHAKE, {SSL3: (REFUSED, "connection reset")}, None,
             settings={"versions": (SSL3,)}),
        id="real-handshake-makes-resets-refusals",
    ),
    pytest.param(
        Case(
            {SSL3: RESET},
            HANDSHAKE_FAILED,
            {SSL3: (UNKNOWN, "connection reset")},
            TLS_BROKEN,
            settings={"versions": (SSL3,)},
        ),
        id="resets-and-a-failed-handshake-are-tls-broken",
    ),
    pytest.param(
        Case(
            {V12: NotOffered(), V13: Accepted(GCM, MAIL)},
            NotOffered(),
            every((REFUSED, "STARTTLS not offered")),
            None,
            advertised=False,
        ),
        id="not-offered-refuses-every-version",
    ),
    pytest.param(
        Case(
            {V12: NotOffered()},
            Failed(Reason.PROBE_DEADLINE, "probe deadline reached"),
            every((REFUSED, "STARTTLS not offered")),
            None,
            advertised=False,
        ),
        id="not-offered-before-the-rest-ran",
    ),
    pytest.param(
        Case({V12: REFUSED_BY_PORT}, REFUSED_BY_PORT, every((UNKNOWN, "connection refused")),
             REFUSED_BY_PORT, advertised=None),
        id="connect-refused-leaves-everything-unknown",
    ),
    pytest.param(
        Case(
            {},
            Failed(Reason.RESOLVE_FAILED, "Name or service not known"),
            every((UNKNOWN, "Name or service not known")),
            Failed(Reason.RESOLVE_FAILED, "Name or service not known"),
            advertised=None,
        ),
        id="resolve-failed",
    ),
    pytest.param(
        Case(
            every(Failed(Reason.CONNECTION_CLOSED)),
            Failed(Reason.CONNECTION_CLOSED),
            every((UNKNOWN, "connection_closed")),
            Failed(Reason.CONNECTION_CLOSED),
            advertised=None,
        ),
        id="a-failure-without-words-names-its-reason",
    ),
    pytest.param(
        Case(every(STARTTLS_454), STARTTLS_454, every((UNKNOWN, STARTTLS_454.detail)),
             STARTTLS_454, advertised=True),
        id="starttls-rejected-after-ehlo-listed-it",
    ),
    pytest.param(
        Case(
            every(Failed(Reason.GREETING_REJECTED, "421 4.3.2 busy")),
            Failed(Reason.GREETING_REJECTED, "421 4.3.2 busy"),
            every((UNKNOWN, "421 4.3.2 busy")),
            Failed(Reason.GREETING_REJECTED, "421 4.3.2 busy"),
            advertised=None,
        ),
        id="greeting-rejected-says-nothing-about-starttls",
    ),
    pytest.param(
        Case(
            {**every(ALERT), V12: Accepted(GCM, MAIL), V13: Accepted(0x1302)},
            HANDSHAKE,
            {**every((REFUSED, ALERT.detail)), V12: (ACCEPTED, ""), V13: (ACCEPTED, "")},
            None,
            advertised=None,
            settings={"tls": TLSMode.IMPLICIT, "port": 465},
        ),
        id="implicit-tls-has-no-starttls-answer",
    ),
    pytest.param(
        Case({V12: Accepted(GCM, MAIL)}, HANDSHAKE,
             {V12: (ACCEPTED, ""), V13: (UNKNOWN, "not reached")}, NOT_REACHED, settings=TWO),
        id="a-version-never-tested-is-unknown",
    ),
    pytest.param(
        Case({V12: RESET, V13: TIMED_OUT}, TIMED_OUT,
             {V12: (UNKNOWN, "connection reset"), V13: (UNKNOWN, "timed out")}, TIMED_OUT,
             settings=TWO),
        id="a-failure-outweighs-tls-broken",
    ),
    pytest.param(
        Case({V12: TIMED_OUT, V13: RESET}, TIMED_OUT,
             {V12: (UNKNOWN, "timed out"), V13: (UNKNOWN, "connection reset")}, TIMED_OUT,
             settings=TWO),
        id="tls-broken-does-not-replace-a-failure",
    ),
    pytest.param(
        Case({V13: TIMED_OUT}, HANDSHAKE,
             {V12: (UNKNOWN, "not reached"), V13: (UNKNOWN, "timed out")}, TIMED_OUT,
             settings=TWO),
        id="a-failure-outweighs-the-deadline",
    ),
    pytest.param(
        Case(
            {V12: TIMED_OUT, V13: Failed(Reason.CONNECTION_CLOSED, "closed by the server")},
            HANDSHAKE_FAILED,
            {V12: (UNKNOWN, "timed out"), V13: (UNKNOWN, "closed by the server")},
            TIMED_OUT,
            advertised=None,
            settings=TWO,
        ),
        id="the-first-failure-stands",
    ),
    pytest.param(
        Case(
            {V12: Failed(Reason.CONNECT_TIMEOUT, "timed out")},
            Failed(Reason.PROBE_DEADLINE, "probe deadline reached"),
            {V12: (UNKNOWN, "timed out"), V13: (UNKNOWN, "timed out")},
            Failed(Reason.CONNECT_TIMEOUT, "timed out"),
            advertised=None,
            settings=TWO,
        ),
        id="the-failure-that-stopped-the-probe-fills-the-untested",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", VERSION_CASES)
def test_version_verdicts(case: Case) -> None:
    findings = decide(case.outcomes, case.default, **case.settings)
    assert table(findings) == case.verdicts
    assert findings.error == case.error
    assert findings.starttls_advertised is case.advertised


NEWEST, OLDER, REAL, LOWER, SSLV2 = (
    chain(f"{which}.mail.test") for which in ("newest", "older", "real", "lower", "sslv2")
)
LOWER_ANSWER = Refused("server chose TLSv1.0", LOWER)

CHAIN_CASES = [
    pytest.param(
        {V10: Accepted(GCM, OLDER), V12: Accepted(GCM, NEWEST), V11: LOWER_ANSWER,
         SSL2: Accepted(0x0700C0, SSLV2)},
        Handshake(NEGOTIATED, REAL),
        "newest",
        id="newest-accepted-flight",
    ),
    pytest.param(
        {V10: Accepted(GCM, OLDER), V13: Accepted(0x1302), V11: LOWER_ANSWER},
        Handshake(NEGOTIATED, REAL),
        "older",
        id="an-older-accepted-flight-before-the-real-handshake",
    ),
    pytest.param(
        {V13: Accepted(0x1302), V12: LOWER_ANSWER, SSL2: Accepted(0x0700C0, SSLV2)},
        Handshake(NEGOTIATED, REAL),
        "real",
        id="real-handshake-when-no-flight-carried-one",
    ),
    pytest.param(
        {V12: LOWER_ANSWER, V13: ALERT, SSL2: Accepted(0x0700C0, SSLV2)},
        Handshake(NEGOTIATED, ()),
        "lower",
        id="a-lower-version-answer",
    ),
    pytest.param(
        {V12: Refused("alert handshake_failure"), SSL2: Accepted(0x0700C0, SSLV2)},
        HANDSHAKE_FAILED,
        "sslv2",
        id="sslv2-last",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("outcomes", "default", "chosen"), CHAIN_CASES)
def test_chain_preference(
    outcomes: Mapping[TLSVersion, VersionOutcome], default: DefaultOutcome, chosen: str
) -> None:
    findings = decide(outcomes, default, versions=(*DEFAULT_VERSIONS, SSL2))
    assert findings.certificate is not None
    assert findings.certificate.sans == (f"{chosen}.mail.test",)


def test_the_chosen_chain_is_verified_for_the_servername() -> None:
    findings = decide({V12: Accepted(GCM, MAIL)}, HANDSHAKE, TRUST, versions=(V12,))
    assert findings.certificate is not None
    assert findings.certificate.verified, findings.certificate.verify_detail
    assert findings.negotiated == NEGOTIATED
    assert findings.error is None


@pytest.mark.parametrize(
    ("outcomes", "default", "error"),
    [
        pytest.param(
            {V12: Accepted(GCM)},
            Failed(Reason.READ_TIMEOUT, "TLS handshake timed out"),
            Failed(Reason.READ_TIMEOUT, "no certificate could be read: TLS handshake timed out"),
            id="accepted-and-the-handshake-failed",
        ),
        pytest.param(
            {V12: Accepted(GCM)},
            Failed(Reason.CONNECTION_CLOSED),
            Failed(Reason.CONNECTION_CLOSED, "no certificate could be read: connection_closed"),
            id="accepted-and-the-handshake-failed-without-words",
        ),
        pytest.param(
            {V12: Accepted(GCM)},
            Handshake(NEGOTIATED, ()),
            Failed(Reason.TLS_PROTOCOL_ERROR, "no certificate could be read"),
            id="accepted-and-a-handshake-without-chain",
        ),
        pytest.param(
            {V12: ALERT},
            Handshake(NEGOTIATED, ()),
            Failed(Reason.TLS_PROTOCOL_ERROR, "no certificate could be read"),
            id="only-the-handshake-worked-and-sent-no-chain",
        ),
        pytest.param(
            {V12: ALERT}, HANDSHAKE_FAILED, NO_HANDSHAKE, id="no-handshake-is-its-own-error"
        ),
    ],
)
def test_tls_without_a_chain_is_an_error(
    outcomes: Mapping[TLSVersion, VersionOutcome], default: DefaultOutcome, error: Failed | None
) -> None:
    findings = decide(outcomes, default, versions=(V12,))
    assert findings.certificate is None
    assert findings.error == error


@pytest.mark.parametrize(
    "leaf", [b"not a certificate", MAIL[0][:60], MAIL[0] + b"\x00"], ids=["garbage", "cut", "tail"]
)
def test_a_hostile_certificate_costs_only_the_certificate(leaf: bytes) -> None:
    findings = decide({V12: Accepted(GCM, (leaf,)), V13: ALERT}, HANDSHAKE_FAILED, TRUST, **TWO)
    assert table(findings) == {V12: (ACCEPTED, ""), V13: (REFUSED, ALERT.detail)}
    assert findings.certificate is None
    assert findings.error is not None
    assert findings.error.reason is Reason.TLS_PROTOCOL_ERROR
    assert findings.error.detail.startswith("certificate: ")


def test_a_hostile_certificate_does_not_hide_an_earlier_error() -> None:
    findings = decide({V12: Accepted(GCM, (b"junk",))}, HANDSHAKE_FAILED, **TWO)
    assert findings.error == NOT_REACHED


def test_findings_become_the_probe_result() -> None:
    findings = decide({V12: Accepted(GCM, MAIL), V13: RESET}, HANDSHAKE, TRUST, **TWO)
    result = findings.result("mail.test:25", started=1000.0, duration=2.5)
    assert result.success
    assert result.error is None
    assert result.error_detail == ""
    assert result.target == "mail.test:25"
    assert result.finished == 1002.5
    assert result.versions == findings.versions
    assert result.certificate == findings.certificate
    assert result.negotiated == NEGOTIATED
    assert result.starttls_advertised is True


def test_a_failed_probe_result_carries_the_reason_and_the_words() -> None:
    findings = decide({}, REFUSED_BY_PORT)
    result = findings.result("mail.test:25", started=0.0, duration=0.1)
    assert not result.success
    assert result.error is Reason.CONNECT_REFUSED
    assert result.error_detail == "connection refused"
    assert [v.supported for v in result.versions] == [None] * len(DEFAULT_VERSIONS)
